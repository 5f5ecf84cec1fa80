/**
 * What the studio's GPU bytes are counted under. GPU-free, so the page can lay out its memory
 * bars from the same list the buffer pool (workers/gpu/pool.ts) counts by.
 */
export type MemoryCategory = 'weights' | 'lora' | 'optimizer' | 'activations' | 'scratch';
export const MEMORY_CATEGORIES: readonly MemoryCategory[] = ['weights', 'lora', 'optimizer', 'activations', 'scratch'];

export type ByCategory = Record<MemoryCategory, number>;
