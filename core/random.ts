/**
 * Explicit, splittable PRNG keys (JAX's API over Threefry-2x32). All randomness flows from keys:
 * the same key gives the same numbers on every backend and under jit.
 *
 * @example
 * const k = key(0);
 * const [k1, k2] = split(k);
 * uniform(k1, [3]); // three floats in [0, 1)
 */
import type { DType } from './dtype.js';
import { fromTyped } from './ndarray.js';
import * as ops from './ops.js';
import { ShapeError, fmtShape } from './shape.js';
import { Tensor } from './tensor.js';
import { bind1 } from './trace.js';
import * as prng from './prng/index.js';

/** What a non-tensor argument is, in words, for the key errors. */
function describeNonTensor(k: unknown): string {
  if (Array.isArray(k))
    return `a JS array of ${k.length} element${k.length === 1 ? '' : 's'} (split returns an array of keys: pass one of them, e.g. keys[0])`;
  if (k === null) return 'null';
  if (typeof k === 'object') return `an object (${Object.prototype.toString.call(k)})`;
  return `the ${typeof k} ${String(k)}`;
}

function checkKey(fn: string, k: Tensor): void {
  if (!(k instanceof Tensor)) {
    throw new TypeError(
      `${fn}: expected a PRNG key, a uint32[2] tensor made by random.key(seed) (or one of the keys from random.split), got ${describeNonTensor(k)}`,
    );
  }
  if (k.dtype !== 'uint32' || k.ndim !== 1 || k.shape[0] !== 2)
    throw new ShapeError(`${fn}: expected a PRNG key (uint32[2] from key(seed)), got ${k.dtype}${fmtShape(k.shape)}`);
}

/** A key from an integer seed, laid out as JAX's PRNGKey. */
export function key(seed: number): Tensor {
  return fromTyped(prng.keyFromSeed(seed), [2], 'uint32');
}

/** `n` independent keys derived from `k`. */
export function split(k: Tensor, n = 2): Tensor[] {
  checkKey('split', k);
  const keys = bind1('random_split', [k], { n });
  return Array.from({ length: n }, (_, i) => ops.indexAxis(keys, 0, i));
}

/** A new key from `k` and an integer (e.g. a step number). */
export function foldIn(k: Tensor, data: number): Tensor {
  checkKey('foldIn', k);
  return bind1('random_fold_in', [k], { data });
}

export function bits(k: Tensor, shape: readonly number[]): Tensor {
  checkKey('bits', k);
  return bind1('random_bits', [k], { shape: shape.slice() });
}

export interface UniformOptions {
  dtype?: DType;
  minval?: number;
  maxval?: number;
}
/** Uniform floats in [minval, maxval) (default [0, 1)). */
export function uniform(k: Tensor, shape: readonly number[], opts: UniformOptions = {}): Tensor {
  checkKey('uniform', k);
  const minval = opts.minval ?? 0;
  const maxval = opts.maxval ?? 1;
  if (!(maxval > minval)) throw new RangeError(`uniform: maxval (${maxval}) must exceed minval (${minval})`);
  // The range is applied inside the sampler (one rounding, as JAX's fused multiply-add; never maxval).
  return bind1('random_uniform', [k], { shape: shape.slice(), dtype: opts.dtype ?? 'float32', minval, maxval });
}
/** Standard normal floats. */
export function normal(k: Tensor, shape: readonly number[], opts: { dtype?: DType } = {}): Tensor {
  checkKey('normal', k);
  return bind1('random_normal', [k], { shape: shape.slice(), dtype: opts.dtype ?? 'float32' });
}
/** Booleans that are true with probability p. */
export function bernoulli(k: Tensor, p: number | Tensor, shape: readonly number[]): Tensor {
  checkKey('bernoulli', k);
  return ops.less(uniform(k, shape), p);
}
/** Integers uniform in [minval, maxval). */
export function randint(k: Tensor, shape: readonly number[], minval: number, maxval: number): Tensor {
  checkKey('randint', k);
  if (!(maxval > minval)) throw new RangeError(`randint: maxval (${maxval}) must exceed minval (${minval})`);
  return bind1('random_randint', [k], { shape: shape.slice(), minval, maxval });
}
/** A uniformly random permutation of 0..n-1. */
export function permutation(k: Tensor, n: number): Tensor {
  checkKey('permutation', k);
  return bind1('random_permutation', [k], { n });
}
