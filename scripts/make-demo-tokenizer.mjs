#!/usr/bin/env node
// Trains the demo's byte-level BPE tokenizer on the demo datasets and writes it in Hugging Face
// format (tokenizer.json + tokenizer_config.json) to public/demo/tokenizer/.
// Vocabulary: 256 byte tokens, 767 merges, and <|endoftext|> (EOS and pad) = 1024 ids, the
// vocab_size of the demo model. Deterministic: the same data gives the same file.
//   node scripts/make-demo-tokenizer.mjs
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DATA = resolve(root, 'public/demo/data');
const OUT = resolve(root, 'public/demo/tokenizer');
const VOCAB_SIZE = 1024;
const EOS = '<|endoftext|>';

// GPT-2's reversible byte -> printable character map (spaces become 'Ġ', newlines 'Ċ').
function bytesToUnicode() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const map = new Array(256);
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i])));
  return map;
}

// The split the ByteLevel pre-tokenizer applies (use_regex: true) before BPE.
const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Texts to learn from: JSONL string values, CSV text, and the presets' template headings. */
function corpus() {
  const texts = [];
  const strings = (v) => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(strings) : []);
  const ds = readFileSync(resolve(DATA, 'ds1000-demo.jsonl'), 'utf8');
  for (const line of ds.split('\n')) if (line.trim()) texts.push(...strings(JSON.parse(line)));
  texts.push(readFileSync(resolve(DATA, 'counseling-demo.csv'), 'utf8'));
  // Headings used by the templates in workers/data/templates.ts and the chat template below.
  texts.push('### Context:\n### Response:\n### Instruction:\n### Library: Pandas\n### Library: Numpy\n### Library: Matplotlib\n### Problem:\n### Solution:\n<|user|>\n<|assistant|>\n<|system|>\n');
  return texts;
}

function train() {
  const byteChar = bytesToUnicode();
  const wordCounts = new Map();
  for (const text of corpus()) {
    for (const piece of text.match(PRETOKENIZE) ?? []) {
      const mapped = Array.from(Buffer.from(piece, 'utf8'), (b) => byteChar[b]).join('');
      wordCounts.set(mapped, (wordCounts.get(mapped) ?? 0) + 1);
    }
  }
  const words = [...wordCounts].map(([w, count]) => ({ symbols: Array.from(w), count }));
  const vocab = new Map(byteChar.map((c, b) => [c, b]));
  const merges = [];
  const target = VOCAB_SIZE - 1; // the last id is EOS
  while (vocab.size < target) {
    const pairs = new Map();
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + '\u0000' + symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    }
    let best = null;
    let bestCount = 0;
    for (const [key, count] of pairs) {
      // Highest count; ties broken by the pair's text so the result never depends on Map order.
      if (count > bestCount || (count === bestCount && best !== null && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === null || bestCount < 2) break;
    const [a, b] = best.split('\u0000');
    const merged = a + b;
    merges.push(`${a} ${b}`);
    vocab.set(merged, vocab.size);
    for (const w of words) {
      const s = w.symbols;
      if (s.length < 2) continue;
      const out = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(merged);
          i++;
        } else out.push(s[i]);
      }
      w.symbols = out;
    }
  }
  if (vocab.size !== target) throw new Error(`the corpus supports only ${vocab.size} tokens before EOS; need ${target}`);
  return { vocab, merges };
}

const { vocab, merges } = train();
const eosId = vocab.size;
const eosEntry = { id: eosId, content: EOS, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
const tokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [eosEntry],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: '',
    end_of_word_suffix: '',
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
    vocab: Object.fromEntries(vocab),
    merges,
  },
};
const config = {
  tokenizer_class: 'GPT2Tokenizer',
  add_prefix_space: false,
  bos_token: EOS,
  eos_token: EOS,
  unk_token: EOS,
  pad_token: EOS,
  model_max_length: 2048,
  clean_up_tokenization_spaces: false,
  added_tokens_decoder: { [eosId]: { content: EOS, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true } },
  chat_template:
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
};
mkdirSync(OUT, { recursive: true });
writeFileSync(resolve(OUT, 'tokenizer.json'), JSON.stringify(tokenizer, null, 1) + '\n');
writeFileSync(resolve(OUT, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
process.stderr.write(`wrote ${OUT}: ${eosId + 1} ids (${merges.length} merges, EOS ${eosId})\n`);
