/**
 * The parent's side of the shared inputs: Fashion-MNIST (through spiketrace's data module) or
 * synthetic images of the same shape, in one fixed shuffled order, plus the seeded initial weights
 * and matmul operands. Built once per run and written to files for the children.
 */
import { loadFashionMnistRaw, normalizeImages } from '../../data/index.js';
import {
  CLASSES,
  IMAGE,
  LIF,
  TRAIN_ROWS,
  convWeights,
  glorotUniform,
  rng,
  MATMUL,
  HIDDEN,
  type DenseWeights,
  type Inputs,
  type TrainData,
} from './common.js';

/** The two dense layers of every model, 784 -> 128 -> 10: glorot-uniform kernels, zero biases (Keras's defaults). */
export function initialWeights(seed: number): DenseWeights {
  const next = rng(seed ^ 0x5eed);
  return {
    w1: glorotUniform(next, IMAGE, HIDDEN),
    b1: new Float32Array(HIDDEN),
    w2: glorotUniform(next, HIDDEN, CLASSES),
    b2: new Float32Array(CLASSES),
  };
}

/** The LIF network's layers, 784 -> 1000 -> 10: glorot-uniform kernels, zero biases. */
export function lifWeights(seed: number): DenseWeights {
  const next = rng(seed ^ 0x11f);
  return {
    w1: glorotUniform(next, IMAGE, LIF.hidden),
    b1: new Float32Array(LIF.hidden),
    w2: glorotUniform(next, LIF.hidden, CLASSES),
    b2: new Float32Array(CLASSES),
  };
}

/**
 * The LIF case's first batch as rate-coded spikes, (25, 128, 784) time-major: pixel i of row r
 * spikes at step t when a seeded uniform draw falls below its intensity (Bernoulli(x) per step).
 */
export function lifFirstBatchSpikes(data: TrainData | null, seed: number): Uint8Array {
  if (!data || data.rows < LIF.batch) return new Uint8Array(0);
  const next = rng(seed ^ 0x5b1e);
  const per = LIF.batch * IMAGE;
  const out = new Uint8Array(LIF.timeSteps * per);
  for (let t = 0; t < LIF.timeSteps; t++) {
    for (let i = 0; i < per; i++) out[t * per + i] = next() < data.x[i] ? 1 : 0;
  }
  return out;
}

/** The matmul case's operands: pixel-like A in [0, 1), glorot B. */
export function matmulOperands(seed: number): { a: Float32Array; b: Float32Array } {
  const next = rng(seed ^ 0xa11);
  const a = new Float32Array(MATMUL.m * MATMUL.k);
  for (let i = 0; i < a.length; i++) a[i] = next();
  return { a, b: glorotUniform(next, MATMUL.k, MATMUL.n) };
}

/**
 * The first `rows` training examples in a fixed shuffled order (one seeded permutation of the 60k),
 * from Fashion-MNIST or, with `synthetic`, seeded random images and labels of the same shapes.
 * Only the requested rows are normalized to float32, so a quick run holds a few MB.
 */
export async function loadTrainData(rows: number, seed: number, synthetic: boolean): Promise<TrainData> {
  const next = rng(seed ^ 0xda7a);
  const order = new Int32Array(TRAIN_ROWS);
  for (let i = 0; i < TRAIN_ROWS; i++) order[i] = i;
  for (let i = TRAIN_ROWS - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const pixels = new Uint8Array(rows * IMAGE);
  const y = new Int32Array(rows);
  let source: string;
  if (synthetic) {
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.floor(next() * 256);
    for (let r = 0; r < rows; r++) y[r] = Math.floor(next() * CLASSES);
    source = 'synthetic (seeded uniform pixels and labels)';
  } else {
    const raw = await loadFashionMnistRaw();
    for (let r = 0; r < rows; r++) {
      const src = order[r];
      pixels.set(raw.train.images.subarray(src * IMAGE, (src + 1) * IMAGE), r * IMAGE);
      y[r] = raw.train.labels[src];
    }
    source = `Fashion-MNIST, ${raw.source}`;
  }
  return { x: normalizeImages(pixels), y, rows, source };
}

export async function buildInputs(rows: number, seed: number, synthetic: boolean): Promise<Inputs> {
  const data = rows > 0 ? await loadTrainData(rows, seed, synthetic) : null;
  return {
    data,
    weights: initialWeights(seed),
    lifWeights: lifWeights(seed),
    lifSpikes0: lifFirstBatchSpikes(data, seed),
    matmul: matmulOperands(seed),
    conv: convWeights(seed),
  };
}
