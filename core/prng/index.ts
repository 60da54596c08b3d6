/**
 * Counter-based, splittable pseudo-random numbers following JAX's design
 * (`jax.random` with the default `threefry2x32` implementation), as pure
 * functions over typed arrays.
 *
 * - A key is a `Uint32Array(2)`; all randomness flows from keys, never from
 *   hidden global state or `Math.random`.
 * - `keyFromSeed`, `splitKey`, `foldIn` and `randomBits` reproduce JAX's
 *   outputs bit for bit; so do `uniform`, `bernoulli`, `permutation` and
 *   `randint(..., { method: 'jax' })`; `normal` reproduces JAX's algorithm.
 * - JAX has two counter layouts (flag `jax_threefry_partitionable`, default
 *   changed to `true` in JAX 0.5.0). Both are available via
 *   `{ partitionable }`; the default here is {@link DEFAULT_PARTITIONABLE}.
 *
 * @example
 * import { keyFromSeed, splitKey, keyAt, normal, foldIn } from './core/prng/index.js';
 * const root = keyFromSeed(0);
 * const keys = splitKey(root, 2);
 * const weights = normal(keyAt(keys, 0), 128 * 64);     // Float32Array
 * const stepKey = foldIn(keyAt(keys, 1), 17);            // per-step key
 */
export { threefry2x32 } from './threefry.js';
export { DEFAULT_PARTITIONABLE, randomBits, randomBits64, type ThreefryOptions } from './bits.js';
export { foldIn, keyAt, keyFromSeed, splitKey, type SeedOptions } from './keys.js';
export {
  bernoulli,
  normal,
  permutation,
  randint,
  uniform,
  type BernoulliOptions,
  type FloatDType,
  type RandintOptions,
  type UniformOptions,
} from './sample.js';
export { erfinv32, erfinv64 } from './erfinv.js';
export { MAX_COUNT } from './validate.js';
