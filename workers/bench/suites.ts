/** Every benchmark suite, by name: add one `name: suite` entry per module in this folder. */
import type { BenchSuite } from './suite';
import { matmulSuite } from './matmul';
import { memorySuite } from './memory';
import { quantizeSuite } from './quantize';

export const SUITES: Record<string, BenchSuite> = {
  matmul: matmulSuite,
  memory: memorySuite,
  quantize: quantizeSuite,
};
