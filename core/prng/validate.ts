/**
 * Argument checks shared by the PRNG functions.
 *
 * Every public function validates eagerly and names itself in the message, so a
 * bad argument fails at the call that introduced it rather than producing a
 * silently wrong stream (a wrapped seed, a truncated count) further down.
 */

/** Largest element count the samplers accept.
 *
 * Why 2^31 - 1: JAX's classic (non-partitionable) `random_bits` switches to a
 * different, block-wise counter layout once it needs 2^32 - 1 or more 32-bit
 * words, and float64 sampling needs two words per element. Capping the count
 * here keeps every layout on the single-block path we reproduce exactly; such
 * sizes are beyond what a JS typed array in memory is useful for anyway.
 */
export const MAX_COUNT = 2 ** 31 - 1;

/** Throws unless `key` is a `Uint32Array` of length 2. */
export function checkKey(fn: string, key: Uint32Array): void {
  if (!(key instanceof Uint32Array) || key.length !== 2) {
    const what = key instanceof Uint32Array ? `Uint32Array of length ${key.length}` : describe(key);
    throw new TypeError(`${fn}: key must be a Uint32Array of length 2, got ${what}`);
  }
}

/** Throws unless `n` is an integer in [0, max]. Returns it for chaining. */
export function checkCount(fn: string, name: string, n: number, max: number = MAX_COUNT): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) {
    throw new RangeError(`${fn}: ${name} must be an integer in [0, ${max}], got ${describe(n)}`);
  }
  return n;
}

/** Throws unless `v` is an integer in [0, 2^32). */
export function checkUint32(fn: string, name: string, v: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`${fn}: ${name} must be an integer in [0, 4294967295], got ${describe(v)}`);
  }
  return v;
}

/** Human-readable rendering of an arbitrary bad argument for error messages. */
export function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}`;
  if (Array.isArray(v)) return `Array(${v.length})`;
  return typeof v;
}
