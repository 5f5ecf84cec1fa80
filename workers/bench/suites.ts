/** Every benchmark suite, by name: add one `name: suite` entry per module in this folder. */
import type { BenchSuite } from './suite';
import { matmulSuite } from './matmul';

export const SUITES: Record<string, BenchSuite> = {
  matmul: matmulSuite,
};
