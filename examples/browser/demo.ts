/**
 * The browser demo's model and training, shared by the page (main.ts) and by the test that checks
 * the page's losses against Node's: the seed's spiking-aware model (examples/fashion-mnist.ts,
 * model 3) on a Fashion-MNIST subset stored as IDX files (make-data.ts).
 */
import { fromTyped, gatherRows, random, type NDArray } from '../../core/index.js';
import { normalizeImages, parseIdx, tileTime } from '../../data/index.js';
import * as nn from '../../nn/index.js';
import * as spiking from '../../spiking/index.js';

export const TIME_STEPS = 10;
export const DATA_FILES = ['train-images.idx', 'train-labels.idx', 'test-images.idx', 'test-labels.idx'] as const;

export interface DemoSplit {
  /** (n, TIME_STEPS, 28, 28) float32: every image repeated over time. */
  readonly sequences: NDArray;
  readonly labels: NDArray;
  /** The raw pixels, row-major (n * 784). */
  readonly raw: Uint8Array;
}

/** The four IDX files (as make-data.ts writes them) into arrays. */
export function demoData(files: Record<(typeof DATA_FILES)[number], Uint8Array>): { train: DemoSplit; test: DemoSplit } {
  const split = (images: string, labels: string): DemoSplit => {
    const im = parseIdx(files[images as (typeof DATA_FILES)[number]], images);
    const lb = parseIdx(files[labels as (typeof DATA_FILES)[number]], labels);
    const raw = im.data as Uint8Array;
    const n = im.shape[0];
    return {
      sequences: tileTime(fromTyped(normalizeImages(raw), [n, 28, 28]), TIME_STEPS),
      labels: fromTyped(Int32Array.from(lb.data as Uint8Array), [n], 'int32'),
      raw,
    };
  };
  return { train: split('train-images.idx', 'train-labels.idx'), test: split('test-images.idx', 'test-labels.idx') };
}

/** The seed's model 3: dense over each step, spiking ReLU (dt 0.01, spiking-aware), mean over time. */
export function demoModel(): nn.Layer {
  nn.resetLayerNames();
  return nn.sequential([
    nn.reshape([-1, 28 * 28]),
    nn.timeDistributed(nn.dense(128)),
    spiking.spikingActivation('relu', { dt: 0.01, spikingAwareTraining: true }),
    nn.globalAveragePooling1d(),
    nn.dense(10),
  ]);
}

export interface TrainOptions {
  epochs?: number;
  /** Use only the first n training images. */
  limit?: number;
  batchSize?: number;
  onStep?: (step: number, steps: number, logs: nn.Logs) => void;
  signal?: AbortSignal;
}

/** Trains the demo model with fitAsync; returns the trained variables and every batch's loss. */
export async function trainDemo(
  train: DemoSplit,
  options: TrainOptions = {},
): Promise<{ model: nn.Layer; vars: nn.Variables; losses: number[] }> {
  const model = demoModel();
  const n = Math.min(options.limit ?? train.labels.shape[0], train.labels.shape[0]);
  const idx = Int32Array.from({ length: n }, (_, i) => i);
  const xs = n < train.labels.shape[0] ? gatherRows(train.sequences, idx) : train.sequences;
  const ys = n < train.labels.shape[0] ? gatherRows(train.labels, idx) : train.labels;
  const init = model.init(random.key(1002), [null, 28, 28]);
  const losses: number[] = [];
  const epochs = options.epochs ?? 1;
  const batchSize = options.batchSize ?? 32;
  const steps = epochs * Math.ceil(n / batchSize);
  const trained = await nn.fitAsync(model, init, xs, ys, {
    optimizer: nn.adam(),
    loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
    metrics: [nn.accuracy],
    epochs,
    batchSize,
    key: random.key(102),
    verbose: 0,
    signal: options.signal,
    callbacks: [
      {
        onBatchEnd: (b, logs, ctl) => {
          losses.push(logs.batchLoss);
          options.onStep?.(ctl.epoch * ctl.stepsPerEpoch + b + 1, steps, logs);
        },
      },
    ],
  });
  return { model, vars: trained, losses };
}
