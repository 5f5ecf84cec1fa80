/** Every benchmark suite, by name: add one `name: suite` entry per module in this folder. */
import type { BenchSuite } from '../suite';
import { attentionSuite } from './attention';
import { decodeSuite } from './decode';
import { matmulSuite } from './matmul';
import { memorySuite } from './memory';
import { quantizeSuite } from './quantize';
import { trainStepSuite } from './train-step';

export const SUITES: Record<string, BenchSuite> = {
  attention: attentionSuite,
  decode: decodeSuite,
  matmul: matmulSuite,
  memory: memorySuite,
  quantize: quantizeSuite,
  'train-step': trainStepSuite,
};
