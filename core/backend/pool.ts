/**
 * A pool of typed-array buffers that compiled programs recycle. Why: a training step allocates the
 * same intermediates every time, and a fresh large ArrayBuffer costs its page faults and the
 * garbage collector's external-memory accounting (the Adam update of a 100k-parameter kernel spent
 * more time getting fresh output memory than computing). A compiled program hands an intermediate
 * back once its last reader has run and no live value shares the buffer (core/backend/cpu-compile.ts);
 * kernels that overwrite every element of their output take buffers from here.
 *
 * Only buffers this pool handed out are ever taken back (`recyclable`), so arrays owned by a
 * caller, a literal cache or a user can never be recycled by mistake.
 */
import { allocate, type DType, type TypedArray } from '../dtype.js';

/** Upper bound on the bytes the pool keeps idle; beyond it returned buffers are left to the GC. */
const MAX_IDLE_BYTES = 64 * 1024 * 1024;
/** Buffers under this many elements are cheap to allocate and are not pooled. */
const MIN_ELEMENTS = 256;

const idle = new Map<string, TypedArray[]>();
let idleBytes = 0;
const handedOut = new WeakSet<TypedArray>();
let isIdle = new WeakSet<TypedArray>();
export const poolStats = { reused: 0, fresh: 0, returned: 0 };

const keyOf = (dtype: DType, size: number): string => `${dtype}:${size}`;

/**
 * A buffer of `size` elements whose contents are unspecified (the caller writes every element).
 */
export function takeBuffer(dtype: DType, size: number): TypedArray {
  if (size < MIN_ELEMENTS) return allocate(dtype, size);
  const list = idle.get(keyOf(dtype, size));
  const reused = list?.pop();
  if (reused !== undefined) {
    idleBytes -= reused.byteLength;
    isIdle.delete(reused);
    poolStats.reused++;
    return reused;
  }
  const fresh = allocate(dtype, size);
  handedOut.add(fresh);
  poolStats.fresh++;
  return fresh;
}

/** Whether `data` came from takeBuffer (and so may be given back when nothing else holds it). */
export function recyclable(data: TypedArray): boolean {
  return handedOut.has(data);
}

/** Gives a buffer from takeBuffer back; the caller guarantees nothing reads or writes it again. */
export function giveBuffer(data: TypedArray, dtype: DType): void {
  if (!handedOut.has(data) || isIdle.has(data) || idleBytes + data.byteLength > MAX_IDLE_BYTES) return;
  isIdle.add(data);
  const key = keyOf(dtype, data.length);
  let list = idle.get(key);
  if (list === undefined) {
    list = [];
    idle.set(key, list);
  }
  list.push(data);
  idleBytes += data.byteLength;
  poolStats.returned++;
}

/** Drops every idle buffer (tests; or to give memory back after a large job). */
export function clearBufferPool(): void {
  idle.clear();
  idleBytes = 0;
  isIdle = new WeakSet<TypedArray>();
}
