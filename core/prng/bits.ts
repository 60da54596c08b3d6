/**
 * Raw random words: how JAX lays counters out for `random_bits` and `split`.
 *
 * JAX has two counter layouts for the threefry PRNG, chosen by the global flag
 * `jax_threefry_partitionable`:
 *
 * - classic (`partitionable: false`, JAX's default before 0.5.0): hash the
 *   flat counter sequence 0, 1, ..., m-1 by cutting it in half and pairing
 *   the halves, i.e. block i is (i, ceil(m/2) + i), padding an odd m with a
 *   trailing 0 counter; the outputs are the first words of all blocks
 *   followed by the second words.
 * - partitionable (`partitionable: true`, JAX's default since 0.5.0): element
 *   i is the block with 64-bit counter i, i.e. (hi32(i), lo32(i)) = (0, i)
 *   here; a 32-bit word is the XOR of the block's two output words and a
 *   64-bit word is their concatenation.
 *
 * Both are reproduced exactly; the default is {@link DEFAULT_PARTITIONABLE}.
 */
import { threefryInto } from './threefry.js';
import { checkCount, checkKey, MAX_COUNT } from './validate.js';

/**
 * Counter layout used when a call does not say: `false`, JAX's classic layout.
 *
 * Why classic: it reproduces the values in JAX's long-standing documentation
 * (`random.split(PRNGKey(0))` = `[[4146024105, 967050713], [2718843009,
 * 1272950319]]`). JAX 0.5.0 and later default to the partitionable layout
 * instead (same call gives `[[1797259609, 2579123966], [928981903,
 * 3453687069]]`); pass `{ partitionable: true }` to match those versions.
 */
export const DEFAULT_PARTITIONABLE = false;

/** Options shared by every function whose output depends on the counter layout. */
export interface ThreefryOptions {
  /**
   * Counter layout, as JAX's `jax_threefry_partitionable` flag; defaults to
   * {@link DEFAULT_PARTITIONABLE}. Different layouts give different (equally
   * good) streams from the same key.
   */
  readonly partitionable?: boolean;
}

/** Resolves the layout flag of an options bag. */
export function isPartitionable(options: ThreefryOptions | undefined): boolean {
  return options?.partitionable ?? DEFAULT_PARTITIONABLE;
}

/**
 * JAX's `threefry_2x32(key, iota(m))`: hash the counters 0..m-1 laid out in
 * the classic way (see the module comment). Returns m words.
 *
 * @internal
 */
export function threefryIota(key: Uint32Array, m: number): Uint32Array {
  const half = Math.ceil(m / 2);
  const x0 = new Uint32Array(half);
  const x1 = new Uint32Array(half);
  for (let i = 0; i < half; i++) {
    x0[i] = i;
    // The padding counter for odd m is 0, exactly as JAX concatenates [0].
    x1[i] = half + i < m ? half + i : 0;
  }
  const y0 = new Uint32Array(half);
  const y1 = new Uint32Array(half);
  threefryInto(key[0], key[1], x0, x1, y0, y1, half);
  // Output order is all first words, then all second words, cut to m.
  const out = new Uint32Array(m);
  out.set(y0);
  out.set(m % 2 === 0 ? y1 : y1.subarray(0, half - 1), half);
  return out;
}

/**
 * The partitionable layout: blocks with counters (0, i) for i < n. Returns
 * both output words of every block.
 *
 * @internal
 */
export function threefryIndex(key: Uint32Array, n: number): [Uint32Array, Uint32Array] {
  // n <= MAX_COUNT < 2^32, so the high word of every 64-bit counter is 0.
  const x0 = new Uint32Array(n);
  const x1 = new Uint32Array(n);
  for (let i = 0; i < n; i++) x1[i] = i;
  const y0 = new Uint32Array(n);
  const y1 = new Uint32Array(n);
  threefryInto(key[0], key[1], x0, x1, y0, y1, n);
  return [y0, y1];
}

/**
 * `count` uniformly random 32-bit words from `key`: JAX's
 * `random.bits(key, (count,), jnp.uint32)` (i.e. `threefry_random_bits` with
 * bit width 32).
 *
 * @param key a key (`Uint32Array(2)`) from {@link keyFromSeed}, {@link splitKey} or {@link foldIn}
 * @param count number of words, an integer in [0, 2^31 - 1]
 * @param options counter layout; see {@link ThreefryOptions}
 * @returns a new `Uint32Array(count)`
 *
 * @example
 * const key = keyFromSeed(0);
 * const words = randomBits(key, 3); // same as jax.random.bits(PRNGKey(0), (3,))
 * // randomBits(key, 3)[0] !== randomBits(key, 4)[0]: in the classic layout the
 * // count changes which counters are paired, as in JAX.
 */
export function randomBits(key: Uint32Array, count: number, options?: ThreefryOptions): Uint32Array {
  checkKey('randomBits', key);
  checkCount('randomBits', 'count', count);
  if (!isPartitionable(options)) return threefryIota(key, count);
  const [y0, y1] = threefryIndex(key, count);
  for (let i = 0; i < count; i++) y0[i] ^= y1[i];
  return y0;
}

/**
 * `count` uniformly random 64-bit words from `key`, as JAX's
 * `random.bits(key, (count,), jnp.uint64)` (which needs `jax_enable_x64`),
 * returned as separate high and low 32-bit halves because JS has no packed
 * 64-bit integer array that is cheap to do arithmetic on.
 *
 * @param key a key (`Uint32Array(2)`)
 * @param count number of 64-bit words, an integer in [0, 2^31 - 1]
 * @param options counter layout; see {@link ThreefryOptions}
 * @returns `[hi, lo]`, word i being `hi[i] * 2^32 + lo[i]`
 *
 * @example
 * const [hi, lo] = randomBits64(keyFromSeed(0), 2);
 * const first = (BigInt(hi[0]) << 32n) | BigInt(lo[0]);
 */
export function randomBits64(key: Uint32Array, count: number, options?: ThreefryOptions): [Uint32Array, Uint32Array] {
  checkKey('randomBits64', key);
  checkCount('randomBits64', 'count', count, MAX_COUNT);
  if (isPartitionable(options)) return threefryIndex(key, count);
  // Classic: hash iota(2 * count); the first half are the high words and the
  // second half the low words (JAX's `jnp.split(bits, 2)`).
  const words = threefryIota(key, 2 * count);
  return [words.slice(0, count), words.slice(count)];
}
