/**
 * The run bundle's files (docs/RUN-BUNDLE.md) from a run's checkpoint and examples, as export
 * files whose sizes are known before a byte is written and whose bytes come one file and one
 * tensor at a time: the page streams them into a zip, the CLI into a folder. Model and optimizer
 * tensors are read from the checkpoint only when their bytes are due and let go once they are
 * out, so the writer never holds more than one of them (`held` measures it).
 */
import type { Example } from '../../data/types';
import type { HeldBytes } from '../../load/held';
import type { ExportFile } from '../bundle';
import { peftAdapterConfig } from '../peft';
import { bundleAssets } from './assets';
import { eachExample, type BundleExamples } from './examples';
import { remainingOrder } from './order';
import type { RunJson } from './run-json';
import { streamedSafetensors, viewBytes, type StreamedTensor } from './stream-safetensors';

export interface RunBundleInput {
  run: RunJson;
  /** The LoRA tensors as the checkpoint lists them (PEFT keys); the optimizer has a moment pair for each. */
  lora: { key: string; shape: [number, number] }[];
  /** A checkpoint tensor, read when asked: `lora/<key>`, `exp_avg/<key>`, `exp_avg_sq/<key>`. */
  tensor(name: string): Promise<Float32Array>;
  train: BundleExamples;
  validation: BundleExamples;
  /** Counts the model and optimizer bytes the writer holds (tests measure its peak). */
  held?: HeldBytes;
}

const encoder = new TextEncoder();

function textFile(name: string, text: string): ExportFile {
  const bytes = encoder.encode(text);
  return { name, bytes: bytes.byteLength, chunks: async function* () { yield bytes; } };
}

/** One checkpoint tensor, read when its bytes are due, checked, and let go after. */
function checkpointTensor(file: string, name: string, source: string, shape: [number, number], input: RunBundleInput): StreamedTensor {
  return {
    name,
    dtype: 'F32',
    shape: [...shape],
    async *bytes() {
      const n = shape[0] * shape[1];
      input.held?.hold(n * 4);
      try {
        const data = await input.tensor(source);
        if (data.length !== n) throw new Error(`${file}: "${name}" has ${data.length} values in the checkpoint, its shape [${shape.join(', ')}] needs ${n}`);
        for (let i = 0; i < n; i++) {
          if (!Number.isFinite(data[i])) throw new Error(`${file}: "${name}" holds ${data[i]} at index ${i}: the run diverged, nothing to continue`);
        }
        yield viewBytes(data);
      } finally {
        input.held?.drop(n * 4);
      }
    },
  };
}

/** Pieces of about `size` bytes from many small ones (an example's ids at a time). */
async function* coalesced(parts: AsyncIterable<Uint8Array>, size = 1 << 20): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(size);
  let at = 0;
  for await (const p of parts) {
    if (at + p.byteLength > size && at > 0) {
      yield buf.subarray(0, at);
      buf = new Uint8Array(size);
      at = 0;
    }
    if (p.byteLength >= size) yield p;
    else {
      buf.set(p, at);
      at += p.byteLength;
    }
  }
  if (at > 0) yield buf.subarray(0, at);
}

/** data/<split>.safetensors: input_ids, labels and offsets of every example, streamed example by example. */
function splitTensors(file: string, examples: BundleExamples, lengths: Int32Array): ExportFile {
  const total = lengths.reduce((a, b) => a + b, 0);
  const column = (name: 'input_ids' | 'labels', pick: (e: Example) => Int32Array): StreamedTensor => ({
    name,
    dtype: 'I32',
    shape: [total],
    bytes: () =>
      coalesced(
        (async function* () {
          let i = 0;
          for await (const e of eachExample(examples)) {
            const a = pick(e);
            if (a.length !== lengths[i]) throw new Error(`${file}: example ${i} changed length while being written (${lengths[i]} → ${a.length} tokens)`);
            i++;
            yield viewBytes(a).slice();
          }
        })(),
      ),
  });
  const offsets: StreamedTensor = {
    name: 'offsets',
    dtype: 'I64',
    shape: [examples.count + 1],
    async *bytes() {
      const out = new BigInt64Array(examples.count + 1);
      for (let i = 0; i < examples.count; i++) out[i + 1] = out[i] + BigInt(lengths[i]);
      yield viewBytes(out);
    },
  };
  return streamedSafetensors(file, [column('input_ids', (e) => e.inputIds), column('labels', (e) => e.labels), offsets]);
}

/** data/<split>.jsonl: each example's row as text, one JSON object a line. */
async function splitJsonl(file: string, examples: BundleExamples): Promise<ExportFile> {
  const line = (e: Example, i: number) => {
    if (!e.text) throw new Error(`${file}: example ${i} keeps no row text (packed examples have none), so the text form cannot be written`);
    return encoder.encode(JSON.stringify(e.text) + '\n');
  };
  let bytes = 0;
  let i = 0;
  for await (const e of eachExample(examples)) bytes += line(e, i++).byteLength;
  return {
    name: file,
    bytes,
    chunks: () =>
      coalesced(
        (async function* () {
          let k = 0;
          for await (const e of eachExample(examples)) yield line(e, k++);
        })(),
      ),
  };
}

/** Token counts of a split, each example checked: ids and labels of one length, labels a token id or −100. */
async function lengthsOf(file: string, examples: BundleExamples): Promise<Int32Array> {
  const lengths = new Int32Array(examples.count);
  let i = 0;
  for await (const e of eachExample(examples)) {
    if (e.inputIds.length !== e.labels.length) throw new Error(`${file}: example ${i} has ${e.inputIds.length} input ids and ${e.labels.length} labels`);
    if (e.inputIds.length === 0) throw new Error(`${file}: example ${i} is empty`);
    lengths[i++] = e.inputIds.length;
  }
  return lengths;
}

/** Every file of the bundle, in the order they are written. */
export async function runBundleFiles(input: RunBundleInput): Promise<ExportFile[]> {
  const { run } = input;
  const s = run.settings;
  if (run.data.train_examples !== input.train.count || run.data.validation_examples !== input.validation.count) {
    throw new Error(`run.json: data.train_examples ${run.data.train_examples} / validation_examples ${run.data.validation_examples} differ from the examples given (${input.train.count} / ${input.validation.count})`);
  }
  const order = remainingOrder({ examples: input.train.count, settings: s, fromStep: run.step, totalSteps: run.schedule.total_steps });
  const keys = input.lora.map((l) => l.key);
  const adapterConfig = peftAdapterConfig({ r: run.lora.r, alpha: run.lora.lora_alpha, dropout: run.lora.lora_dropout, targetModules: run.lora.target_modules }, run.lora.target_modules, run.base.id, run.base.commit ?? run.base.revision);
  const adapterFile = 'adapter/adapter_model.safetensors';
  const optimizerFile = 'optimizer/optimizer.safetensors';
  const files: ExportFile[] = [
    textFile('run.json', JSON.stringify(run, null, 2) + '\n'),
    textFile('adapter/adapter_config.json', adapterConfig),
    streamedSafetensors(adapterFile, input.lora.map((l) => checkpointTensor(adapterFile, l.key, `lora/${l.key}`, l.shape, input)), { format: 'pt' }),
    streamedSafetensors(
      optimizerFile,
      input.lora.flatMap((l) => [checkpointTensor(optimizerFile, `${l.key}.exp_avg`, `exp_avg/${l.key}`, l.shape, input), checkpointTensor(optimizerFile, `${l.key}.exp_avg_sq`, `exp_avg_sq/${l.key}`, l.shape, input)]),
      { format: 'qlora-studio-optimizer', step: String(run.optimizer.step) },
    ),
    splitTensors('data/train.safetensors', input.train, await lengthsOf('data/train.safetensors', input.train)),
    splitTensors('data/validation.safetensors', input.validation, await lengthsOf('data/validation.safetensors', input.validation)),
    streamedSafetensors('data/order.safetensors', [{ name: 'micro_batches', dtype: 'I32', shape: [order.rows, order.batchSize], bytes: async function* () { yield viewBytes(order.microBatches); } }], {
      first_step: String(order.firstStep),
      grad_accum: String(order.gradAccum),
      batch_size: String(order.batchSize),
    }),
    await splitJsonl('data/train.jsonl', input.train),
    await splitJsonl('data/validation.jsonl', input.validation),
  ];
  if (new Set(keys).size !== keys.length) throw new Error(`${adapterFile}: a LoRA key appears twice in the checkpoint`);
  for (const asset of bundleAssets(run)) {
    if (files.some((f) => f.name === asset.path)) throw new Error(`run bundle: asset ${asset.path} would replace a file the bundle writes`);
    files.push(textFile(asset.path, asset.text));
  }
  return files;
}
