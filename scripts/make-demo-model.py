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


def corpus_files(base):
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith('test_'))
        for f in sorted(filenames):
            if f.endswith('.py') and not f.startswith('test_'):
                out.append(os.path.join(dirpath, f))
    return sorted(out, key=lambda p: os.path.relpath(p, base))


def make_corpus(args, work):
    base = stdlib_dir(args.stdlib)
    files = corpus_files(base)
    parts = {'train': [], 'heldout': []}
    listing = []
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
        listing.append({'path': os.path.relpath(path, base), 'split': split, 'bytes': len(raw), 'sha256': hashlib.sha256(raw).hexdigest()})
    for split, texts in parts.items():
        with open(os.path.join(work, f'{split}.jsonl'), 'w', encoding='utf-8') as fh:
            for t in texts:
                fh.write(json.dumps({'text': t}) + '\n')
    summary = {
        'stdlib': base,
        'files': listing,
        'train_files': len(parts['train']),
        'heldout_files': len(parts['heldout']),
        'train_bytes': sum(len(t.encode()) for t in parts['train']),
        'heldout_bytes': sum(len(t.encode()) for t in parts['heldout']),
    }
    with open(os.path.join(work, 'corpus.json'), 'w') as fh:
        json.dump(summary, fh, indent=1)
    print(f"corpus: {summary['train_files']} train files ({summary['train_bytes']} bytes), "
          f"{summary['heldout_files']} held out ({summary['heldout_bytes']} bytes) from {base}", flush=True)


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
    for split in ('train', 'heldout'):
        ids = []
        with open(os.path.join(work, f'{split}.jsonl'), encoding='utf-8') as fh:
            for line in fh:
                ids.extend(bpe.encode(json.loads(line)['text']))
                ids.append(bpe.eos)
        np.array(ids, dtype=np.uint16).tofile(os.path.join(work, f'{split}.u16'))
        print(f'encode: {split} {len(ids)} tokens', flush=True)
    # A sample the studio's own tokenizer must encode the same way (checked by the tokenizer test's
    # author when regenerating; see README).
    sample = 'def mean(values):\n    """Return the arithmetic mean."""\n    return sum(values) / len(values)\n'
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
    first_held = heldout_loss(model, held, args.seq)
    log.append({'step': 0, 'tokens': 0, 'seconds': 0.0, 'train_loss': None, 'heldout_loss': round(first_held, 4)})
    print(f'pretrain: {params} parameters, {len(train)} train tokens, held-out loss at init {first_held:.4f}', flush=True)
    step, running, tokens = 0, [], 0
    while step < args.steps and time.time() < deadline:
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
        if step % args.eval_every == 0 or step == args.steps:
            entry = {'step': step, 'tokens': tokens, 'seconds': round(time.time() - start, 1),
                     'train_loss': round(sum(running) / len(running), 4), 'heldout_loss': round(heldout_loss(model, held, args.seq), 4),
                     'lr': lr_at(step - 1)}
            running = []
            log.append(entry)
            print('pretrain: ' + json.dumps(entry), flush=True)
            torch.save(model.state_dict(), os.path.join(work, 'model.pt'))
            with open(os.path.join(work, 'pretrain-log.json'), 'w') as fh:
                json.dump({'args': vars(args), 'parameters': params, 'log': log}, fh, indent=1)
    final = {'step': step, 'tokens': tokens, 'seconds': round(time.time() - start, 1),
             'train_loss': round(sum(running) / len(running), 4) if running else log[-1]['train_loss'],
             'heldout_loss': round(heldout_loss(model, held, args.seq, max_windows=10 ** 9), 4)}
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
    print(f'write: {args.out} ({len(tensors)} tensors)', flush=True)


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
