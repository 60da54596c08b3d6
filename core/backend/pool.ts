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
import { arenaFree, releaseResidentArray, residentArray, residentOffset } from './wasm/kernel-cache.js';

/** Upper bound on the bytes the pool keeps idle; beyond it returned buffers are left to the GC. */
const MAX_IDLE_BYTES = 64 * 1024 * 1024;
/** Buffers under this many elements are cheap to allocate and are not pooled. */
const MIN_ELEMENTS = 256;

/** Most bytes of resident (arena) buffers handed out at once; beyond it buffers are ordinary. */
const RESIDENT_MAX_BYTES = 512 * 1024 * 1024;

/** Idle buffers by (resident, dtype) and then by length (numeric keys: no strings per call). */
const idle = new Map<number, TypedArray[]>();
let idleBytes = 0;
const handedOut = new WeakSet<TypedArray>();
let isIdle = new WeakSet<TypedArray>();
export const poolStats = { reused: 0, fresh: 0, returned: 0, resident: 0, residentBytes: 0, residentFinalized: 0 };

const DTYPE_CODE: Record<DType, number> = { float32: 0, float64: 1, int32: 2, uint32: 3, bool: 4 };
const keyOf = (dtype: DType, size: number, resident: boolean): number => (size * 5 + DTYPE_CODE[dtype]) * 2 + (resident ? 1 : 0);

/**
 * Resident buffers live in the kernels' arena (core/backend/wasm/kernel-cache.ts), where kernels
 * read and write them without copies. They are handed out only while a compiled program runs its
 * steps (residentScope), so they stay inside the program or the caller that asked to keep them;
 * a program's outermost call copies its results out (cpu-compile.ts). A resident buffer that is
 * dropped rather than given back returns to the arena when the garbage collector finalizes it.
 */
const finalizer =
  typeof FinalizationRegistry === 'undefined'
    ? null
    : new FinalizationRegistry<{ at: number; bytes: number }>(({ at, bytes }) => {
        poolStats.residentFinalized++;
        poolStats.residentBytes -= bytes;
        arenaFree(at, bytes);
      });
let residentAllowed = false;

/**
 * Runs `fn` with resident allocation on or off (compiled programs turn it on for their steps; the
 * eager interpreter inside a kernel turns it off, since it drops its intermediates).
 */
export function residentScope<T>(on: boolean, fn: () => T): T {
  const prev = residentAllowed;
  residentAllowed = on;
  try {
    return fn();
  } finally {
    residentAllowed = prev;
  }
}

/** Whether resident allocation is on (a compiled program's step is running). */
export function residentActive(): boolean {
  return residentAllowed;
}

/** Whether `data` lives in the kernels' arena. */
export function isResident(data: TypedArray): boolean {
  return residentOffset(data) >= 0;
}

function freeResident(data: TypedArray): void {
  finalizer?.unregister(data);
  poolStats.residentBytes -= data.byteLength;
  releaseResidentArray(data);
}

/**
 * A buffer of `size` elements whose contents are unspecified (the caller writes every element).
 */
export function takeBuffer(dtype: DType, size: number): TypedArray {
  if (size < MIN_ELEMENTS) return allocate(dtype, size);
  const resident = residentAllowed && finalizer !== null;
  const list = idle.get(keyOf(dtype, size, resident));
  const reused = list?.pop();
  if (reused !== undefined) {
    idleBytes -= reused.byteLength;
    isIdle.delete(reused);
    poolStats.reused++;
    return reused;
  }
  let fresh: TypedArray | null = null;
  if (resident && poolStats.residentBytes + size * 8 <= RESIDENT_MAX_BYTES) {
    fresh = residentArray(dtype, size);
    if (fresh !== null) {
      poolStats.resident++;
      poolStats.residentBytes += fresh.byteLength;
      finalizer.register(fresh, { at: fresh.byteOffset, bytes: fresh.byteLength }, fresh);
    }
  }
  fresh ??= allocate(dtype, size);
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
  if (!handedOut.has(data) || isIdle.has(data)) return;
  const resident = isResident(data);
  if (idleBytes + data.byteLength > MAX_IDLE_BYTES) {
    if (resident) {
      handedOut.delete(data);
      freeResident(data);
    }
    return;
  }
  isIdle.add(data);
  const key = keyOf(dtype, data.length, resident);
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
  for (const list of idle.values()) {
    for (const data of list) {
      if (!isResident(data)) continue;
      handedOut.delete(data);
      freeResident(data);
    }
  }
  idle.clear();
  idleBytes = 0;
  isIdle = new WeakSet<TypedArray>();
}
