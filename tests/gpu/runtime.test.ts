/**
 * The runtime batches work: uniforms come from one arena written per submit and zero fills are
 * recorded in the encoder, so long chains of dispatches run in few submits and still see each
 * other's results in order.
 */
import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { UNIFORM_ARENA_BYTES } from '../../workers/gpu/runtime';
import { axpy, copyRows } from '../../workers/kernels/elementwise';
import { CausalLM } from '../../workers/model/causal-lm';
import { allLinearNames } from '../../workers/model/architecture';
import { RandomWeights, tinyConfig } from '../../workers/model/random-weights';
import { POISON, randn, testGpu } from './helpers';

describe('runtime batching', () => {
  it('runs more dispatches than the uniform arena holds, each with its own uniform, in order and in few submits', async () => {
    const gpu = await testGpu();
    const n = 37;
    const x = gpu.upload(randn(n, 1), 'scratch', 'x');
    const y = gpu.alloc(n * 4, 'scratch', 'y');
    gpu.fill(y, POISON);
    gpu.fill(y, 0);
    const perSubmit = UNIFORM_ARENA_BYTES / gpu.limits.minUniformBufferOffsetAlignment;
    const count = Math.floor(perSubmit * 2.5);
    const submitsBefore = gpu.submits;
    // y = sum_i alpha_i · x with a different alpha in every dispatch's uniform.
    let alphaSum = 0;
    for (let i = 0; i < count; i++) {
      const alpha = ((i % 7) - 3) / 8;
      alphaSum += alpha;
      axpy(gpu, SHADERS.elementwise, x, y, n, alpha);
    }
    const got = await gpu.readF32(y, n);
    const xs = await gpu.readF32(x, n);
    // Every partial sum is a multiple of 1/8 times x: exact in f32 for these sizes.
    for (let i = 0; i < n; i++) expect(got[i]).toBeCloseTo(alphaSum * xs[i], 4);
    const submits = gpu.submits - submitsBefore;
    expect(submits).toBeLessThanOrEqual(Math.ceil(count / perSubmit) + 2);
    expect(submits).toBeGreaterThanOrEqual(Math.ceil(count / perSubmit));
    gpu.release(x, y);
  });

  it('records a zero fill between dispatches in order, without a submit', async () => {
    const gpu = await testGpu();
    const n = 19;
    const src = randn(n, 2);
    const x = gpu.upload(src, 'scratch', 'x');
    const y = gpu.alloc(n * 4, 'scratch', 'y');
    const z = gpu.alloc(n * 4, 'scratch', 'z');
    gpu.fill(y, 0);
    gpu.fill(z, 0);
    await gpu.done();
    const before = gpu.submits;
    axpy(gpu, SHADERS.elementwise, x, y, n); // y = x
    gpu.fill(x, 0); // recorded after the first axpy has read x
    axpy(gpu, SHADERS.elementwise, x, z, n); // z = 0
    expect(gpu.submits).toBe(before);
    expect(Array.from(await gpu.readF32(y, n))).toEqual(Array.from(src));
    expect(Array.from(await gpu.readF32(z, n))).toEqual(new Array(n).fill(0));
    gpu.release(x, y, z);
  });

  it('refuses a uniform made before a flush', async () => {
    const gpu = await testGpu();
    const x = gpu.alloc(64, 'scratch', 'x');
    const stale = gpu.uniform([16, 0, 0, 0], 'ufuu');
    gpu.flush();
    expect(() =>
      gpu.dispatch({ pipeline: gpu.pipeline(SHADERS.elementwise, 'axpy'), bindings: [x, x, stale], workgroups: [1], label: 'stale-axpy' }),
    ).toThrow(/stale-axpy: binding 2 is a uniform made before the last flush/);
    gpu.release(x);
  });

  it('times any number of passes with timestamps, by dispatch label', async (test) => {
    const gpu = await testGpu();
    if (!gpu.hasTimestamps) test.skip();
    const n = 4096;
    const x = gpu.upload(randn(n, 3), 'scratch', 'x');
    const y = gpu.alloc(n * 4, 'scratch', 'y');
    gpu.fill(y, 0);
    const live = gpu.pool.stats().liveTotal;
    gpu.beginTiming(6); // three passes per query set: the rest go through resolved copies
    for (let i = 0; i < 7; i++) axpy(gpu, SHADERS.elementwise, x, y, n);
    copyRows(gpu, SHADERS.elementwise, { src: x, dst: y, rows: 1, cols: n, srcStride: n, dstStride: n });
    const { ns: total, byLabel } = await gpu.endTiming();
    expect([...byLabel.keys()].sort()).toEqual(['axpy', 'copy_rows']);
    expect([...byLabel.values()].reduce((a, b) => a + b, 0)).toBe(total);
    expect(gpu.pool.stats().liveTotal).toBe(live);
    gpu.release(x, y);
  });

  it('a training step of a tiny model is a handful of submits, not one per dispatch', async () => {
    const gpu = await testGpu();
    const c = tinyConfig('phi');
    const model = await CausalLM.load(gpu, SHADERS, c, new RandomWeights(c, 7), {
      mode: 'nf4',
      lora: { settings: { r: 3, alpha: 6, dropout: 0.1, targetModules: allLinearNames(c) }, init: { seed: 3 } },
      checkpointing: true,
    });
    const seq = 9;
    const inputIds = Int32Array.from({ length: seq }, (_, i) => (i * 5 + 1) % c.vocabSize);
    const batch = { inputIds, attentionMask: new Int32Array(seq).fill(1), labels: inputIds, batch: 1, seq };
    await gpu.done();
    const [d0, s0] = [gpu.dispatches, gpu.submits];
    model.zeroGrads();
    await model.forwardBackward(batch, { gradScale: 1 / seq, dropoutSeed: 5, step: 0 });
    await gpu.done();
    const [dispatches, submits] = [gpu.dispatches - d0, gpu.submits - s0];
    console.log(`tiny phi training step: ${dispatches} dispatches in ${submits} submits`);
    expect(dispatches).toBeGreaterThan(100);
    // The batch's uploads and the loss readback flush; the dispatches do not.
    expect(submits).toBeLessThan(dispatches / 10);
    model.dispose();
  });
});
