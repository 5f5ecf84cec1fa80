/**
 * A GPU device lost mid-run is reported (status 'device-lost', naming the checkpoint to resume
 * from), and a new device + model restored from that checkpoint finishes the run with the same
 * losses as an uninterrupted one.
 */
import { describe, expect, it } from 'vitest';
import { Gpu } from '../../workers/gpu/runtime';
import { FixedBatches } from '../../workers/train/batches';
import { CheckpointStore } from '../../workers/train/checkpoint-store';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { Trainer, type TrainEvent, type TrainSettings } from '../../workers/train/trainer';
import { ToyModel, toyBatches, type ToyShape } from './train-toy-model';

const shape: ToyShape = { vocab: 8, hidden: 5, r: 2, scale: 2, seed: 17 };
const batches = toyBatches(shape.vocab, 8, 2, 6, [1, 2, 4], 5);
const settings: Partial<TrainSettings> = { lr: 0.03, schedule: { name: 'cosine', warmupSteps: 1 }, maxGradNorm: 0.5, gradAccum: 2, maxSteps: 4, checkpointEvery: 1 };

describe('device lost during training', () => {
  it('is reported, and the run resumes from the last checkpoint on a new device', async () => {
    const refGpu = await Gpu.create();
    const refModel = new ToyModel(refGpu, shape);
    const reference = await new Trainer({ gpu: refGpu, model: refModel, shaders: SHADERS, train: new FixedBatches(batches) }, settings).run();
    expect(reference.status).toBe('done');
    refGpu.destroy();

    const store = await CheckpointStore.open({ dbName: `lost-${Date.now()}` });
    const gpu = await Gpu.create();
    const model = new ToyModel(gpu, shape);
    const events: TrainEvent[] = [];
    const trainer = new Trainer({
      gpu, model, shaders: SHADERS, train: new FixedBatches(batches), checkpoints: store.sink('lost'),
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'checkpoint' && e.step === 2) gpu.device.destroy();
      },
    }, settings);
    const broken = await trainer.run();
    expect(broken.status).toBe('device-lost');
    expect(broken.message).toMatch(/GPU device lost .*resume from the checkpoint at step 2/);
    expect(events.some((e) => e.type === 'status' && e.status === 'device-lost')).toBe(true);

    const gpu2 = await Gpu.create();
    const model2 = new ToyModel(gpu2, shape);
    const resumed = new Trainer({ gpu: gpu2, model: model2, shaders: SHADERS, train: new FixedBatches(batches), checkpoints: store.sink('lost') }, settings);
    resumed.restore((await store.loadLatest('lost'))!.snapshot);
    const done = await resumed.run();
    expect(done.status).toBe('done');
    expect(done.history.map((h) => h.loss)).toEqual(reference.history.map((h) => h.loss));
    resumed.dispose();
    model2.dispose();
    gpu2.destroy();
    store.close();
  });
});
