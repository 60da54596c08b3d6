/**
 * PRNG keys: creating them from seeds, splitting them and folding data in,
 * exactly as JAX's threefry implementation (`jax._src.prng.threefry_seed`,
 * `threefry_split`, `threefry_fold_in`) does.
 *
 * A key is a `Uint32Array(2)`: the two key words of Threefry-2x32. Keys are
 * values: functions never mutate the keys passed to them, and a key should be
 * consumed by one sampler only (split or fold in to get more), as in JAX.
 */
import { isPartitionable, threefryIndex, threefryIota, type ThreefryOptions } from './bits.js';
import { threefryInto } from './threefry.js';
import { checkCount, checkKey, checkUint32, describe, MAX_COUNT } from './validate.js';

/** Options of {@link keyFromSeed}. */
export interface SeedOptions {
  /**
   * Interpret the seed as JAX does with `jax_enable_x64` on (the default,
   * `true`): the seed is a signed 64-bit integer and the key is its high and
   * low 32-bit words. With `false`, mimic JAX's default 32-bit mode, where a
   * seed is first truncated to its low 32 bits and the key is `[0, low]`.
   * The two agree for seeds in [0, 2^32).
   */
  readonly x64?: boolean;
}

const TWO32 = 2 ** 32;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * A key from an integer seed: JAX's `jax.random.PRNGKey(seed)` (and the data
 * of `jax.random.key(seed)`).
 *
 * For 0 <= seed < 2^32 the key is `[0, seed]`. Other seeds follow JAX's rule
 * for 64-bit seeds: the key is the two's-complement high and low words of the
 * seed, so -1 gives `[0xffffffff, 0xffffffff]` and 2^32 + 5 gives `[1, 5]`
 * (with `{ x64: false }`: `[0, 0xffffffff]` and `[0, 5]`, as JAX without
 * `jax_enable_x64`).
 *
 * @param seed a safe integer (|seed| <= 2^53 - 1), or a bigint in [-2^63, 2^63)
 *   for the full 64-bit range
 * @throws RangeError when the seed is not an integer, is a number beyond the
 *   safe-integer range (it would already have been rounded), or is a bigint
 *   outside the signed 64-bit range (JAX raises OverflowError there)
 *
 * @example
 * keyFromSeed(0);          // Uint32Array [0, 0]
 * keyFromSeed(42);         // Uint32Array [0, 42]
 * keyFromSeed(-1);         // Uint32Array [4294967295, 4294967295]
 * keyFromSeed(2n ** 40n);  // Uint32Array [256, 0]
 */
export function keyFromSeed(seed: number | bigint, options?: SeedOptions): Uint32Array {
  const x64 = options?.x64 ?? true;
  let hi: number;
  let lo: number;
  if (typeof seed === 'bigint') {
    if (seed < INT64_MIN || seed > INT64_MAX) {
      throw new RangeError(`keyFromSeed: seed must be in the signed 64-bit range [-2^63, 2^63), got ${describe(seed)}`);
    }
    const u = BigInt.asUintN(64, seed);
    hi = Number(u >> 32n);
    lo = Number(u & 0xffffffffn);
  } else if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(
        `keyFromSeed: seed must be a safe integer (|seed| <= 2^53 - 1; pass a bigint for larger 64-bit seeds), got ${describe(seed)}`,
      );
    }
    // Division by 2^32 is exact for safe integers, so floor() gives the
    // two's-complement high word (as a signed value) without BigInt.
    const high = Math.floor(seed / TWO32);
    hi = high >>> 0;
    lo = seed - high * TWO32;
  } else {
    throw new TypeError(`keyFromSeed: seed must be a number or bigint, got ${describe(seed)}`);
  }
  // JAX's 32-bit mode shifts a 32-bit seed right by 32, which XLA defines as 0.
  return Uint32Array.of(x64 ? hi : 0, lo);
}

/**
 * Splits a key into `n` new keys: JAX's `jax.random.split(key, n)`.
 *
 * The children are statistically independent of each other and of the parent's
 * own samples; use one for the next split and the others for sampling.
 *
 * @param key the key to split (not modified)
 * @param n number of keys, an integer in [0, 2^31 - 1]; default 2
 * @param options counter layout; see {@link ThreefryOptions}
 * @returns a `Uint32Array(2 * n)` holding the keys back to back: key j is
 *   elements 2j and 2j + 1 (use {@link keyAt} to take one out)
 *
 * @example
 * const keys = splitKey(keyFromSeed(0));
 * // classic layout (default), as documented by JAX:
 * // [4146024105, 967050713, 2718843009, 1272950319]
 * const [k1, k2] = [keyAt(keys, 0), keyAt(keys, 1)];
 * splitKey(keyFromSeed(0), 2, { partitionable: true });
 * // [1797259609, 2579123966, 928981903, 3453687069] (JAX >= 0.5 default)
 */
export function splitKey(key: Uint32Array, n: number = 2, options?: ThreefryOptions): Uint32Array {
  checkKey('splitKey', key);
  checkCount('splitKey', 'n', n, MAX_COUNT);
  if (!isPartitionable(options)) {
    // JAX: reshape(threefry_2x32(key, iota(2n)), (n, 2)).
    return threefryIota(key, 2 * n);
  }
  // JAX's fold-like split: child j is the block with counter j.
  const [y0, y1] = threefryIndex(key, n);
  const out = new Uint32Array(2 * n);
  for (let j = 0; j < n; j++) {
    out[2 * j] = y0[j];
    out[2 * j + 1] = y1[j];
  }
  return out;
}

const ZERO_COUNTER = Uint32Array.of(0);

/**
 * Derives a new key from `key` and a 32-bit integer: JAX's
 * `jax.random.fold_in(key, data)`. Distinct `data` give independent keys,
 * which makes this the tool for per-step or per-example keys
 * (`foldIn(key, step)`).
 *
 * The result is the same under both counter layouts, as in JAX.
 *
 * @param key the key (not modified)
 * @param data an integer in [0, 2^32)
 * @throws RangeError for data outside [0, 2^32) (JAX raises OverflowError)
 *
 * @example
 * foldIn(keyFromSeed(0), 1); // Uint32Array [928981903, 3453687069]
 */
export function foldIn(key: Uint32Array, data: number): Uint32Array {
  checkKey('foldIn', key);
  checkUint32('foldIn', 'data', data);
  // JAX: threefry_2x32(key, threefry_seed(uint32(data))) = hash of the single
  // block (0, data).
  const y0 = new Uint32Array(1);
  const y1 = new Uint32Array(1);
  // Typed counters, as every other caller passes: plain arrays here would make the hot
  // threefry loop's loads polymorphic.
  threefryInto(key[0], key[1], ZERO_COUNTER, Uint32Array.of(data), y0, y1, 1);
  return Uint32Array.of(y0[0], y1[0]);
}

/**
 * Key `i` of a flat key array returned by {@link splitKey}, as a fresh
 * `Uint32Array(2)` (a copy, so later writes to either do not alias).
 *
 * @example
 * const keys = splitKey(keyFromSeed(1), 3);
 * const third = keyAt(keys, 2);
 */
export function keyAt(keys: Uint32Array, i: number): Uint32Array {
  if (!(keys instanceof Uint32Array) || keys.length % 2 !== 0) {
    throw new TypeError(`keyAt: keys must be a Uint32Array of even length, got ${describe(keys)}`);
  }
  if (keys.length === 0) throw new RangeError('keyAt: keys is empty');
  checkCount('keyAt', 'i', i, keys.length / 2 - 1);
  return keys.slice(2 * i, 2 * i + 2);
}
