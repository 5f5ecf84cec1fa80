#!/usr/bin/env python3
"""Awkward hf-golden cases (tests/fixtures/hf-golden-cases/<name>/), made by the reference stack.

Each case is a tiny random model of one family built by transformers' own modeling code (eager
attention, CPU, float32), wrapped with the real PEFT library (`get_peft_model`, `save_pretrained`),
with LoRA A and B drawn non-zero. The folder holds what `golden-check` reads: config.json,
model.safetensors (HF `save_pretrained`), adapter_config.json + adapter_model.safetensors (PEFT
`save_pretrained`) and golden.safetensors (inputs, logits and loss with and without LoRA, the
embedding output and its gradient, every LoRA gradient, a greedy KV-cache decode with its per-step
logits), plus a README.md. Then the hf-train-format cases (tests/fixtures/hf-train-cases/<name>/):
six optimizer steps of LoRA training on a golden case's model, as tests/fixtures/hf-train defines them.

Run from the project root (needs transformers 4.44.0 for Phi-3 and the llama3 rope):

    eval "$(PYREF_TRANSFORMERS=4.44.0 bash ../shared/pyref/setup.sh)" && $PYTHON scripts/make-golden-cases.py

Everything is seeded; running it twice writes byte-identical files.
"""
import argparse
import copy
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
import peft
from safetensors.torch import save_file, load_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Phi3Config, Phi3ForCausalLM
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

OUT_DEFAULT = os.path.join('tests', 'fixtures', 'hf-golden-cases')
REQUIRED_TRANSFORMERS = '4.44.0'
REQUIRED_PEFT = '0.11.1'

LLAMA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
PHI3_TARGETS = ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']

# The awkward cases. lengths: real tokens per row (right padding after them); skip: labels set to
# -100 at the start of each row.
CASES = [
    dict(
        name='llama-gqa-odd',
        what='Llama, 6 query heads over 3 K/V heads, head_dim 10 (hidden 60), linear rope scaling 2.5, q/k/v/o biases, untied lm_head, right padding in one row',
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(
            vocab_size=97, hidden_size=60, intermediate_size=28, num_hidden_layers=2, num_attention_heads=6,
            num_key_value_heads=3, max_position_embeddings=48, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling={'type': 'linear', 'factor': 2.5}, attention_bias=True, mlp_bias=False,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        targets=LLAMA_TARGETS, r=3, alpha=7, seeds=(5101, 5102, 5103),
        lengths=[10, 7, 10], skip=[2, 1, 3], prompt=5, new_tokens=6,
    ),
    dict(
        name='phi3-gqa',
        what='Phi-3, fused qkv_proj with 6 query heads over 2 K/V heads (head_dim 8), fused gate_up_proj, right padding in one row',
        cls=Phi3ForCausalLM,
        config=lambda: Phi3Config(
            vocab_size=127, hidden_size=48, intermediate_size=56, num_hidden_layers=2, num_attention_heads=6,
            num_key_value_heads=2, max_position_embeddings=48, original_max_position_embeddings=48,
            rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, sliding_window=None),
        targets=PHI3_TARGETS, r=3, alpha=7, seeds=(5201, 5202, 5203),
        lengths=[12, 12, 8], skip=[1, 3, 2], prompt=5, new_tokens=6,
    ),
    dict(
        name='qwen2-mqa',
        what='Qwen2, 7 query heads over 1 K/V head (head_dim 10, hidden 70), q/k/v biases, tied embeddings, right padding in one row',
        cls=Qwen2ForCausalLM,
        config=lambda: Qwen2Config(
            vocab_size=101, hidden_size=70, intermediate_size=30, num_hidden_layers=2, num_attention_heads=7,
            num_key_value_heads=1, max_position_embeddings=48, rms_norm_eps=1e-6, rope_theta=1000000.0,
            tie_word_embeddings=True, use_sliding_window=False, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        targets=LLAMA_TARGETS, r=3, alpha=7, seeds=(5301, 5302, 5303),
        lengths=[11, 11, 6], skip=[2, 2, 1], prompt=5, new_tokens=6,
    ),
    dict(
        name='llama3-untied-mlpbias',
        what='Llama 3 rope (rope_type llama3: one frequency kept, two smoothed, the rest divided by 8), MLP biases, untied lm_head, batch 1 x 40',
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(
            vocab_size=113, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=3,
            num_key_value_heads=1, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling={'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0,
                          'original_max_position_embeddings': 64},
            attention_bias=False, mlp_bias=True, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
        targets=LLAMA_TARGETS, r=3, alpha=7, seeds=(5401, 5402, 5403),
        lengths=[40], skip=[4], prompt=6, new_tokens=6,
    ),
    dict(
        name='llama-leftpad',
        what='Llama as llama-gqa-odd (GQA 6/3, head_dim 10, linear rope 2.5, biases) with LEFT padding in two rows (their padded query positions see no key); labels -100 at padding and at the first real token of each left-padded row, so no label is scored from a padded position',
        padding='left',
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(
            vocab_size=97, hidden_size=60, intermediate_size=28, num_hidden_layers=2, num_attention_heads=6,
            num_key_value_heads=3, max_position_embeddings=48, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling={'type': 'linear', 'factor': 2.5}, attention_bias=True, mlp_bias=False,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        targets=LLAMA_TARGETS, r=3, alpha=7, seeds=(5501, 5502, 5503),
        lengths=[10, 6, 8], skip=[2, 1, 1], prompt=5, new_tokens=6,
    ),
    dict(
        name='llama-leftpad-padlabel',
        what='as llama-leftpad, but with the labels HF collators make (-100 only at padding): the first real token of each left-padded row is scored from the logits of the padded position before it, whose query sees no key',
        padding='left', score_from_pad=True,
        note=('A query row that sees no key (every earlier position, itself included, is padding) is, in transformers '
              '4.44 eager attention, not empty: every masked score is `score + finfo(float32).min`, which rounds to the '
              'same number for every key, so the softmax gives each of the T keys of the row (padding, real and future '
              'positions alike) the weight 1/T. Those rows normally touch nothing that is checked (their logits are '
              'masked out, nothing attends to them); here they do, because the label of the first real token of rows 1 '
              'and 2 is scored from the logits of the padded position before it. `loss`, `loss_no_lora`, '
              '`embedding_output.grad` and every LoRA gradient depend on those rows; `logits` at real positions and '
              'the decode do not. An engine that gives such rows an attention output of 0 instead moves `loss` by '
              '1.57e-3 and `loss_no_lora` by 3.93e-3 (relative), measured with transformers and an o_proj input '
              'hook zeroing those rows. `llama-leftpad` is the same model and inputs with that label at -100.'),
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(
            vocab_size=97, hidden_size=60, intermediate_size=28, num_hidden_layers=2, num_attention_heads=6,
            num_key_value_heads=3, max_position_embeddings=48, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling={'type': 'linear', 'factor': 2.5}, attention_bias=True, mlp_bias=False,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        targets=LLAMA_TARGETS, r=3, alpha=7, seeds=(5501, 5502, 5503),
        lengths=[10, 6, 8], skip=[2, 1, 1], prompt=5, new_tokens=6,
    ),
]

W_STD, BIAS_STD, NORM_STD = 0.1, 0.05, 0.1
# Embedding std: 0.3 untied, 0.1 tied (the tied matrix is also the lm_head), as the shipped fixtures.
EMB_STD = {False: 0.3, True: 0.1}
A_STD, B_STD = 0.1, 0.05


def normal(shape, gen, std, mean=0.0):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean


def init_weights(model, seed, emb_std):
    """Overwrites HF's init: modules in named_modules() order, weight then bias; tied tensors drawn once."""
    gen = torch.Generator().manual_seed(seed)
    drawn = set()
    with torch.no_grad():
        for _, mod in model.named_modules():
            for pname, p in mod.named_parameters(recurse=False):
                if id(p) in drawn:
                    continue
                if isinstance(mod, torch.nn.Embedding):
                    p.copy_(normal(p.shape, gen, emb_std))
                elif isinstance(mod, torch.nn.Linear):
                    p.copy_(normal(p.shape, gen, W_STD if pname == 'weight' else BIAS_STD))
                elif type(mod).__name__.endswith('RMSNorm'):
                    p.copy_(normal(p.shape, gen, NORM_STD, 1.0))
                else:
                    raise RuntimeError(f'no init rule for {type(mod).__name__}.{pname}')
                drawn.add(id(p))
    missing = [n for n, p in model.named_parameters() if id(p) not in drawn]
    if missing:
        raise RuntimeError(f'parameters left at HF init: {missing}')


def init_lora(peft_model, seed):
    """A ~ N(0, 0.1²), B ~ N(0, 0.05²) (B non-zero), A then B per module in named_modules() order."""
    gen = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for _, mod in peft_model.named_modules():
            if isinstance(mod, peft.tuners.lora.LoraLayer):
                a, b = mod.lora_A['default'].weight, mod.lora_B['default'].weight
                a.copy_(normal(a.shape, gen, A_STD))
                b.copy_(normal(b.shape, gen, B_STD))
                count += 1
    return count


def make_inputs(case, vocab, seed):
    gen = torch.Generator().manual_seed(seed)
    lengths, T = case['lengths'], max(case['lengths'])
    B = len(lengths)
    ids = torch.randint(3, vocab, (B, T), generator=gen, dtype=torch.int64)  # 0..2 are pad/bos/eos
    mask = torch.zeros(B, T, dtype=torch.int64)
    left = case.get('padding') == 'left'
    for i, n in enumerate(lengths):
        if left:
            mask[i, T - n:] = 1
        else:
            mask[i, :n] = 1
    pad = 0
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
    labels = ids.clone()
    labels[mask == 0] = -100
    for i, k in enumerate(case['skip']):
        labels[i, :k] = -100
    if left and not case.get('score_from_pad', False):
        # The first real token of a left-padded row would be scored from a padded position's logits.
        for i, n in enumerate(lengths):
            labels[i, T - n] = -100
    prompt = ids[:1, :case['prompt']].clone()
    return ids, mask, labels, prompt


def embedding_of(peft_model):
    return peft_model.get_base_model().get_input_embeddings()


def forward_backward(peft_model, ids, mask, labels):
    """Forward with LoRA, backward; returns logits, loss, embedding output and its grad, LoRA grads."""
    captured = {}

    def hook(_m, _inp, out):
        leaf = out.detach().requires_grad_(True)
        captured['emb'] = leaf
        return leaf

    h = embedding_of(peft_model).register_forward_hook(hook)
    try:
        peft_model.zero_grad(set_to_none=True)
        out = peft_model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
        out.loss.backward()
    finally:
        h.remove()
    grads = {}
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            grads[name.replace('.default', '') + '.grad'] = p.grad.detach().clone()
    return out.logits.detach(), out.loss.detach(), captured['emb'].detach(), captured['emb'].grad.detach(), grads


def forward_no_lora(peft_model, ids, mask, labels):
    with torch.no_grad(), peft_model.disable_adapter():
        out = peft_model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
    return out.logits, out.loss


def greedy(peft_model, prompt, new_tokens):
    """HF generate (greedy, KV cache, no EOS stop) and its per-step logits; plus a no-cache recompute."""
    with torch.no_grad():
        g = peft_model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                min_new_tokens=0, do_sample=False, num_beams=1, use_cache=True, eos_token_id=None,
                                pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        seq = g.sequences
        step_logits = torch.stack([l[0] for l in g.logits]).float()
        new = seq[:, prompt.shape[1]:]
        if new.shape[1] != new_tokens:
            raise RuntimeError(f'generate returned {new.shape[1]} tokens, wanted {new_tokens}')
        recomputed = []
        for k in range(new_tokens):
            ctx = seq[:, :prompt.shape[1] + k]
            recomputed.append(peft_model(input_ids=ctx, use_cache=False).logits[0, -1])
        recomputed = torch.stack(recomputed)
    if not torch.equal(step_logits.argmax(-1), new[0]):
        raise RuntimeError('argmax of the step logits is not the generated token')
    top2 = step_logits.topk(2, dim=-1).values
    margin = float((top2[:, 0] - top2[:, 1]).min())
    return seq, new, step_logits, float((step_logits - recomputed).abs().max()), margin


def rel(a, b):
    scale = float(b.abs().max())
    d = float((a.double() - b.double()).abs().max())
    return d / scale if scale else d


def masked_logits(logits, mask):
    return logits[mask.bool()]


def build_case(case, out_root, log):
    name = case['name']
    w_seed, lora_seed, data_seed = case['seeds']
    folder = os.path.join(out_root, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)

    config = case['config']()
    config._attn_implementation = 'eager'
    model = case['cls'](config).float().eval()
    model.name_or_path = name  # PEFT writes it as base_model_name_or_path: the base in the same folder
    emb_std = EMB_STD[bool(config.tie_word_embeddings)]
    init_weights(model, w_seed, emb_std)
    model.save_pretrained(folder, safe_serialization=True)

    lcfg = LoraConfig(r=case['r'], lora_alpha=case['alpha'], lora_dropout=0.0, bias='none',
                      target_modules=case['targets'], task_type='CAUSAL_LM')
    pm = get_peft_model(model, lcfg)
    pm.eval()
    n_modules = init_lora(pm, lora_seed)
    # PEFT's model card needs Jinja2, which the reference stack lacks; the card is no part of the fixture.
    pm.create_or_update_model_card = lambda _dir: None
    with tempfile.TemporaryDirectory() as tmp:
        pm.save_pretrained(tmp, safe_serialization=True)
        for f in ('adapter_config.json', 'adapter_model.safetensors'):
            shutil.copy(os.path.join(tmp, f), os.path.join(folder, f))

    ids, mask, labels, prompt = make_inputs(case, config.vocab_size, data_seed)
    logits_nl, loss_nl = forward_no_lora(pm, ids, mask, labels)
    logits, loss, emb, emb_grad, grads = forward_backward(pm, ids, mask, labels)
    adapter_keys = set(load_file(os.path.join(folder, 'adapter_model.safetensors')).keys())
    if {k[:-len('.grad')] for k in grads} != adapter_keys:
        raise RuntimeError(f'{name}: gradient names differ from the adapter keys')
    seq, new, step_logits, cache_diff, margin = greedy(pm, prompt, case['new_tokens'])
    if margin < 1e-3:
        raise RuntimeError(f'{name}: top-1/top-2 margin {margin} too small for an exact token check; change the seeds')

    golden = {
        'input_ids': ids, 'attention_mask': mask, 'labels': labels,
        'logits': logits, 'loss': loss.reshape(1), 'logits_no_lora': logits_nl, 'loss_no_lora': loss_nl.reshape(1),
        'embedding_output': emb, 'embedding_output.grad': emb_grad,
        'gen_prompt_ids': prompt, 'gen_output_ids': seq, 'gen_new_ids': new, 'gen_step_logits': step_logits,
        **grads,
    }
    golden = {k: v.contiguous() for k, v in golden.items()}
    save_file(golden, os.path.join(folder, 'golden.safetensors'), metadata={'format': 'pt'})

    # Sanity of what was written: reload base + adapter the way a user would, get the same numbers.
    reload = check_reload(case, folder, ids, mask, labels)
    # How far float32 is from float64 (HF code as is, model .double()): the fair-tolerance yardstick.
    noise = f64_deviation(pm, ids, mask, labels, logits, loss, emb_grad, grads, seq, prompt.shape[1], step_logits)
    # Padding must not leak: the real rows' outputs equal a run of each row alone, unpadded.
    pad_leak = padding_leak(pm, ids, mask, labels, logits)
    inv_freq = next(m.inv_freq for n, m in model.named_modules() if n.endswith('rotary_emb'))
    stats = dict(inv_freq=[float(x) for x in inv_freq], n_modules=n_modules, cache_diff=cache_diff, margin=margin, reload=reload, noise=noise, pad_leak=pad_leak,
                 loss=float(loss), loss_nl=float(loss_nl), tokens=new[0].tolist(), grads=grads, golden=golden)
    write_case_readme(case, folder, config, stats)
    log(f'{name}: loss {float(loss):.6f} (no LoRA {float(loss_nl):.6f}), tokens {new[0].tolist()}, margin {margin:.4f}, '
        f'cache diff {cache_diff:.2e}, reload {reload:.2e}, worst f32-vs-f64 {max(v for v in noise.values()):.2e}, pad leak {pad_leak:.2e}')
    return stats


def check_reload(case, folder, ids, mask, labels):
    """Base from config.json + model.safetensors, adapter by PEFT's loader: max |logits diff|."""
    with tempfile.TemporaryDirectory() as tmp:
        for f in ('config.json', 'model.safetensors', 'generation_config.json'):
            shutil.copy(os.path.join(folder, f), os.path.join(tmp, f))
        base = case['cls'].from_pretrained(tmp, attn_implementation='eager').float().eval()
    cfg = LoraConfig(**{k: v for k, v in json.load(open(os.path.join(folder, 'adapter_config.json'))).items()
                        if k in ('r', 'lora_alpha', 'lora_dropout', 'bias', 'target_modules', 'task_type')})
    pm = get_peft_model(base, cfg)
    res = set_peft_model_state_dict(pm, load_file(os.path.join(folder, 'adapter_model.safetensors')))
    if res.unexpected_keys:
        raise RuntimeError(f'adapter keys PEFT did not use: {res.unexpected_keys}')
    pm.eval()
    want = load_file(os.path.join(folder, 'golden.safetensors'))
    with torch.no_grad():
        out = pm(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
    return max(float((out.logits - want['logits']).abs().max()), abs(float(out.loss) - float(want['loss'][0])))


def float32_min_mask(mask):
    """HF's own 4-D additive mask (causal + padding) with float32's min, for the float64 run: with
    float64's min, HF's float32 softmax turns a query row that sees no key into NaN."""
    B, T = mask.shape
    allowed = torch.ones(T, T).tril().bool()[None, None] & mask.bool()[:, None, None, :]
    return torch.where(allowed, torch.tensor(0.0, dtype=torch.float64), torch.tensor(torch.finfo(torch.float32).min, dtype=torch.float64))


def f64_deviation(pm, ids, mask, labels, logits, loss, emb_grad, grads, seq, plen, step_logits):
    pd = copy.deepcopy(pm).double()
    left = bool((mask[:, 0] == 0).any())
    l64, loss64, _, eg64, g64 = forward_backward(pd, ids, float32_min_mask(mask) if left else mask, labels)
    lin = [k for k in grads if '.lora_' in k]
    noise = {
        'logits': rel(masked_logits(logits, mask), masked_logits(l64, mask)),
        'loss': rel(loss.reshape(1), loss64.reshape(1)),
        'embedding_output.grad': rel(emb_grad, eg64),
        'lora grads (worst tensor)': max(rel(grads[k], g64[k]) for k in lin),
    }
    with torch.no_grad():
        st = torch.stack([pd(input_ids=seq[:, :plen + k], use_cache=False).logits[0, -1] for k in range(step_logits.shape[0])])
    noise['gen_step_logits'] = rel(step_logits, st)
    return noise


def padding_leak(pm, ids, mask, labels, logits):
    worst = 0.0
    with torch.no_grad():
        for i in range(ids.shape[0]):
            real = mask[i].bool()
            alone = pm(input_ids=ids[i:i + 1][:, real], use_cache=False).logits[0]
            worst = max(worst, float((alone - logits[i][real]).abs().max()))
    return worst


def dtype_name(t):
    return {torch.float32: 'F32', torch.int64: 'I64'}[t.dtype]


def write_case_readme(case, folder, config, s):
    name = case['name']
    cfg_text = open(os.path.join(folder, 'config.json')).read().strip()
    w_seed, lora_seed, data_seed = case['seeds']
    g = s['golden']
    scale = case['alpha'] / case['r']
    files = sorted(f for f in os.listdir(folder) if f != 'README.md')
    rows = []
    for k in sorted(g):
        t = g[k]
        rows.append(f'| `{k}` | {dtype_name(t)} | {list(t.shape)} |')
    noise_rows = [f'| {k} | {v:.2e} |' for k, v in s['noise'].items()]
    worst_noise = max(s['noise'].values())
    text = f"""# `{name}` — awkward golden case (transformers {transformers.__version__}, PEFT {peft.__version__})

{case['what']}.

Same format and tensor semantics as the folders of `tests/fixtures/hf-golden/` (see `tests/fixtures/hf-golden/tiny-llama/README.md` for every convention: loss shift and global token mean, rotary layout, GQA grouping `h // n_rep`, fused layouts in `tiny-phi3`); what differs here is the shape of the case.

## How it was made

`scripts/make-golden-cases.py` (case `{name}`), run with the reference stack of `../shared/pyref`:
transformers **{transformers.__version__}** `{case['cls'].__name__}` (its own modeling code, `attn_implementation="eager"`, CPU, float32),
PEFT **{peft.__version__}** (`get_peft_model`, `save_pretrained` wrote `adapter_config.json` and `adapter_model.safetensors`),
PyTorch {torch.__version__}. HF's `save_pretrained` wrote `config.json`, `generation_config.json` and `model.safetensors`.

- Seeds (`torch.Generator().manual_seed`): base weights `{w_seed}`, LoRA A/B `{lora_seed}`, data `{data_seed}`.
- Weight init (overwrites HF's): every `nn.Linear` weight ~ N(0, {W_STD}²), every linear bias ~ N(0, {BIAS_STD}²), embedding ~ N(0, {EMB_STD[bool(config.tie_word_embeddings)]}²), every RMSNorm weight ~ 1 + N(0, {NORM_STD}²); modules in `named_modules()` order, weight then bias; tied tensors drawn once.
- LoRA: r = {case['r']}, lora_alpha = {case['alpha']} (scaling = {scale:.6g}), lora_dropout 0, bias none, target_modules = {case['targets']} (every linear layer of the family but lm_head). `lora_A.weight` ~ N(0, {A_STD}²), `lora_B.weight` ~ N(0, {B_STD}²) (B deliberately non-zero), A then B per module in `named_modules()` order; {s['n_modules']} adapted modules.
- Inputs: token ids uniform in [3, vocab); row lengths {case['lengths']} of {max(case['lengths'])} ({case.get('padding', 'right')} padding with id 0, `attention_mask` 0 there; no `position_ids`, so positions 0..T−1 in every row, as HF does); labels = ids with the first {case['skip']} positions of each row and every padded position set to -100{'' if case.get('padding') != 'left' or case.get('score_from_pad') else ', and the first real token of each left-padded row too (it would be scored from a padded position)'}.
- Greedy decode: `generate(do_sample=False, use_cache=True, eos_token_id=None, max_new_tokens={case['new_tokens']}, output_logits=True)` on the first {case['prompt']} tokens of row 0; `gen_step_logits[k]` produced `gen_new_ids[0, k]`.

## Model

```json
{cfg_text}
```

## Results

- loss {s['loss']:.6f}, loss without LoRA {s['loss_nl']:.6f}; greedy tokens {s['tokens']}.
- KV-cache decode vs a no-cache recompute: max |diff| {s['cache_diff']:.2e}; smallest top-1/top-2 margin over the steps {s['margin']:.4f}.
- Reload (base from `config.json` + `model.safetensors`, adapter loaded by PEFT's `set_peft_model_state_dict` from `adapter_model.safetensors`): max |diff| of logits and loss {s['reload']:.2e}.
- Rotary `inv_freq` as HF holds it (float32, after any `rope_scaling`): {', '.join(f'{x:.9g}' for x in s['inv_freq'])}.
- Padding: each row run alone without its padding reproduces its real positions' logits to {s['pad_leak']:.2e}.

## float32 vs float64, and the tolerance

Same weights and inputs with the model `.double()` (HF code as is: its RMSNorm and softmax still step through float32), as max |f32 − f64| / max |f64| (logits over real positions only):

| tensor | relative deviation |
| --- | --- |
{chr(10).join(noise_rows)}

Check: per tensor `max|yours − golden| ≤ 1e-5 · max|golden|` (golden-check's tolerance; worst measured float32 noise here {worst_noise:.2e}); greedy tokens exact.

{'## Note' + chr(10) + chr(10) + case['note'] + chr(10) + chr(10) if case.get('note') else ''}## Files

{', '.join(f'`{f}`' for f in files)}.

### `golden.safetensors`

| name | dtype | shape |
| --- | --- | --- |
{chr(10).join(rows)}
"""
    with open(os.path.join(folder, 'README.md'), 'w') as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------
# hf-train-format cases (tests/fixtures/hf-train-cases/<name>/): six optimizer steps of LoRA
# training on a golden case's model and initial adapter, with the semantics of tests/fixtures/hf-train.

TRAIN_OUT_DEFAULT = os.path.join('tests', 'fixtures', 'hf-train-cases')
TRAIN_CASES = [
    dict(name='llama-gqa-odd', golden='llama-gqa-odd', seed=5911, micro_batches=12, batch=3, seq=10,
         min_len=5, skip=2, sub_vocab=8, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
         warmup=2, steps=6, accum=2, max_grad_norm=1.0),
]


def train_batches(tc, vocab):
    """Right-padded micro-batches with unequal label-token counts; the steps 0, 2, 4 draw their tokens
    from a small sub-vocabulary (repetitive text), the others uniformly."""
    gen = torch.Generator().manual_seed(tc['seed'])
    M, B, T = tc['micro_batches'], tc['batch'], tc['seq']
    ids = torch.zeros(M, B, T, dtype=torch.int64)
    mask = torch.zeros(M, B, T, dtype=torch.int64)
    for m in range(M):
        step = m // tc['accum']
        if step % 2 == 0:
            sub = torch.randperm(vocab - 3, generator=gen)[:tc['sub_vocab']] + 3
            tok = sub[torch.randint(0, tc['sub_vocab'], (B, T), generator=gen)]
        else:
            tok = torch.randint(3, vocab, (B, T), generator=gen)
        lengths = torch.randint(tc['min_len'], T + 1, (B,), generator=gen)
        lengths[m % B] = T  # every micro-batch has a full row, so its seq length is T
        for b in range(B):
            mask[m, b, :lengths[b]] = 1
        ids[m] = torch.where(mask[m].bool(), tok, torch.zeros_like(tok))
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[:, :, :tc['skip']] = -100
    return ids, mask, labels


def lora_params(pm):
    return [(n.replace('.default', ''), p) for n, p in pm.named_parameters() if p.requires_grad]


def run_training(pm, tc, ids, mask, labels, vocab):
    """The loop of tests/fixtures/hf-train's README, verbatim."""
    named = lora_params(pm)
    params = [p for _, p in named]
    opt = torch.optim.AdamW(params, lr=tc['lr'], betas=tc['betas'], eps=tc['eps'], weight_decay=tc['weight_decay'], foreach=False)
    sched = transformers.get_cosine_schedule_with_warmup(opt, num_warmup_steps=tc['warmup'], num_training_steps=tc['steps'])
    rec = dict(micro_token_counts=[], micro_sum_losses=[], step_losses=[], step_lrs=[], step_grad_norms=[], step_clipped=[], grad_steps=[])
    for s in range(tc['steps']):
        mbs = [tc['accum'] * s + j for j in range(tc['accum'])]
        counts = [int((labels[m][:, 1:] != -100).sum()) for m in mbs]
        N = sum(counts)
        opt.zero_grad()
        sums = []
        for m in mbs:
            logits = pm(input_ids=ids[m], attention_mask=mask[m], use_cache=False).logits
            sl = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), labels[m][:, 1:].reshape(-1), reduction='sum', ignore_index=-100)
            (sl / N).backward()
            sums.append(sl.detach())
        rec['micro_token_counts'] += counts
        rec['micro_sum_losses'] += [float(x) for x in sums]
        rec['step_losses'].append(float(sum(sums) / N))
        rec['step_lrs'].append(opt.param_groups[0]['lr'])
        rec['grad_steps'].append({k: p.grad.detach().clone() for k, p in named})
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm=tc['max_grad_norm']))
        rec['step_grad_norms'].append(norm)
        rec['step_clipped'].append(1 if norm > tc['max_grad_norm'] else 0)
        opt.step()
        sched.step()
    with torch.no_grad():
        rec['eval_loss'] = float(pm(input_ids=ids[0], attention_mask=mask[0], labels=labels[0], use_cache=False).loss)
    rec['optimizer_step'] = int(opt.state[params[0]]['step'])
    rec['weights'] = {k: p.detach().clone() for k, p in named}
    rec['exp_avg'] = {k: opt.state[p]['exp_avg'].clone() for k, p in named}
    rec['exp_avg_sq'] = {k: opt.state[p]['exp_avg_sq'].clone() for k, p in named}
    return rec


def load_golden_model(case, folder, dtype):
    with tempfile.TemporaryDirectory() as tmp:
        for f in ('config.json', 'model.safetensors'):
            shutil.copy(os.path.join(folder, f), os.path.join(tmp, f))
        base = case['cls'].from_pretrained(tmp, attn_implementation='eager').to(dtype)
    acfg = json.load(open(os.path.join(folder, 'adapter_config.json')))
    cfg = LoraConfig(**{k: v for k, v in acfg.items() if k in ('r', 'lora_alpha', 'lora_dropout', 'bias', 'target_modules', 'task_type')})
    pm = get_peft_model(base, cfg)
    adapter = load_file(os.path.join(folder, 'adapter_model.safetensors'))
    res = set_peft_model_state_dict(pm, adapter)
    if res.unexpected_keys:
        raise RuntimeError(f'adapter keys PEFT did not use: {res.unexpected_keys}')
    pm.to(dtype).train()
    for k, p in lora_params(pm):
        if not torch.equal(p.detach().float(), adapter[k]):
            raise RuntimeError(f'{k}: PEFT did not load the adapter bit for bit')
    return pm, acfg


def build_train_case(tc, golden_root, out_root, log):
    case = next(c for c in CASES if c['name'] == tc['golden'])
    src = os.path.join(golden_root, tc['golden'])
    folder = os.path.join(out_root, tc['name'])
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    for f in ('config.json', 'model.safetensors', 'adapter_config.json', 'adapter_model.safetensors'):
        shutil.copy(os.path.join(src, f), os.path.join(folder, f))
    pm, acfg = load_golden_model(case, folder, torch.float32)
    vocab = pm.get_base_model().config.vocab_size
    ids, mask, labels = train_batches(tc, vocab)
    rec = run_training(pm, tc, ids, mask, labels, vocab)
    # The clip decisions must not hinge on rounding.
    closest = min(abs(n - tc['max_grad_norm']) for n in rec['step_grad_norms'])
    if closest < 0.05 or len(set(rec['step_clipped'])) != 2:
        raise RuntimeError(f"{tc['name']}: pre-clip norms {rec['step_grad_norms']} do not split cleanly around {tc['max_grad_norm']}")
    pm64, _ = load_golden_model(case, folder, torch.float64)
    rec64 = run_training(pm64, tc, ids, mask, labels, vocab)

    save_file({'input_ids': ids, 'attention_mask': mask, 'labels': labels}, os.path.join(folder, 'batches.safetensors'), metadata={'format': 'pt'})
    f = lambda xs: torch.tensor(xs, dtype=torch.float32)
    i = lambda xs: torch.tensor(xs, dtype=torch.int64)
    expected = {
        'micro_token_counts': i(rec['micro_token_counts']), 'micro_sum_losses': f(rec['micro_sum_losses']),
        'step_losses': f(rec['step_losses']), 'step_lrs': f(rec['step_lrs']), 'step_grad_norms': f(rec['step_grad_norms']),
        'step_clipped': i(rec['step_clipped']), 'eval_loss': f([rec['eval_loss']]), 'optimizer_step': i([rec['optimizer_step']]),
    }
    for k in rec['weights']:
        expected[k] = rec['weights'][k]
        expected[k + '.exp_avg'] = rec['exp_avg'][k]
        expected[k + '.exp_avg_sq'] = rec['exp_avg_sq'][k]
        for s, g in enumerate(rec['grad_steps']):
            expected[f'{k}.grad_step{s}'] = g[k]
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(folder, 'expected.safetensors'), metadata={'format': 'pt'})

    def dev(a, b):
        return rel(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64))
    noise = {q: dev(rec[q], rec64[q]) for q in ('micro_sum_losses', 'step_losses', 'step_lrs', 'step_grad_norms')}
    noise['eval_loss'] = dev([rec['eval_loss']], [rec64['eval_loss']])
    for g in ('weights', 'exp_avg', 'exp_avg_sq'):
        noise[g + ' (worst tensor)'] = max(dev(rec[g][k], rec64[g][k]) for k in rec[g])
    lrs = [tc['lr'] * lam for lam in schedule_lambdas(tc)]
    train_json = {
        'format': 'hf-train fixture v2', 'dtype': 'float32', 'optimizer': 'torch.optim.AdamW',
        'lr': tc['lr'], 'betas': list(tc['betas']), 'eps': tc['eps'], 'weight_decay': tc['weight_decay'], 'amsgrad': False,
        'optimizer_params': 'every lora_A.weight and lora_B.weight (PEFT keys as in adapter_model.safetensors); base weights frozen',
        'schedule': 'cosine_with_warmup', 'schedule_fn': f'transformers.get_cosine_schedule_with_warmup (transformers {transformers.__version__} optimization.py)',
        'num_warmup_steps': tc['warmup'], 'num_training_steps': tc['steps'], 'num_cycles': 0.5, 'step_lrs': lrs,
        'gradient_accumulation_steps': tc['accum'], 'micro_batches': tc['micro_batches'], 'micro_batch_shape': [tc['batch'], tc['seq']],
        'loss': 'token-weighted over the accumulation window, exactly as tests/fixtures/hf-train/README.md and its folders define it: step_loss[s] = (sum of the per-token cross-entropy of every shifted label != -100 in the window\'s micro-batches) / (their label-token count); each micro-batch is back-propagated as micro_sum_loss / N_window',
        'max_grad_norm': tc['max_grad_norm'], 'grad_norm_type': 2.0,
        'clipping': 'torch.nn.utils.clip_grad_norm_ over all LoRA gradients together, after the window is accumulated, before optimizer.step(); step_grad_norms records the pre-clip total',
        'eval': 'eval_loss = after the last optimizer step, one forward of micro-batch 0 with the trained adapter; HF\'s own loss',
        'lora': {'r': acfg['r'], 'lora_alpha': acfg['lora_alpha'], 'scaling': acfg['lora_alpha'] / acfg['r'], 'lora_dropout': acfg['lora_dropout'],
                 'target_modules': acfg['target_modules'], 'initial_adapter': 'adapter_model.safetensors'},
        'model': f"config.json + model.safetensors, {case['cls'].__name__}, eager attention, all dropouts 0",
    }
    with open(os.path.join(folder, 'train.json'), 'w') as fh:
        json.dump(train_json, fh, indent=1)
        fh.write('\n')
    write_train_readme(tc, case, folder, rec, noise, ids, mask)
    log(f"train {tc['name']}: step losses {[round(x, 4) for x in rec['step_losses']]}, norms {[round(x, 3) for x in rec['step_grad_norms']]}, "
        f"clipped {rec['step_clipped']}, eval {rec['eval_loss']:.6f}, worst f32-vs-f64 {max(noise.values()):.2e}")


def schedule_lambdas(tc):
    import math
    out = []
    for s in range(tc['steps']):
        if s < tc['warmup']:
            out.append(s / max(1, tc['warmup']))
        else:
            progress = (s - tc['warmup']) / max(1, tc['steps'] - tc['warmup'])
            out.append(max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress))))
    return out


def write_train_readme(tc, case, folder, rec, noise, ids, mask):
    steps = []
    for s in range(tc['steps']):
        a = tc['accum'] * s
        mbs = list(range(a, a + tc['accum']))
        counts = [rec['micro_token_counts'][m] for m in mbs]
        steps.append(f"| {s} | {', '.join(map(str, mbs))} | {' + '.join(map(str, counts))} = {sum(counts)} | {rec['step_losses'][s]:.6f} | "
                     f"{rec['step_lrs'][s]:.9g} | {rec['step_grad_norms'][s]:.6f} | {'yes' if rec['step_clipped'][s] else 'no'} |")
    lengths = [mask[m].sum(-1).tolist() for m in range(mask.shape[0])]
    noise_rows = [f'| {k} | {v:.2e} |' for k, v in noise.items()]
    files = sorted(f for f in os.listdir(folder) if f != 'README.md')
    text = f"""# `{tc['name']}` — LoRA training-trajectory case ({case['cls'].__name__}, right padding, unequal token counts)

Six optimizer steps of LoRA fine-tuning on the model and initial adapter of the golden case `tests/fixtures/hf-golden-cases/{tc['golden']}` (`config.json`, `model.safetensors`, `adapter_config.json`, `adapter_model.safetensors` copied from there), with exactly the semantics of `tests/fixtures/hf-train/` (see `tests/fixtures/hf-train/tiny-llama/README.md`: the loop, token-weighted window loss, schedule, clipping, AdamW formula, file layout). What is new here: GQA 6/3 with head_dim 10, linear rope scaling, q/k/v/o biases, r 3 / alpha 7, micro-batches of 3 rows with right padding, and unequal label-token counts across micro-batches (so a mean of per-micro-batch means is caught).

## How it was made

`scripts/make-golden-cases.py` (train case `{tc['name']}`), transformers **{transformers.__version__}** `{case['cls'].__name__}` (eager, CPU, float32, loaded with `from_pretrained` from this folder's config.json + model.safetensors), PEFT **{peft.__version__}** (`get_peft_model`, then the adapter file through `set_peft_model_state_dict`, checked bit for bit), `torch.optim.AdamW(foreach=False)`, `torch.nn.utils.clip_grad_norm_`, `transformers.get_cosine_schedule_with_warmup`, PyTorch {torch.__version__}.

- AdamW lr {tc['lr']}, betas {tc['betas']}, eps {tc['eps']}, weight_decay {tc['weight_decay']}; cosine schedule with {tc['warmup']} warmup steps of {tc['steps']} (step 0 runs with lr 0); {tc['accum']} micro-batches per step; max_grad_norm {tc['max_grad_norm']}.
- Data (`torch.Generator().manual_seed({tc['seed']})`): {tc['micro_batches']} micro-batches of [{tc['batch']}, {tc['seq']}]; row lengths uniform in [{tc['min_len']}, {tc['seq']}] with one full row per micro-batch, right padding with id 0 (`attention_mask` 0); labels = ids with the first {tc['skip']} positions and every padded position -100. The micro-batches of steps 0, 2, 4 draw their tokens from a random sub-vocabulary of {tc['sub_vocab']} ids (repetitive text), the others uniformly from [3, vocab). The generator refuses data whose pre-clip norms come within 0.05 of max_grad_norm or that clip on every step or none; these clip on steps {[s for s, c in enumerate(rec['step_clipped']) if c]}.
- Row lengths per micro-batch: {lengths}.

## Trajectory

| step | micro-batches | label tokens | step loss | lr | pre-clip grad norm | clipped |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(steps)}

micro_token_counts {rec['micro_token_counts']}; eval_loss {rec['eval_loss']:.6f}; optimizer_step {rec['optimizer_step']}. Closest pre-clip norm to max_grad_norm: {min(abs(n - tc['max_grad_norm']) for n in rec['step_grad_norms']):.3f} away.

## float32 vs float64, and the tolerance

The same run in float64 (HF code as is, model and adapter `.double()`), max |f32 − f64| / max |f64| per quantity (worst tensor for the groups):

| quantity | relative deviation |
| --- | --- |
{chr(10).join(noise_rows)}

Check (train-check's): every quantity within 1e-4 · max |expected|; token counts, clip decisions and the step count exact.

## Files

{', '.join(f'`{f}`' for f in files)}. `expected.safetensors` holds the tensors listed in the hf-train README (final LoRA weights under their PEFT keys, `.exp_avg`, `.exp_avg_sq`, the diagnostics `.grad_step0` … `.grad_step{tc['steps'] - 1}`, and the scalar series); `batches.safetensors` holds `input_ids`, `attention_mask`, `labels`, int64 [{tc['micro_batches']}, {tc['batch']}, {tc['seq']}].
"""
    with open(os.path.join(folder, 'README.md'), 'w') as fh:
        fh.write(text)


def main():
    # PEFT keeps target_modules as a set: its order in adapter_config.json follows string hashing.
    if os.environ.get('PYTHONHASHSEED') != '0':
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, 'PYTHONHASHSEED': '0'})
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=OUT_DEFAULT)
    ap.add_argument('--train-out', default=TRAIN_OUT_DEFAULT)
    ap.add_argument('--case', action='append', help='only these cases (default: all)')
    args = ap.parse_args()
    if transformers.__version__ != REQUIRED_TRANSFORMERS or peft.__version__ != REQUIRED_PEFT:
        sys.exit(f'needs transformers {REQUIRED_TRANSFORMERS} and PEFT {REQUIRED_PEFT} (found {transformers.__version__}, {peft.__version__}): '
                 'eval "$(PYREF_TRANSFORMERS=4.44.0 bash ../shared/pyref/setup.sh)"')
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one summation order, so reruns are byte-identical
    wanted = set(args.case or [c['name'] for c in CASES])
    unknown = wanted - {c['name'] for c in CASES}
    if unknown:
        sys.exit(f'unknown case(s) {sorted(unknown)}; known: {[c["name"] for c in CASES]}')
    os.makedirs(args.out, exist_ok=True)
    for case in CASES:
        if case['name'] in wanted:
            build_case(case, args.out, print)
    for tc in TRAIN_CASES:
        if tc['golden'] in wanted:
            os.makedirs(args.train_out, exist_ok=True)
            build_train_case(tc, args.out, args.train_out, print)


if __name__ == '__main__':
    main()
