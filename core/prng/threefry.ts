/**
 * Threefry-2x32 with 20 rounds: the counter-based block function underneath
 * every key and sample in this module.
 *
 * Threefry (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011; reference code "Random123") is a keyed bijection on
 * 64-bit blocks. Random numbers are obtained by encrypting counters, so any
 * element of a stream can be computed independently of the others, which is
 * what makes splitting keys and vectorised sampling cheap and reproducible.
 *
 * The rotation constants (13, 15, 26, 6, 17, 29, 16, 24), the key-schedule
 * parity constant 0x1BD11BDA and the injection of the round number into the
 * second word are Random123's `threefry2x32_R(20, ...)`; JAX's
 * `jax._src.prng.threefry_2x32` computes the same function.
 */
import { checkUint32 } from './validate.js';

/** Key-schedule parity constant of Threefry (Skein's C240 for 32-bit words). */
const PARITY = 0x1bd11bda;

/**
 * Core loop: `(y0[i], y1[i]) = threefry(k0, k1; x0[i], x1[i])` for i < n.
 *
 * Written out by hand (5 groups of 4 rounds, each followed by a key injection)
 * because this is the hot path of every sampler; everything stays in int32
 * arithmetic (`| 0`), which V8 keeps in registers. Stores into the
 * Uint32Array outputs reinterpret the int32 bit patterns as unsigned.
 *
 * @internal Inputs are trusted: callers have validated lengths and key words.
 */
export function threefryInto(
  key0: number,
  key1: number,
  x0: ArrayLike<number>,
  x1: ArrayLike<number>,
  y0: Uint32Array,
  y1: Uint32Array,
  n: number,
): void {
  const k0 = key0 | 0;
  const k1 = key1 | 0;
  const k2 = (k0 ^ k1 ^ PARITY) | 0;
  for (let i = 0; i < n; i++) {
    let a = (x0[i] + k0) | 0;
    let b = (x1[i] + k1) | 0;
    // Rounds 1-4, rotations 13, 15, 26, 6; then inject (k1, k2 + 1).
    a = (a + b) | 0;
    b = ((b << 13) | (b >>> 19)) ^ a;
    a = (a + b) | 0;
    b = ((b << 15) | (b >>> 17)) ^ a;
    a = (a + b) | 0;
    b = ((b << 26) | (b >>> 6)) ^ a;
    a = (a + b) | 0;
    b = ((b << 6) | (b >>> 26)) ^ a;
    a = (a + k1) | 0;
    b = (b + k2 + 1) | 0;
    // Rounds 5-8, rotations 17, 29, 16, 24; then inject (k2, k0 + 2).
    a = (a + b) | 0;
    b = ((b << 17) | (b >>> 15)) ^ a;
    a = (a + b) | 0;
    b = ((b << 29) | (b >>> 3)) ^ a;
    a = (a + b) | 0;
    b = ((b << 16) | (b >>> 16)) ^ a;
    a = (a + b) | 0;
    b = ((b << 24) | (b >>> 8)) ^ a;
    a = (a + k2) | 0;
    b = (b + k0 + 2) | 0;
    // Rounds 9-12; inject (k0, k1 + 3).
    a = (a + b) | 0;
    b = ((b << 13) | (b >>> 19)) ^ a;
    a = (a + b) | 0;
    b = ((b << 15) | (b >>> 17)) ^ a;
    a = (a + b) | 0;
    b = ((b << 26) | (b >>> 6)) ^ a;
    a = (a + b) | 0;
    b = ((b << 6) | (b >>> 26)) ^ a;
    a = (a + k0) | 0;
    b = (b + k1 + 3) | 0;
    // Rounds 13-16; inject (k1, k2 + 4).
    a = (a + b) | 0;
    b = ((b << 17) | (b >>> 15)) ^ a;
    a = (a + b) | 0;
    b = ((b << 29) | (b >>> 3)) ^ a;
    a = (a + b) | 0;
    b = ((b << 16) | (b >>> 16)) ^ a;
    a = (a + b) | 0;
    b = ((b << 24) | (b >>> 8)) ^ a;
    a = (a + k1) | 0;
    b = (b + k2 + 4) | 0;
    // Rounds 17-20; inject (k2, k0 + 5).
    a = (a + b) | 0;
    b = ((b << 13) | (b >>> 19)) ^ a;
    a = (a + b) | 0;
    b = ((b << 15) | (b >>> 17)) ^ a;
    a = (a + b) | 0;
    b = ((b << 26) | (b >>> 6)) ^ a;
    a = (a + b) | 0;
    b = ((b << 6) | (b >>> 26)) ^ a;
    a = (a + k2) | 0;
    b = (b + k0 + 5) | 0;
    y0[i] = a;
    y1[i] = b;
  }
}

/**
 * Threefry-2x32-20 applied elementwise to counter pairs `(x0[i], x1[i])`
 * under the key `(key0, key1)`.
 *
 * Same function as Random123's `threefry2x32(ctr, key)` with 20 rounds and
 * JAX's `threefry2x32_p` primitive. Inputs are not modified.
 *
 * @param key0 first key word, an integer in [0, 2^32)
 * @param key1 second key word, an integer in [0, 2^32)
 * @param x0 first counter word of every block
 * @param x1 second counter word of every block (same length as `x0`)
 * @returns the two output words of every block, as new arrays
 * @throws RangeError for key words outside [0, 2^32); RangeError when the
 *   counter arrays differ in length; TypeError when they are not Uint32Arrays
 *
 * @example
 * // Random123 known-answer vector: key (0, 0), counter (0, 0).
 * const [y0, y1] = threefry2x32(0, 0, new Uint32Array([0]), new Uint32Array([0]));
 * // y0[0] === 0x6b200159, y1[0] === 0x99ba4efe
 */
export function threefry2x32(key0: number, key1: number, x0: Uint32Array, x1: Uint32Array): [Uint32Array, Uint32Array] {
  checkUint32('threefry2x32', 'key0', key0);
  checkUint32('threefry2x32', 'key1', key1);
  if (!(x0 instanceof Uint32Array) || !(x1 instanceof Uint32Array)) {
    throw new TypeError('threefry2x32: counters x0 and x1 must be Uint32Arrays');
  }
  if (x0.length !== x1.length) {
    throw new RangeError(`threefry2x32: x0 and x1 must have the same length, got ${x0.length} and ${x1.length}`);
  }
  const n = x0.length;
  const y0 = new Uint32Array(n);
  const y1 = new Uint32Array(n);
  threefryInto(key0, key1, x0, x1, y0, y1, n);
  return [y0, y1];
}
