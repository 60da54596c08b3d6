/**
 * Samplers over the raw words of ./bits.ts, following `jax.random`:
 * uniform, normal, bernoulli, randint and permutation.
 *
 * Every function is a pure function of (key, arguments): no hidden state, no
 * `Math.random`. Each consumes its key; derive further keys with `splitKey`
 * or `foldIn` rather than reusing one key for two samplers.
 */
import { isPartitionable, randomBits, randomBits64, threefryIndex, type ThreefryOptions } from './bits.js';
import { erfinv32, erfinv64 } from './erfinv.js';
import { fma32, fma64 } from './fma.js';
import { keyAt, splitKey } from './keys.js';
import { threefryInto } from './threefry.js';
import { checkCount, checkKey, describe } from './validate.js';

/** Floating-point element types the samplers produce. */
export type FloatDType = 'float32' | 'float64';

/** Options of {@link uniform}. */
export interface UniformOptions extends ThreefryOptions {
  /** Element type; default `'float32'` (JAX's default without x64). */
  readonly dtype?: FloatDType;
  /** Inclusive lower bound; default 0. Rounded to `dtype` first, as JAX does. */
  readonly minval?: number;
  /** Exclusive upper bound; default 1. Rounded to `dtype` first, as JAX does. */
  readonly maxval?: number;
}

const f32 = Math.fround;
const TWO_M23 = 2 ** -23;
const TWO_M52 = 2 ** -52;
const TWO20 = 2 ** 20;
const TWO32 = 2 ** 32;

// Scratch views for stepping to the neighbouring float below a bound.
const f32Scratch = new Float32Array(1);
const i32Scratch = new Int32Array(f32Scratch.buffer);
const f64Scratch = new Float64Array(1);
const i64Scratch = new BigInt64Array(f64Scratch.buffer);

/** Largest float32 strictly below the float32 `x` (finite x). */
function below32(x: number): number {
  if (x === 0) return -(2 ** -149);
  f32Scratch[0] = x;
  i32Scratch[0] += x > 0 ? -1 : 1;
  return f32Scratch[0];
}

/** Largest float64 strictly below `x` (finite x). */
function below64(x: number): number {
  if (x === 0) return -Number.MIN_VALUE;
  f64Scratch[0] = x;
  i64Scratch[0] += x > 0 ? -1n : 1n;
  return f64Scratch[0];
}

/**
 * `count` floats uniform on [minval, maxval): JAX's
 * `jax.random.uniform(key, (count,), dtype, minval, maxval)`.
 *
 * float32 uses JAX's mantissa trick on one 32-bit word per element: the top
 * 23 bits become the mantissa of a float in [1, 2) (`bits >>> 9 | 0x3f800000`),
 * minus 1 gives a multiple of 2^-23 in [0, 1), which is scaled by
 * `maxval - minval` and shifted by `minval` with a single rounding (a fused
 * multiply-add, which is what XLA's CPU backend emits). float64 is the same
 * with one 64-bit word per element (JAX with `jax_enable_x64`): the top 52 bits
 * of the word become the mantissa, giving multiples of 2^-52. The results equal
 * JAX's (CPU) bit for bit under the same counter layout.
 *
 * One deliberate difference: JAX can return `maxval` itself when
 * `u * (maxval - minval) + minval` rounds up (e.g. float32 with minval = 2^24,
 * maxval = 2^24 + 2, where about half of JAX's draws equal maxval); here such
 * values become the largest float below `maxval`, so results always lie in
 * [minval, maxval). With the default [0, 1) this never happens.
 *
 * @param key a key (`Uint32Array(2)`)
 * @param count number of samples, an integer in [0, 2^31 - 1]
 * @param options dtype (default float32), bounds (default [0, 1)), counter layout
 * @throws RangeError unless minval < maxval after rounding to `dtype`, both
 *   finite, and maxval - minval finite
 *
 * @example
 * const u = uniform(keyFromSeed(0), 4);                       // Float32Array in [0, 1)
 * const v = uniform(keyFromSeed(0), 4, { minval: -1, maxval: 1 });
 * const w = uniform(keyFromSeed(0), 4, { dtype: 'float64' }); // Float64Array
 */
export function uniform(key: Uint32Array, count: number, options?: UniformOptions & { readonly dtype?: 'float32' }): Float32Array;
export function uniform(key: Uint32Array, count: number, options: UniformOptions & { readonly dtype: 'float64' }): Float64Array;
export function uniform(key: Uint32Array, count: number, options?: UniformOptions): Float32Array | Float64Array;
export function uniform(key: Uint32Array, count: number, options?: UniformOptions): Float32Array | Float64Array {
  checkKey('uniform', key);
  checkCount('uniform', 'count', count);
  const dtype = options?.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float64') {
    throw new TypeError(`uniform: dtype must be 'float32' or 'float64', got ${describe(dtype)}`);
  }
  const rawMin = options?.minval ?? 0;
  const rawMax = options?.maxval ?? 1;
  const lo = dtype === 'float32' ? f32(rawMin) : rawMin;
  const hi = dtype === 'float32' ? f32(rawMax) : rawMax;
  if (typeof rawMin !== 'number' || typeof rawMax !== 'number' || !Number.isFinite(lo) || !Number.isFinite(hi) || !(lo < hi)) {
    throw new RangeError(
      `uniform: need finite minval < maxval (after rounding to ${dtype}), got minval=${describe(rawMin)}, maxval=${describe(rawMax)}`,
    );
  }
  const layout = { partitionable: isPartitionable(options) };
  if (dtype === 'float32') {
    const scale = f32(hi - lo);
    if (!Number.isFinite(scale)) {
      throw new RangeError(`uniform: maxval - minval overflows float32 (minval=${rawMin}, maxval=${rawMax})`);
    }
    const bits = randomBits(key, count, layout);
    const out = new Float32Array(count);
    const top = below32(hi);
    if (lo === 0 && scale === 1) {
      // [0, 1): u * 1 + 0 is exact, so the FMA emulation is not needed (the common case).
      for (let i = 0; i < count; i++) out[i] = (bits[i] >>> 9) * TWO_M23;
      return out;
    }
    for (let i = 0; i < count; i++) {
      // (bits >>> 9 | 0x3f800000) as float32, minus 1, is exactly (bits >>> 9) * 2^-23.
      const u = (bits[i] >>> 9) * TWO_M23;
      // One rounding for u * scale + lo: XLA's CPU backend fuses it into an FMA.
      let v = fma32(u, scale, lo);
      if (v < lo) v = lo; // JAX: lax.max(minval, ...)
      if (v >= hi) v = top; // keep the upper bound exclusive (see above)
      out[i] = v;
    }
    return out;
  }
  const scale = hi - lo;
  if (!Number.isFinite(scale)) {
    throw new RangeError(`uniform: maxval - minval overflows float64 (minval=${rawMin}, maxval=${rawMax})`);
  }
  const [whi, wlo] = randomBits64(key, count, layout);
  const out = new Float64Array(count);
  const top = below64(hi);
  for (let i = 0; i < count; i++) {
    // (word >>> 12 | 0x3ff0000000000000) as float64, minus 1, is exactly the
    // 52-bit integer (word >>> 12) times 2^-52; assembled from the halves.
    const u = (whi[i] * TWO20 + (wlo[i] >>> 12)) * TWO_M52;
    let v = fma64(u, scale, lo);
    if (v < lo) v = lo;
    if (v >= hi) v = top;
    out[i] = v;
  }
  return out;
}

/**
 * `count` standard normal samples: JAX's `jax.random.normal(key, (count,), dtype)`.
 *
 * As in JAX: draw u uniform on [nextafter(-1, 0), 1) with {@link uniform} (so
 * u is never -1 or 1), then return sqrt(2) * erfinv(u) evaluated in `dtype`
 * with XLA's formula (see ./erfinv.ts). The uniform stage is bit-identical to
 * JAX. Against jax 0.10.2 on CPU, float64 results are bit-identical except
 * about 2 in 100,000 draws (1-2 ulp, where the C library's log is not
 * correctly rounded); float32 results are bit-identical except about 0.5% of
 * draws beyond |z| > 0.92, which differ by 1-3 ulp because XLA uses its own
 * float32 log there. JAX on GPU differs from JAX on CPU in the same way.
 *
 * Cost: about 0.5-1 microsecond per sample, mostly the exact emulation of
 * XLA's fused multiply-adds; this buys the bit-compatibility above.
 *
 * @param key a key (`Uint32Array(2)`)
 * @param count number of samples, an integer in [0, 2^31 - 1]
 * @param dtype `'float32'` (default) or `'float64'`
 * @param options counter layout; see {@link ThreefryOptions}
 *
 * @example
 * const z = normal(keyFromSeed(0), 1000);            // Float32Array
 * const z64 = normal(keyFromSeed(0), 1000, 'float64'); // Float64Array
 */
export function normal(key: Uint32Array, count: number, dtype?: 'float32', options?: ThreefryOptions): Float32Array;
export function normal(key: Uint32Array, count: number, dtype: 'float64', options?: ThreefryOptions): Float64Array;
export function normal(key: Uint32Array, count: number, dtype?: FloatDType, options?: ThreefryOptions): Float32Array | Float64Array;
export function normal(
  key: Uint32Array,
  count: number,
  dtype: FloatDType = 'float32',
  options?: ThreefryOptions,
): Float32Array | Float64Array {
  checkKey('normal', key);
  checkCount('normal', 'count', count);
  const layout = { partitionable: isPartitionable(options) };
  if (dtype === 'float32') {
    // nextafter(-1, 0) in float32 is -(1 - 2^-24).
    const u = uniform(key, count, { dtype: 'float32', minval: -(1 - 2 ** -24), maxval: 1, ...layout });
    const sqrt2 = f32(Math.SQRT2);
    for (let i = 0; i < count; i++) u[i] = f32(sqrt2 * erfinv32(u[i]));
    return u;
  }
  if (dtype === 'float64') {
    const u = uniform(key, count, { dtype: 'float64', minval: -(1 - 2 ** -53), maxval: 1, ...layout });
    for (let i = 0; i < count; i++) u[i] = Math.SQRT2 * erfinv64(u[i]);
    return u;
  }
  throw new TypeError(`normal: dtype must be 'float32' or 'float64', got ${describe(dtype)}`);
}

/** Options of {@link bernoulli}. */
export interface BernoulliOptions extends ThreefryOptions {
  /**
   * Precision of the underlying uniform and of `p`; default `'float32'`, which
   * is what JAX uses for a Python-float `p` without x64.
   */
  readonly dtype?: FloatDType;
}

/**
 * `count` Bernoulli(p) draws as 0/1 bytes: JAX's
 * `jax.random.bernoulli(key, p, (count,))`, i.e. `uniform(key) < p` with p
 * rounded to the uniform's dtype.
 *
 * @param key a key (`Uint32Array(2)`)
 * @param p success probability in [0, 1]
 * @param count number of draws, an integer in [0, 2^31 - 1]
 * @param options dtype of the comparison and counter layout
 * @returns a `Uint8Array` of 0s and 1s
 * @throws RangeError for p outside [0, 1] or NaN
 *
 * @example
 * const spikes = bernoulli(keyFromSeed(3), 0.1, 1000); // about 100 ones
 */
export function bernoulli(key: Uint32Array, p: number, count: number, options?: BernoulliOptions): Uint8Array {
  checkKey('bernoulli', key);
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) {
    throw new RangeError(`bernoulli: p must be a probability in [0, 1], got ${describe(p)}`);
  }
  checkCount('bernoulli', 'count', count);
  const dtype = options?.dtype ?? 'float32';
  const layout = { partitionable: isPartitionable(options) };
  const u = dtype === 'float64' ? uniform(key, count, { dtype, ...layout }) : uniform(key, count, { dtype: 'float32', ...layout });
  const threshold = dtype === 'float64' ? p : f32(p);
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = u[i] < threshold ? 1 : 0;
  return out;
}

/** Options of {@link randint}. */
export interface RandintOptions extends ThreefryOptions {
  /**
   * `'unbiased'` (default): exact rejection sampling, every integer in range
   * equally likely. `'jax'`: JAX's modulus-based algorithm, bit-identical to
   * `jax.random.randint(..., dtype=jnp.int32)` but biased for large ranges
   * (see {@link randint}).
   */
  readonly method?: 'unbiased' | 'jax';
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * `count` integers uniform on [minval, maxval): the counterpart of
 * `jax.random.randint(key, (count,), minval, maxval, jnp.int32)`.
 *
 * Default method `'unbiased'`: element i takes the first word w from the
 * sequence W(r, i) = y0 ^ y1 of Threefry blocks with counter (r, i),
 * r = 0, 1, 2, ..., that satisfies w >= 2^32 mod span, and returns
 * minval + (w mod span). Accepted words are uniform over a multiple of span,
 * so the result is exactly uniform; a word is rejected with probability
 * (2^32 mod span) / 2^32, below 1/2 and usually far below. Round 0 is the partitionable `randomBits(key, count)`, and later
 * rounds continue that stream at 64-bit counters r * 2^32 + i, so this method
 * does not depend on the counter layout.
 *
 * Why not JAX's algorithm by default: JAX reduces two 32-bit words modulo the
 * span with 32-bit wrapping arithmetic, which is exact only while the span is
 * at most 2^16 and badly biased for spans near 2^31 or above (e.g. for minval = -2^31, maxval = 2^30 the first
 * third of the range comes up half of the time). `{ method: 'jax' }`
 * reproduces it exactly for compatibility.
 *
 * @param key a key (`Uint32Array(2)`)
 * @param count number of samples, an integer in [0, 2^31 - 1]
 * @param minval inclusive lower bound, an integer in [-2^31, 2^31 - 1]
 * @param maxval exclusive upper bound, an integer in [minval + 1, 2^31]
 * @param options method and (for `'jax'`) counter layout
 * @returns an `Int32Array(count)`
 * @throws RangeError for non-integer or out-of-range bounds, or an empty range
 *   (JAX would silently return minval there)
 *
 * @example
 * const dice = randint(keyFromSeed(7), 10, 1, 7); // values in 1..6
 * const jaxCompatible = randint(keyFromSeed(7), 10, 1, 7, { method: 'jax' });
 */
export function randint(key: Uint32Array, count: number, minval: number, maxval: number, options?: RandintOptions): Int32Array {
  checkKey('randint', key);
  checkCount('randint', 'count', count);
  if (typeof minval !== 'number' || !Number.isInteger(minval) || minval < INT32_MIN || minval > INT32_MAX) {
    throw new RangeError(`randint: minval must be an integer in [-2^31, 2^31 - 1], got ${describe(minval)}`);
  }
  if (typeof maxval !== 'number' || !Number.isInteger(maxval) || maxval <= minval || maxval > 2 ** 31) {
    throw new RangeError(`randint: maxval must be an integer in (minval, 2^31] (minval=${minval}), got ${describe(maxval)}`);
  }
  const method = options?.method ?? 'unbiased';
  if (method === 'jax') return randintJax(key, count, minval, maxval, options);
  if (method !== 'unbiased') throw new TypeError(`randint: method must be 'unbiased' or 'jax', got ${describe(method)}`);

  const span = maxval - minval; // in [1, 2^32]
  // Words below 2^32 mod span are the incomplete last copy of [0, span): reject them.
  const threshold = TWO32 % span;
  const out = new Int32Array(count);
  const [y0, y1] = threefryIndex(key, count);
  let pending: number[] = [];
  for (let i = 0; i < count; i++) {
    const w = (y0[i] ^ y1[i]) >>> 0;
    if (w < threshold) pending.push(i);
    else out[i] = minval + (w % span);
  }
  // Redraw rejected elements from counters (r, i). Each round keeps a
  // rejected element with probability < 1/2, so this ends after a few rounds.
  for (let round = 1; pending.length > 0; round++) {
    if (round > 0xffffffff) throw new Error('randint: exhausted the counter space (impossible in practice)');
    const m = pending.length;
    const x0 = new Uint32Array(m).fill(round);
    const x1 = Uint32Array.from(pending);
    const z0 = new Uint32Array(m);
    const z1 = new Uint32Array(m);
    threefryInto(key[0], key[1], x0, x1, z0, z1, m);
    const still: number[] = [];
    for (let j = 0; j < m; j++) {
      const w = (z0[j] ^ z1[j]) >>> 0;
      if (w < threshold) still.push(pending[j]);
      else out[pending[j]] = minval + (w % span);
    }
    pending = still;
  }
  return out;
}

/** JAX's `_randint` for dtype int32, operation by operation in uint32/int32. */
function randintJax(key: Uint32Array, count: number, minval: number, maxval: number, options?: ThreefryOptions): Int32Array {
  const layout = { partitionable: isPartitionable(options) };
  const keys = splitKey(key, 2, layout);
  const higher = randomBits(keyAt(keys, 0), count, layout);
  const lower = randomBits(keyAt(keys, 1), count, layout);
  // JAX clips maxval to the dtype and remembers whether it was out of range
  // (maxval = 2^31 here), in which case the span is one larger.
  const outOfRange = maxval > INT32_MAX;
  const maxClipped = Math.min(maxval, INT32_MAX);
  let span = (maxClipped - minval) >>> 0;
  if (maxClipped <= minval) span = 1;
  if (outOfRange && maxClipped > minval) span = (span + 1) >>> 0;
  // XLA defines unsigned x % 0 as x; span is 0 exactly when the range is 2^32.
  const rem = (a: number, s: number): number => (s === 0 ? a : a % s);
  let multiplier = rem(2 ** 16, span);
  multiplier = rem(Math.imul(multiplier, multiplier) >>> 0, span);
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    // uint32 multiply and add wrap modulo 2^32, as in XLA (the source of the bias).
    const t = ((Math.imul(rem(higher[i], span), multiplier) >>> 0) + rem(lower[i], span)) >>> 0;
    out[i] = (minval + rem(t, span)) | 0;
  }
  return out;
}

/** Sort-key packing limit: key * 2^21 + index must stay below 2^53. */
const PACK_LIMIT = 2 ** 21;

/**
 * A uniformly random permutation of 0..n-1: JAX's
 * `jax.random.permutation(key, n)`, bit for bit under the same counter layout.
 *
 * Algorithm (JAX's `_shuffle`, a sort-based shuffle rather than
 * Fisher-Yates): for each of R = ceil(3 ln(n) / ln(2^32 - 1)) rounds (R = 1
 * for n <= 1625, 2 up to about 2.6 million), split the key into (next key,
 * subkey), draw one 32-bit sort key per position with `randomBits(subkey, n)`
 * and stably sort the current arrangement by those keys. Ties between equal
 * 32-bit keys keep their order; repeating the round makes that bias
 * negligible.
 *
 * @param key a key (`Uint32Array(2)`)
 * @param n length, an integer in [0, 2^31 - 1]
 * @param options counter layout; see {@link ThreefryOptions}
 * @returns an `Int32Array(n)` containing each of 0..n-1 once
 *
 * @example
 * const order = permutation(keyFromSeed(0), 10); // e.g. for shuffling a dataset
 */
export function permutation(key: Uint32Array, n: number, options?: ThreefryOptions): Int32Array {
  checkKey('permutation', key);
  checkCount('permutation', 'n', n);
  const layout = { partitionable: isPartitionable(options) };
  let perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const rounds = Math.ceil((3 * Math.log(Math.max(1, n))) / Math.log(0xffffffff));
  let k = key;
  for (let r = 0; r < rounds; r++) {
    const pair = splitKey(k, 2, layout);
    k = keyAt(pair, 0);
    const sortKeys = randomBits(keyAt(pair, 1), n, layout);
    const order = stableOrder(sortKeys);
    const next = new Int32Array(n);
    for (let t = 0; t < n; t++) next[t] = perm[order[t]];
    perm = next;
  }
  return perm;
}

/** Positions sorted by (sortKeys[position], position): a stable argsort. */
function stableOrder(sortKeys: Uint32Array): Uint32Array {
  const n = sortKeys.length;
  const order = new Uint32Array(n);
  if (n <= PACK_LIMIT) {
    // Packing (key, position) into one exactly representable double lets the
    // fast native numeric sort do the work, with ties broken by position.
    const packed = new Float64Array(n);
    for (let i = 0; i < n; i++) packed[i] = sortKeys[i] * PACK_LIMIT + i;
    packed.sort();
    for (let i = 0; i < n; i++) order[i] = packed[i] % PACK_LIMIT;
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => sortKeys[a] - sortKeys[b] || a - b);
  return order;
}
