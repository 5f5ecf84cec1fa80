#!/usr/bin/env python3
"""Awkward hf-golden cases (tests/fixtures/hf-golden-cases/<name>/), made by the reference stack.

Each case is a tiny random model of one family built by transformers' own modeling code (eager
attention, CPU, float32), wrapped with the real PEFT library (`get_peft_model`, `save_pretrained`),
with LoRA A and B drawn non-zero. The folder holds what `golden-check` reads: config.json,
model.safetensors (HF `save_pretrained`), adapter_config.json + adapter_model.safetensors (PEFT
`save_pretrained`) and golden.safetensors (inputs, logits and loss with and without LoRA, the
embedding output and its gradient, every LoRA gradient, a greedy KV-cache decode with its per-step
logits), plus a README.md.

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
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

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
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    pad = 0
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
    labels = ids.clone()
    labels[mask == 0] = -100
    for i, k in enumerate(case['skip']):
        labels[i, :k] = -100
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


def f64_deviation(pm, ids, mask, labels, logits, loss, emb_grad, grads, seq, plen, step_logits):
    pd = copy.deepcopy(pm).double()
    l64, loss64, _, eg64, g64 = forward_backward(pd, ids, mask, labels)
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
            n = int(mask[i].sum())
            alone = pm(input_ids=ids[i:i + 1, :n], use_cache=False).logits[0]
            worst = max(worst, float((alone - logits[i, :n]).abs().max()))
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
- Inputs: token ids uniform in [3, vocab); row lengths {case['lengths']} of {max(case['lengths'])} (right padding with id 0, `attention_mask` 0 there; no `position_ids`, so positions 0..T−1); labels = ids with the first {case['skip']} positions of each row and every padded position set to -100.
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

## Files

{', '.join(f'`{f}`' for f in files)}.

### `golden.safetensors`

| name | dtype | shape |
| --- | --- | --- |
{chr(10).join(rows)}
"""
    with open(os.path.join(folder, 'README.md'), 'w') as f:
        f.write(text)


def main():
    # PEFT keeps target_modules as a set: its order in adapter_config.json follows string hashing.
    if os.environ.get('PYTHONHASHSEED') != '0':
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, 'PYTHONHASHSEED': '0'})
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=OUT_DEFAULT)
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


if __name__ == '__main__':
    main()
