/**
 * Counter-based, splittable pseudo-random numbers following JAX's design
 * (`jax.random` with the default `threefry2x32` implementation), as pure
 * functions over typed arrays.
 *
 * - A key is a `Uint32Array(2)`; all randomness flows from keys, never from
 *   hidden global state or `Math.random`.
 * - `keyFromSeed`, `splitKey`, `foldIn`, `randomBits`, `uniform`,
 *   `bernoulli`, `permutation` and `randint(..., { method: 'jax' })` reproduce
 *   jax.random's outputs bit for bit (checked against jax 0.10.2 on CPU);
 *   `normal` does too except for rare last-bit differences (see its doc).
 *   Deliberate differences: `uniform` never returns `maxval` (JAX can, by
 *   rounding), and `randint` defaults to exact rejection sampling (JAX's
 *   modulus method is biased for large ranges; `{ method: 'jax' }` keeps it).
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
