/**
 * The examples a run bundle writes, as the writer takes them: a count and each example by its
 * index in the split (the index data/order.safetensors refers to). Where the examples are kept
 * (the run record, chunks by content hash, a bundle's data/ folder) stays behind this interface.
 */
import type { Example, ExampleList } from '../../data/types';

export interface BundleExamples {
  readonly count: number;
  /** Example `index` of the split, 0 ≤ index < count. */
  example(index: number): Promise<Example>;
}

/** Examples already in memory, in split order. */
export function examplesInMemory(list: readonly Example[]): BundleExamples {
  return {
    count: list.length,
    example: async (index) => {
      const e = list[index];
      if (!e) throw new RangeError(`example ${index} is outside the split (${list.length} examples)`);
      return e;
    },
  };
}

/** A run's split as the writer reads it: an array (the CLI) or a list read from storage (the studio). */
export function bundleExamplesOf(examples: readonly Example[] | ExampleList): BundleExamples {
  if (Array.isArray(examples)) return examplesInMemory(examples);
  const list = examples as ExampleList;
  return {
    count: list.count,
    example: async (index) => {
      if (!(index >= 0 && index < list.count)) throw new RangeError(`example ${index} is outside the split (${list.count} examples)`);
      return list.get(index);
    },
  };
}

/** Every example in order, one at a time. */
export async function* eachExample(examples: BundleExamples): AsyncGenerator<Example> {
  for (let i = 0; i < examples.count; i++) yield await examples.example(i);
}
