/** spiketrace/data: datasets as arrays, time tiling, encoders for time-varying input. */
import { broadcastTo, cast, fromTyped, gatherRows, less, mul, NDArray, random, reshape, type Tensor } from '../core/index.js';

import { loadFashionMnistRaw, loadMnistRaw, normalizeImages } from './raw/fashion-mnist.js';

export { parseIdx, encodeIdx } from './raw/idx.js';
export { DatasetError, ChecksumError, IdxFormatError } from './raw/errors.js';
export { loadFashionMnistRaw, loadMnistRaw, normalizeImages } from './raw/fashion-mnist.js';
export { rateEncode, latencyEncode, deltaEncode, type LatencyOptions } from './encoders.js';

/** Fashion-MNIST's class names, indexed by label. */
export { FASHION_MNIST_CLASSES } from './raw/fashion-mnist.js';

export interface ImageDataset {
  /** (n, 28, 28) float32 in [0, 1] (pixels / 255). */
  readonly images: NDArray;
  /** (n,) int32 class labels. */
  readonly labels: NDArray;
  /** The raw uint8 pixels, row-major. */
  readonly raw: Uint8Array;
}

export interface LoadOptions {
  dir?: string;
  download?: boolean;
  /** Keep only the first n examples of each split (for quick runs). */
  limit?: { train?: number; test?: number };
}

/** limit is checked before anything is loaded (a bad value used to fail only after 70k images). */
function checkLimit(fn: string, limit: LoadOptions['limit']): void {
  if (limit === undefined) return;
  if (limit === null || typeof limit !== 'object')
    throw new TypeError(`${fn}: option limit must be an object { train?, test? }, got ${String(limit)}`);
  for (const [split, n] of Object.entries(limit)) {
    if (split !== 'train' && split !== 'test')
      throw new TypeError(`${fn}: option limit has an unknown key '${split}'; the keys are train and test`);
    if (n !== undefined && !(typeof n === 'number' && Number.isInteger(n) && n >= 0)) {
      throw new RangeError(
        `${fn}: option limit.${split} must be a non-negative integer (the number of examples to keep), got ${typeof n === 'string' ? JSON.stringify(n) : n}`,
      );
    }
  }
}

function toDataset(split: { images: Uint8Array; labels: Uint8Array; count: number }, limit?: number): ImageDataset {
  const n = Math.min(split.count, limit ?? split.count);
  const raw = split.images.subarray(0, n * 784);
  return {
    images: fromTyped(normalizeImages(raw), [n, 28, 28]),
    labels: fromTyped(Int32Array.from(split.labels.subarray(0, n)), [n], 'int32'),
    raw,
  };
}

/**
 * Fashion-MNIST (official 60k/10k split) as arrays, from `dir`, FASHION_MNIST_DIR, Keras's cache,
 * Debian's dataset-fashion-mnist package, or a checked download.
 *
 * @example
 * const { train, test } = await loadFashionMnist();
 * train.images.shape; // [60000, 28, 28]
 */
export async function loadFashionMnist(options: LoadOptions = {}): Promise<{ train: ImageDataset; test: ImageDataset; source: string }> {
  checkLimit('loadFashionMnist', options.limit);
  const raw = await loadFashionMnistRaw({ dir: options.dir, download: options.download });
  return { train: toDataset(raw.train, options.limit?.train), test: toDataset(raw.test, options.limit?.test), source: raw.source };
}

/** MNIST, from the same kinds of places (MNIST_DIR, ~/.keras/datasets/mnist/, ...). */
export async function loadMnist(options: LoadOptions = {}): Promise<{ train: ImageDataset; test: ImageDataset; source: string }> {
  checkLimit('loadMnist', options.limit);
  const raw = await loadMnistRaw({ dir: options.dir, download: options.download });
  return { train: toDataset(raw.train, options.limit?.train), test: toDataset(raw.test, options.limit?.test), source: raw.source };
}

/**
 * Repeats each example over `steps` time steps: (n, ...) -> (n, steps, ...) as a view with a
 * stride-0 time axis. Nothing is copied (numpy's tile of the training set costs 3.7 GB).
 */
export function tileTime(x: NDArray, steps: number): NDArray {
  if (!Number.isInteger(steps) || steps <= 0) throw new RangeError(`tileTime: steps must be a positive integer, got ${steps}`);
  return broadcastTo(reshape(x, [x.shape[0], 1, ...x.shape.slice(1)]), [x.shape[0], steps, ...x.shape.slice(1)]) as NDArray;
}

/**
 * Poisson (Bernoulli per step) spike trains with rate `maxRate * x` Hz: (n, ...) -> (n, steps, ...),
 * each spike of height 1/dt so the mean over time approximates maxRate * x.
 *
 * x holds intensities in [0, 1]. A concrete array with a value outside [0, 1] or NaN is refused,
 * naming the first one and the rate it would imply (one Bernoulli draw per step cannot go beyond
 * 1/dt Hz, nor below 0). Under a transformation (jit, grad) values cannot be checked: there the
 * spike probability per step is clipped, so x > 1 fires at min(maxRate * x, 1/dt) Hz, x < 0 and
 * NaN never fire.
 */
export function poissonEncode(key: Tensor, x: Tensor, steps: number, options: { dt?: number; maxRate?: number } = {}): Tensor {
  const dt = options.dt ?? 0.001;
  const maxRate = options.maxRate ?? 100;
  if (!Number.isInteger(steps) || steps <= 0) throw new RangeError(`poissonEncode: steps must be a positive integer, got ${steps}`);
  if (!(dt > 0)) throw new RangeError(`poissonEncode: dt must be positive, got ${dt}`);
  if (!(maxRate >= 0)) throw new RangeError(`poissonEncode: maxRate must be >= 0 Hz, got ${maxRate}`);
  // One Bernoulli draw per step: at most one spike per step, so rates above 1/dt cannot be met.
  if (maxRate * dt > 1 + 1e-12)
    throw new RangeError(
      `poissonEncode: maxRate * dt = ${maxRate * dt} > 1; at most one spike per step, so maxRate must be <= 1/dt = ${1 / dt} Hz`,
    );
  if (x.ndim < 1) throw new RangeError(`poissonEncode: x must have a leading example axis, got shape []`);
  if (x instanceof NDArray) {
    const values = x.toTyped();
    for (let i = 0; i < values.length; i++) {
      const v = Number(values[i]);
      if (!(v >= 0 && v <= 1)) {
        const rate = Number.isNaN(v)
          ? 'no rate at all'
          : `${maxRate * v} Hz (${v < 0 ? 'below 0' : `above the ${maxRate} Hz maxRate; at most 1/dt = ${1 / dt} Hz is possible`})`;
        throw new RangeError(
          `poissonEncode: x must hold intensities in [0, 1]; element ${i} (flat) is ${v}, which would ask for ${rate}; scale x (e.g. images / 255) or raise maxRate`,
        );
      }
    }
  }
  const p = broadcastTo(reshape(x.mul(maxRate * dt), [x.shape[0], 1, ...x.shape.slice(1)]), [x.shape[0], steps, ...x.shape.slice(1)]);
  return mul(cast(less(random.uniform(key, p.shape), p), 'float32'), 1 / dt);
}

/** One mini-batch from `batches`: the rows, and which rows of the dataset they are. */
export interface Batch {
  readonly x: NDArray;
  readonly y?: NDArray;
  readonly index: Int32Array;
}

/**
 * Mini-batches of (x, y) for one epoch, in an order drawn from `key` (a permutation, as fit
 * shuffles), or in dataset order when `key` is null. Each batch is a contiguous copy of its rows
 * (a stride-0 time axis stays a view). The last, smaller batch is kept unless `dropRemainder`.
 *
 * @example
 * for (const { x, y } of batches(random.foldIn(key, epoch), train.images, train.labels, 32)) {
 *   [params, opt] = step(params, opt, x, y);
 * }
 */
export function* batches(
  key: Tensor | null,
  x: NDArray,
  y: NDArray | null,
  batchSize: number,
  options: { dropRemainder?: boolean } = {},
): Generator<Batch> {
  if (!Number.isInteger(batchSize) || batchSize <= 0)
    throw new RangeError(`batches: batchSize must be a positive integer, got ${batchSize}`);
  if (x.ndim < 1) throw new RangeError('batches: x must have a leading example axis, got shape []');
  const n = x.shape[0];
  if (y !== null && (y.ndim < 1 || y.shape[0] !== n))
    throw new RangeError(`batches: x has ${n} examples but y has shape [${y.shape.join(', ')}]`);
  const order =
    key === null ? Int32Array.from({ length: n }, (_, i) => i) : ((random.permutation(key, n) as NDArray).toTyped() as Int32Array);
  const end = options.dropRemainder ? n - (n % batchSize) : n;
  for (let start = 0; start < end; start += batchSize) {
    const index = order.subarray(start, Math.min(end, start + batchSize));
    yield y === null ? { x: gatherRows(x, index), index } : { x: gatherRows(x, index), y: gatherRows(y, index), index };
  }
}
