#!/usr/bin/env python3
"""Makes the built-in `demo` model: a small Llama-shaped causal LM really pretrained on Python's
standard library sources (PSF-2.0), so it writes plausible Python/English before any fine-tuning.

Stages (each writes into --work and is skipped when its output is already there):
  corpus     the .py files of /usr/lib/python3.X/ (Debian's libpython3.X-minimal / -stdlib
             packages), test folders excluded, sorted by path; every 40th file is held out.
  tokenizer  node scripts/make-demo-tokenizer.mjs on the training part (the project's BPE trainer).
  encode     the corpus as token ids, one <|endoftext|> after each file.
  pretrain   LlamaForCausalLM (transformers from ../shared/pyref), CPU, float32, one thread,
             fixed seed, AdamW, linear warm-up then cosine decay, for --minutes of wall clock or
             --steps optimizer steps, whichever comes first.
  write      public/demo/model/{config.json, model.safetensors (float16), README.md}.

  eval "$(bash ../shared/pyref/setup.sh)"
  nice -n 10 /usr/bin/python3 scripts/make-demo-model.py [--work build/demo-model] [--minutes 45]

Deterministic for a given stdlib and step count: the corpus order, the batches and the
initialization come from the seed alone, and torch runs single-threaded. The step count a
wall-clock budget reaches depends on the machine, so the README records it, and
`--steps N --minutes 0` reproduces a run of N steps.
"""
import argparse
import glob
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EOS = '<|endoftext|>'
HELD_OUT_EVERY = 40
SKIP_DIRS = {'test', 'tests', 'idle_test', 'site-packages', 'dist-packages', '__pycache__'}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work', default=os.path.join(ROOT, 'build', 'demo-model'))
    p.add_argument('--out', default=os.path.join(ROOT, 'public', 'demo', 'model'))
    p.add_argument('--tokenizer-out', default=os.path.join(ROOT, 'public', 'demo', 'tokenizer'))
    p.add_argument('--stdlib', default=None, help='default: the newest /usr/lib/python3.X/')
    p.add_argument('--docs', default=None, help="default: that Python's documentation sources, /usr/share/doc/python3.X/html/_sources/ (Debian's python3.X-doc); 'none' for code alone")
    p.add_argument('--vocab', type=int, default=2048)
    p.add_argument('--hidden', type=int, default=128)
    p.add_argument('--layers', type=int, default=4)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--intermediate', type=int, default=448)
    p.add_argument('--seq', type=int, default=256)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--warmup', type=int, default=100)
    p.add_argument('--steps', type=int, default=4000, help='cosine schedule length (and the step limit)')
    p.add_argument('--minutes', type=float, default=45.0, help='wall-clock limit; 0 = none')
    p.add_argument('--stop-after', type=int, default=0, help='stop after this many steps of the --steps schedule (0 = run it all)')
    p.add_argument('--seed', type=int, default=20261202)
    p.add_argument('--eval-every', type=int, default=200)
    p.add_argument('--stage', default='all', choices=['all', 'corpus', 'tokenizer', 'encode', 'pretrain', 'write', 'measure'])
    return p.parse_args()


# ---------------------------------------------------------------- corpus

def stdlib_dir(arg):
    if arg:
        return arg
    found = sorted(glob.glob('/usr/lib/python3.*/'), key=lambda d: [int(x) for x in d.rstrip('/').split('python')[-1].split('.')])
    if not found:
        sys.exit('make-demo-model.py: no /usr/lib/python3.X/ on this machine; pass --stdlib')
    return found[-1]


def docs_dir(arg, stdlib):
    if arg:
        return arg
    version = stdlib.rstrip('/').split('python')[-1]
    found = f'/usr/share/doc/python{version}/html/_sources/'
    if not os.path.isdir(found):
        sys.exit(f'make-demo-model.py: no {found} on this machine: apt install python{version}-doc (or pass --docs)')
    return found


def stdlib_files(base):
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith('test_'))
        for f in sorted(filenames):
            if f.endswith('.py') and not f.startswith('test_'):
                out.append(os.path.join(dirpath, f))
    return sorted(out, key=lambda p: os.path.relpath(p, base))


def docs_files(base):
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        out.extend(os.path.join(dirpath, f) for f in filenames if f.endswith('.rst.txt'))
    return sorted(out, key=lambda p: os.path.relpath(p, base))


def make_corpus(args, work):
    """Two sources, code then prose; in each, path order, every HELD_OUT_EVERY-th file held out."""
    stdlib = stdlib_dir(args.stdlib)
    sources = {'stdlib': (stdlib, stdlib_files(stdlib))}
    if args.docs != 'none':
        docs = docs_dir(args.docs, stdlib)
        sources['docs'] = (docs, docs_files(docs))
    parts = {'train': [], 'heldout': []}
    listing = []
    for source, (base, files) in sources.items():
        for i, path in enumerate(files):
            with open(path, 'rb') as fh:
                raw = fh.read()
            try:
                text = raw.decode('utf-8')
            except UnicodeDecodeError:
                continue  # a few files carry another source encoding: left out rather than guessed
            if not text.strip():
                continue
            split = 'heldout' if i % HELD_OUT_EVERY == 0 else 'train'
            parts[split].append(text)
            listing.append({'source': source, 'path': os.path.relpath(path, base), 'split': split, 'bytes': len(raw), 'sha256': hashlib.sha256(raw).hexdigest()})
    for split, texts in parts.items():
        with open(os.path.join(work, f'{split}.jsonl'), 'w', encoding='utf-8') as fh:
            for t in texts:
                fh.write(json.dumps({'text': t}) + '\n')
    count = lambda source, split: [f for f in listing if f['source'] == source and f['split'] == split]
    summary = {
        'sources': {name: base for name, (base, _) in sources.items()},
        'files': listing,
        'by_source': {name: {split: {'files': len(count(name, split)), 'bytes': sum(f['bytes'] for f in count(name, split))}
                             for split in ('train', 'heldout')} for name in sources},
        'train_files': len(parts['train']),
        'heldout_files': len(parts['heldout']),
        'train_bytes': sum(len(t.encode()) for t in parts['train']),
        'heldout_bytes': sum(len(t.encode()) for t in parts['heldout']),
    }
    with open(os.path.join(work, 'corpus.json'), 'w') as fh:
        json.dump(summary, fh, indent=1)
    for name, splits in summary['by_source'].items():
        print(f"corpus: {name}: {splits['train']['files']} train files ({splits['train']['bytes']} bytes), "
              f"{splits['heldout']['files']} held out ({splits['heldout']['bytes']} bytes) from {summary['sources'][name]}", flush=True)


# ---------------------------------------------------------------- tokenizer

def make_tokenizer(args, work):
    subprocess.run(['node', os.path.join(ROOT, 'scripts', 'make-demo-tokenizer.mjs'),
                    '--corpus', os.path.join(work, 'train.jsonl'), '--vocab', str(args.vocab),
                    '--out', args.tokenizer_out], check=True)


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Bpe:
    """Encodes as the studio's byte-level BPE does (pre-tokenize, map bytes, merge by rank)."""

    def __init__(self, tokenizer_dir):
        import regex
        with open(os.path.join(tokenizer_dir, 'tokenizer.json'), encoding='utf-8') as fh:
            tok = json.load(fh)
        self.vocab = tok['model']['vocab']
        self.ranks = {tuple(m.split(' ')): i for i, m in enumerate(tok['model']['merges'])}
        self.eos = next(t['id'] for t in tok['added_tokens'] if t['content'] == EOS)
        self.byte_char = bytes_to_unicode()
        self.split = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
        self.cache = {}

    def word(self, piece):
        hit = self.cache.get(piece)
        if hit is not None:
            return hit
        syms = [self.byte_char[b] for b in piece.encode('utf-8')]
        while len(syms) > 1:
            best = min(range(len(syms) - 1), key=lambda i: self.ranks.get((syms[i], syms[i + 1]), math.inf))
            if (syms[best], syms[best + 1]) not in self.ranks:
                break
            a, b = syms[best], syms[best + 1]
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        ids = [self.vocab[s] for s in syms]
        self.cache[piece] = ids
        return ids

    def encode(self, text):
        ids = []
        for piece in self.split.findall(text):
            ids.extend(self.word(piece))
        return ids


def encode_corpus(args, work):
    import numpy as np
    bpe = Bpe(args.tokenizer_out)
    with open(os.path.join(work, 'corpus.json')) as fh:
        corpus = json.load(fh)
    # The held-out documents come code first, then prose: where the code ends, in tokens.
    held_code_docs = corpus['by_source']['stdlib']['heldout']['files']
    code_tokens = None
    for split in ('train', 'heldout'):
        ids = []
        with open(os.path.join(work, f'{split}.jsonl'), encoding='utf-8') as fh:
            for n, line in enumerate(fh):
                if split == 'heldout' and n == held_code_docs:
                    code_tokens = len(ids)
                ids.extend(bpe.encode(json.loads(line)['text']))
                ids.append(bpe.eos)
        np.array(ids, dtype=np.uint16).tofile(os.path.join(work, f'{split}.u16'))
        print(f'encode: {split} {len(ids)} tokens', flush=True)
    with open(os.path.join(work, 'heldout-parts.json'), 'w') as fh:
        code_tokens = len(ids) if code_tokens is None else code_tokens
        json.dump({'stdlib': code_tokens, 'docs': len(ids) - code_tokens}, fh)
    # Text the studio's tokenizer must encode to the same ids (tests/node/tokenizer.test.ts checks
    # it): the start of the first held-out file and a DS-1000 demo prompt.
    with open(os.path.join(work, 'heldout.jsonl'), encoding='utf-8') as fh:
        head = json.loads(fh.readline())['text'][:1500]
    with open(os.path.join(ROOT, 'public', 'demo', 'data', 'ds1000-demo.jsonl'), encoding='utf-8') as fh:
        prompt = json.loads(fh.readline())['prompt']
    sample = head + '\n' + prompt
    with open(os.path.join(work, 'sample-ids.json'), 'w') as fh:
        json.dump({'text': sample, 'ids': bpe.encode(sample)}, fh)


# ---------------------------------------------------------------- model

def model_config(args):
    return {
        'architectures': ['LlamaForCausalLM'],
        'attention_bias': False,
        'attention_dropout': 0.0,
        'bos_token_id': args.vocab - 1,
        'eos_token_id': args.vocab - 1,
        'hidden_act': 'silu',
        'hidden_size': args.hidden,
        'initializer_range': 0.02,
        'intermediate_size': args.intermediate,
        'max_position_embeddings': 512,
        'mlp_bias': False,
        'model_type': 'llama',
        'num_attention_heads': args.heads,
        'num_hidden_layers': args.layers,
        'num_key_value_heads': args.heads,
        'pretraining_tp': 1,
        'rms_norm_eps': 1e-05,
        'rope_scaling': None,
        'rope_theta': 10000.0,
        'tie_word_embeddings': True,
        'torch_dtype': 'float16',
        'transformers_version': '4.40.2',
        'use_cache': True,
        'vocab_size': args.vocab,
    }


def build_model(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(args.seed)
    cfg = dict(model_config(args))
    cfg.pop('architectures'); cfg.pop('transformers_version'); cfg.pop('torch_dtype'); cfg.pop('mlp_bias')
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    return model.float()


def batches(data, seq, batch, seed):
    """Random windows of seq+1 tokens, from a generator seeded once: the same order every run."""
    import numpy as np
    rng = np.random.default_rng(seed)
    while True:
        starts = rng.integers(0, len(data) - seq - 1, size=batch)
        yield np.stack([data[s:s + seq + 1] for s in starts]).astype(np.int64)


def heldout_loss(model, data, seq, max_windows=64):
    import numpy as np
    import torch
    n = min(max_windows, (len(data) - 1) // seq)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for w in range(0, n, 16):
            rows = [data[i * seq:i * seq + seq + 1] for i in range(w, min(n, w + 16))]
            x = torch.from_numpy(np.stack(rows).astype(np.int64))
            logits = model(input_ids=x[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction='sum')
            total += loss.item()
            count += x[:, 1:].numel()
    model.train()
    return total / count


def pretrain(args, work):
    import numpy as np
    import torch
    torch.set_num_threads(1)
    train = np.fromfile(os.path.join(work, 'train.u16'), dtype=np.uint16)
    held = np.fromfile(os.path.join(work, 'heldout.u16'), dtype=np.uint16)
    with open(os.path.join(work, 'heldout-parts.json')) as fh:
        code_tokens = json.load(fh)['stdlib']
    parts = {name: data for name, data in (('code', held[:code_tokens]), ('prose', held[code_tokens:])) if len(data) > args.seq}

    def held_losses(max_windows):
        # Each part alone (up to max_windows windows of it), and both weighted by their windows.
        out, total, count = {}, 0.0, 0
        for name, data in parts.items():
            n = min(max_windows, (len(data) - 1) // args.seq)
            out[name] = round(heldout_loss(model, data, args.seq, max_windows), 4)
            total, count = total + out[name] * n, count + n
        out['all'] = round(total / count, 4)
        return out
    model = build_model(args)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    log = []
    start = time.time()
    deadline = start + args.minutes * 60 if args.minutes > 0 else math.inf
    gen = batches(train, args.seq, args.batch, args.seed)
    first_held = held_losses(32)
    log.append({'step': 0, 'tokens': 0, 'seconds': 0.0, 'train_loss': None, 'heldout_loss': first_held})
    print(f'pretrain: {params} parameters, {len(train)} train tokens, held-out loss at init {first_held}', flush=True)
    step, running, tokens = 0, [], 0
    last = args.stop_after if 0 < args.stop_after < args.steps else args.steps
    while step < last and time.time() < deadline:
        x = torch.from_numpy(next(gen))
        for g in opt.param_groups:
            g['lr'] = lr_at(step)
        logits = model(input_ids=x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x[:, 1:].numel()
        running.append(loss.item())
        if step % args.eval_every == 0 or step == last:
            entry = {'step': step, 'tokens': tokens, 'seconds': round(time.time() - start, 1),
                     'train_loss': round(sum(running) / len(running), 4), 'heldout_loss': held_losses(32),
                     'lr': lr_at(step - 1)}
            running = []
            log.append(entry)
            print('pretrain: ' + json.dumps(entry), flush=True)
            torch.save(model.state_dict(), os.path.join(work, 'model.pt'))
            with open(os.path.join(work, 'pretrain-log.json'), 'w') as fh:
                json.dump({'args': vars(args), 'parameters': params, 'log': log}, fh, indent=1)
    final = {'step': step, 'tokens': tokens, 'seconds': round(time.time() - start, 1),
             'train_loss': round(sum(running) / len(running), 4) if running else log[-1]['train_loss'],
             'heldout_loss': held_losses(10 ** 9)}
    torch.save(model.state_dict(), os.path.join(work, 'model.pt'))
    with open(os.path.join(work, 'pretrain-log.json'), 'w') as fh:
        json.dump({'args': vars(args), 'parameters': params, 'log': log, 'final': final}, fh, indent=1)
    print('pretrain: final ' + json.dumps(final), flush=True)


def measure(args, work):
    """Seconds per optimizer step for this shape (to size the model before committing to a run)."""
    import numpy as np
    import torch
    torch.set_num_threads(1)
    model = build_model(args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    data = np.random.default_rng(0).integers(0, args.vocab - 1, size=100000).astype(np.uint16)
    gen = batches(data, args.seq, args.batch, 0)
    times = []
    for _ in range(6):
        x = torch.from_numpy(next(gen))
        t = time.time()
        logits = model(input_ids=x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(); loss.backward(); opt.step()
        times.append(time.time() - t)
    params = sum(p.numel() for p in model.parameters())
    per = sorted(times)[len(times) // 2]
    print(f'measure: {params} params, {per:.3f} s/step, {args.batch * args.seq / per:.0f} tokens/s')


# ---------------------------------------------------------------- files

def write_safetensors(path, tensors):
    """Hugging Face's safetensors layout: an 8-byte header length, the JSON header, the raw data."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        arr = tensors[name]
        blob = arr.tobytes()
        header[name] = {'dtype': 'F16', 'shape': list(arr.shape), 'data_offsets': [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    header['__metadata__'] = {'format': 'pt'}
    text = json.dumps(header, separators=(',', ':'))
    text += ' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as fh:
        fh.write(struct.pack('<Q', len(text)))
        fh.write(text.encode())
        for blob in blobs:
            fh.write(blob)


def write_model(args, work):
    import numpy as np
    import torch
    state = torch.load(os.path.join(work, 'model.pt'))
    tensors = {name: t.detach().numpy().astype(np.float16) for name, t in state.items()
               if name != 'lm_head.weight' and 'rotary_emb' not in name}
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, 'model.safetensors'), tensors)
    with open(os.path.join(args.out, 'config.json'), 'w') as fh:
        json.dump(model_config(args), fh, indent=2)
        fh.write('\n')
    with open(os.path.join(work, 'corpus.json')) as fh:
        corpus = json.load(fh)
    with open(os.path.join(work, 'sample-ids.json')) as fh:
        sample = json.load(fh)
    listing = {
        'about': 'The demo model\'s corpus: Python\'s standard library sources and its documentation sources (PSF-2.0), made by scripts/make-demo-model.py',
        'sources': corpus['sources'],
        'held_out_every': HELD_OUT_EVERY,
        'files': [[f['source'], f['path'], f['split'], f['sha256']] for f in corpus['files']],
        'sample': sample,
    }
    with open(os.path.join(ROOT, 'scripts', 'demo-model-corpus.json'), 'w') as fh:
        json.dump(listing, fh, indent=0)
        fh.write('\n')
    write_readme(args, work, state, corpus)
    print(f'write: {args.out} ({len(tensors)} tensors)', flush=True)


SAMPLE_PROMPTS = ['def ', 'import os\n\n\ndef ', 'class Queue:\n    """', '# Return the', 'The tutorial ', 'If you want to ']


def samples(args, state):
    """Greedy continuations of a few prompts by the pretrained model (what it writes before any fine-tuning)."""
    import torch
    model = build_model(args)
    model.load_state_dict(state)
    model.eval()
    bpe = Bpe(args.tokenizer_out)
    with open(os.path.join(args.tokenizer_out, 'tokenizer.json'), encoding='utf-8') as fh:
        vocab = json.load(fh)['model']['vocab']
    char_byte = {c: b for b, c in bytes_to_unicode().items()}
    token_text = {i: t for t, i in vocab.items()}
    decode = lambda ids: bytes(char_byte[c] for i in ids if i in token_text for c in token_text[i]).decode('utf-8', 'replace')
    out = []
    with torch.no_grad():
        for sampled in (False, True):
            torch.manual_seed(args.seed)
            for prompt in SAMPLE_PROMPTS:
                ids = torch.tensor([bpe.encode(prompt)])
                options = {'do_sample': True, 'temperature': 0.8, 'top_k': 40} if sampled else {'do_sample': False}
                gen = model.generate(ids, max_new_tokens=60, pad_token_id=bpe.eos, eos_token_id=bpe.eos, **options)
                out.append((sampled, prompt, decode(gen[0, ids.shape[1]:].tolist())))
    return out


def write_readme(args, work, state, corpus):
    with open(os.path.join(work, 'pretrain-log.json')) as fh:
        run = json.load(fh)
    final, log, a = run['final'], run['log'], run['args']
    pkgs = subprocess.run(['dpkg-query', '-W', '-f', '${Package} ${Version}\\n', 'libpython3.11-minimal', 'libpython3.11-stdlib', 'python3.11-doc'],
                          capture_output=True, text=True).stdout.split('\n')
    pkgs = ', '.join(f'`{p}`' for p in pkgs if p.strip()) or 'the python3 packages of this machine'
    params = run['parameters']
    held = lambda h: f"{h['code']} / {h['prose']}"
    rows = '\n'.join(f"| {e['step']} | {e['tokens']:,} | {e['seconds']:.0f} | {'–' if e['train_loss'] is None else e['train_loss']} | {held(e['heldout_loss'])} |" for e in log)
    rows += f"\n| {final['step']} (end) | {final['tokens']:,} | {final['seconds']:.0f} | {final['train_loss']} | {held(final['heldout_loss'])} (all held-out tokens) |"
    made = samples(args, state)
    shown = lambda sampled: '\n\n'.join(f'```\n{p}{t}\n```' for s, p, t in made if s == sampled)
    held_out = ', '.join(f"`{f['path']}`" for f in corpus['files'] if f['split'] == 'heldout')
    by = corpus['by_source']
    stopped = '' if final['step'] >= a['steps'] else f" (the run stopped at its {a['minutes']:g}-minute limit; `--stop-after {final['step']}` repeats it)"
    text = f"""# Built-in demo model

A small Llama-shaped causal LM (`LlamaForCausalLM`), pretrained from scratch on Python's standard
library and its documentation, so that it writes plausible Python and English before any
fine-tuning and a fine-tune on a demo set has something to build on. {a['layers']} layers, hidden {a['hidden']}, {a['heads']} heads
(head width {a['hidden'] // a['heads']}), SwiGLU intermediate {a['intermediate']}, RMSNorm, rotary positions (theta
10000, up to 512), vocabulary {a['vocab']} (the demo tokenizer in `../tokenizer/`), lm_head tied to the
embedding. {params:,} parameters stored as float16 in Hugging Face's on-disk layout (`config.json`,
`model.safetensors`, tensor names as `save_pretrained` writes them).

## Corpus and license

Two sources, as Debian ships them ({pkgs}), both under the Python Software Foundation License
(PSF-2.0, see `/usr/share/doc/libpython3.11-stdlib/copyright` and the documentation's
`license.rst.txt`):

- code: the `.py` files of `{corpus['sources']['stdlib']}`, Python's standard library sources with their
  docstrings and comments. Folders named `test`, `tests`, `idle_test`, `site-packages`,
  `dist-packages` and files named `test_*` are left out; files that are not UTF-8 are skipped.
  {by['stdlib']['train']['files']} training files ({by['stdlib']['train']['bytes']:,} bytes), {by['stdlib']['heldout']['files']} held out ({by['stdlib']['heldout']['bytes']:,} bytes).
- prose: the reStructuredText sources of Python's documentation in `{corpus['sources']['docs']}`
  (tutorial, library reference, HOWTOs, FAQs, what's new): English prose with examples.
  {by['docs']['train']['files']} training files ({by['docs']['train']['bytes']:,} bytes), {by['docs']['heldout']['files']} held out ({by['docs']['heldout']['bytes']:,} bytes).

In each source, in path order, every {HELD_OUT_EVERY}th file is held out ({held_out}).
`scripts/demo-model-corpus.json` lists every file with its source, split and SHA-256. Each file is
one document, followed by `<|endoftext|>`. The demo datasets are not in the pretraining corpus (the
tokenizer saw them, see `../tokenizer/README.md`).

## Pretraining

`scripts/make-demo-model.py`: transformers 4.40.2 `LlamaForCausalLM` (from `../shared/pyref`),
PyTorch 1.13 on the CPU, float32, one thread, seed {a['seed']} (initialisation and the random
{a['seq']}-token windows the batches are cut from). AdamW (betas 0.9/0.95, weight decay 0.1 on matrices),
peak learning rate {a['lr']:g}, {a['warmup']} warm-up steps then cosine decay to a tenth over {a['steps']} steps,
gradient norm clipped at 1, batches of {a['batch']} × {a['seq']} tokens.
{final['step']} steps{stopped}, {final['tokens']:,} tokens seen (about {final['tokens'] / max(1, corpus_tokens(work)):.1f} passes over the
{corpus_tokens(work):,} training tokens), {final['seconds'] / 60:.1f} minutes on a shared 2-core machine (BLAS: OpenBLAS
0.3.21; Debian's reference BLAS is ten times slower). Final training loss {final['train_loss']} (mean of the steps
since the last log line), **held-out loss {final['heldout_loss']['all']}** nats a token over all
{heldout_tokens(work):,} held-out tokens: {final['heldout_loss']['code']} on the code, {final['heldout_loss']['prose']} on the prose (a uniform guess is {math.log(a['vocab']):.2f}).

| step | tokens | seconds | train loss | held-out loss, code / prose (first 8k tokens of each) |
| ---: | ---: | ---: | ---: | ---: |
{rows}

Reproduce (the same steps and the same BLAS give the same weights; these were made with Debian's
`libopenblas0-pthread` 0.3.21 unpacked into a folder and put first on `LD_LIBRARY_PATH`, with
`OPENBLAS_NUM_THREADS=1`; another BLAS rounds differently):

    eval "$(bash ../shared/pyref/setup.sh)"
    nice -n 10 /usr/bin/python3 scripts/make-demo-model.py --steps {a['steps']} --minutes 0{'' if final['step'] >= a['steps'] else f" --stop-after {final['step']}"}

## What it writes

Continuations (60 new tokens) of `def `, `import os` then `def `, a class docstring, a comment and two
starts of English sentences, by the model as shipped, before any fine-tuning. Greedy (a model this small soon repeats itself):

{shown(False)}

Sampled (temperature 0.8, top-k 40, torch seed {a['seed']}):

{shown(True)}

## Cache identity

The studio caches its quantized copy under `sha256-` and the first 12 hex digits of the SHA-256
of `config.json` followed by `model.safetensors` (the preset's `revision` in
`workers/load/presets.ts`; `tests/node/model-source.test.ts` checks it), so a studio that ships
a changed demo makes a new copy instead of reusing the old one.
"""
    with open(os.path.join(args.out, 'README.md'), 'w', encoding='utf-8') as fh:
        fh.write(text)


def corpus_tokens(work):
    return os.path.getsize(os.path.join(work, 'train.u16')) // 2


def heldout_tokens(work):
    return os.path.getsize(os.path.join(work, 'heldout.u16')) // 2


def main():
    args = parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    stages = ['corpus', 'tokenizer', 'encode', 'pretrain', 'write'] if args.stage == 'all' else [args.stage]
    for stage in stages:
        {'corpus': make_corpus, 'tokenizer': make_tokenizer, 'encode': encode_corpus,
         'pretrain': pretrain, 'write': write_model, 'measure': measure}[stage](args, work)


if __name__ == '__main__':
    main()
