#!/usr/bin/env node
// Trains the demo's byte-level BPE tokenizer and writes it in Hugging Face format
// (tokenizer.json + tokenizer_config.json) to public/demo/tokenizer/.
// Learns from a corpus (JSONL, every string value is text: the demo model's pretraining corpus,
// see scripts/make-demo-model.py) plus the demo datasets and the templates' headings.
// Vocabulary: 256 byte tokens, (vocab - 257) merges, and <|endoftext|> (EOS and pad, the last id)
// = --vocab ids, the vocab_size of the demo model. Deterministic: the same data gives the same file.
//   node scripts/make-demo-tokenizer.mjs --corpus build/demo-model/train.jsonl [--vocab 2048] [--out public/demo/tokenizer]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DATA = resolve(root, 'public/demo/data');
const EOS = '<|endoftext|>';

function parseArgs(argv) {
  const flags = { corpus: null, vocab: 2048, out: resolve(root, 'public/demo/tokenizer') };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--corpus') flags.corpus = resolve(argv[++i]);
    else if (argv[i] === '--vocab') flags.vocab = Number(argv[++i]);
    else if (argv[i] === '--out') flags.out = resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!flags.corpus) throw new Error('--corpus is required (make it with: python3 scripts/make-demo-model.py --stage corpus)');
  if (!Number.isInteger(flags.vocab) || flags.vocab < 258 || flags.vocab > 65536) throw new Error('--vocab must be an integer in 258..65536');
  return flags;
}

const FLAGS = parseArgs(process.argv.slice(2));
const OUT = FLAGS.out;
const VOCAB_SIZE = FLAGS.vocab;

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

/** Texts to learn from: the corpus's and the demo JSONL's string values, the CSV text, and the presets' template headings. */
function corpus() {
  const texts = [];
  const strings = (v) => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(strings) : []);
  for (const line of readFileSync(FLAGS.corpus, 'utf8').split('\n')) if (line.trim()) texts.push(...strings(JSON.parse(line)));
  const ds = readFileSync(resolve(DATA, 'ds1000-demo.jsonl'), 'utf8');
  for (const line of ds.split('\n')) if (line.trim()) texts.push(...strings(JSON.parse(line)));
  texts.push(readFileSync(resolve(DATA, 'counseling-demo.csv'), 'utf8'));
  // Headings used by the templates in workers/data/templates.ts and the chat template below.
  texts.push('### Context:\n### Response:\n### Instruction:\n### Library: Pandas\n### Library: Numpy\n### Library: Matplotlib\n### Problem:\n### Solution:\n<|user|>\n<|assistant|>\n<|system|>\n');
  return texts;
}

// Counts every adjacent symbol pair once, then after each merge re-counts only the words that
// held the merged pair: the same merges as re-counting everything each round, in seconds rather
// than hours on a corpus of megabytes.
function train() {
  const byteChar = bytesToUnicode();
  const wordCounts = new Map();
  for (const text of corpus()) {
    for (const piece of text.match(PRETOKENIZE) ?? []) {
      const mapped = Array.from(Buffer.from(piece, 'utf8'), (b) => byteChar[b]).join('');
      wordCounts.set(mapped, (wordCounts.get(mapped) ?? 0) + 1);
    }
  }
  const vocab = new Map(byteChar.map((c, b) => [c, b]));
  const text = [...byteChar]; // symbol id -> its text
  const words = [...wordCounts].map(([w, count]) => ({ ids: Array.from(w, (c) => vocab.get(c)), count }));
  const key = (x, y) => x * 65536 + y;
  const pairCounts = new Map();
  const pairWords = new Map(); // pair -> indices of words that held it (a superset after merges)
  const addPairs = (wi, sign) => {
    const { ids, count } = words[wi];
    for (let i = 0; i + 1 < ids.length; i++) {
      const k = key(ids[i], ids[i + 1]);
      const c = (pairCounts.get(k) ?? 0) + sign * count;
      if (c === 0) pairCounts.delete(k);
      else pairCounts.set(k, c);
      if (sign > 0) {
        let set = pairWords.get(k);
        if (!set) pairWords.set(k, (set = new Set()));
        set.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1);
  const pairText = (k) => text[Math.floor(k / 65536)] + '\u0000' + text[k % 65536];
  const merges = [];
  const target = VOCAB_SIZE - 1; // the last id is EOS
  while (vocab.size < target) {
    let best = -1;
    let bestCount = 0;
    let bestText = '';
    for (const [k, count] of pairCounts) {
      // Highest count; ties broken by the pair's text so the result never depends on Map order.
      if (count > bestCount) {
        best = k;
        bestCount = count;
        bestText = '';
      } else if (count === bestCount) {
        if (bestText === '') bestText = pairText(best);
        const t = pairText(k);
        if (t < bestText) {
          best = k;
          bestText = t;
        }
      }
    }
    if (best < 0 || bestCount < 2) break;
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const mergedId = vocab.size;
    const merged = text[a] + text[b];
    merges.push(`${text[a]} ${text[b]}`);
    vocab.set(merged, mergedId);
    text.push(merged);
    for (const wi of pairWords.get(best) ?? []) {
      const s = words[wi].ids;
      if (s.length < 2) continue;
      let holds = false;
      for (let i = 0; i + 1 < s.length && !holds; i++) holds = s[i] === a && s[i + 1] === b;
      if (!holds) continue;
      addPairs(wi, -1);
      const out = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(mergedId);
          i++;
        } else out.push(s[i]);
      }
      words[wi].ids = out;
      addPairs(wi, 1);
    }
    pairWords.delete(best);
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
