/**
 * `ExampleList`s over an array and over a subset of another list, and the parts every list
 * shares (ranges checked, iteration a slice at a time).
 */
import type { Example, ExampleList } from './types';

/** How many examples an iteration reads at once. */
const ITERATE_SLICE = 256;

export abstract class BaseExampleList implements ExampleList {
  abstract readonly count: number;
  protected abstract fetch(indices: readonly number[]): Promise<Example[]>;

  async get(index: number): Promise<Example> {
    return (await this.getMany([index]))[0];
  }

  slice(start: number, end = this.count): Promise<Example[]> {
    const from = Math.max(0, Math.min(this.count, start));
    const to = Math.max(from, Math.min(this.count, end));
    return this.fetch(Array.from({ length: to - from }, (_, k) => from + k));
  }

  getMany(indices: readonly number[]): Promise<Example[]> {
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new RangeError(`example ${i} is outside 0..${this.count - 1}`);
    }
    return this.fetch(indices);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Example> {
    for (let at = 0; at < this.count; at += ITERATE_SLICE) yield* await this.slice(at, at + ITERATE_SLICE);
  }
}

/** Examples held in memory (the CLI's runs, tests, runs stored before datasets were). */
export class ArrayExamples extends BaseExampleList {
  constructor(private readonly examples: readonly Example[]) {
    super();
  }
  get count(): number {
    return this.examples.length;
  }
  protected async fetch(indices: readonly number[]): Promise<Example[]> {
    return indices.map((i) => this.examples[i]);
  }
}

/** The examples of `base` at `indices` (a split, the examples that learn), renumbered from 0. */
export class IndexedExamples extends BaseExampleList {
  constructor(
    private readonly base: ExampleList,
    private readonly indices: Uint32Array,
  ) {
    super();
  }
  get count(): number {
    return this.indices.length;
  }
  protected fetch(indices: readonly number[]): Promise<Example[]> {
    return this.base.getMany(indices.map((i) => this.indices[i]));
  }
}

/** An array or a list, as a list. */
export function exampleList(examples: readonly Example[] | ExampleList): ExampleList {
  return Array.isArray(examples) ? new ArrayExamples(examples) : (examples as ExampleList);
}
