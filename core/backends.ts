/**
 * The backend interface and the registry of backends. The frontend (traces, jit, NDArray, nn)
 * talks to a backend only through this interface: how a backend keeps memory (the CPU backend's
 * kernel arena and buffer pool, a device's buffers) stays behind its optional hooks.
 */
import type { DType, TypedArray } from './dtype.js';
import type { Jaxpr } from './ir.js';
import type { NDArray } from './ndarray.js';
import type { PrimParams, Primitive } from './primitives.js';

/**
 * A compiled jaxpr as a function of (consts, args). The program may recycle the buffers of the
 * arguments flagged in `donated` once it has read them for the last time (the caller promises
 * nothing else uses them). With `keepInBackend`, results may stay in memory the backend owns until
 * the caller passes them back donated or copies them out with the backend's `toHost`; without it,
 * results are ordinary host arrays.
 */
export type CompiledProgram = (consts: NDArray[], args: NDArray[], donated?: readonly boolean[], keepInBackend?: boolean) => NDArray[];

/** A buffer in a backend's own memory (a texture, a GPU buffer): opaque to the frontend. */
export interface DeviceBuffer {
  readonly dtype: DType;
  /** Elements. */
  readonly size: number;
}

/**
 * A backend's own memory, for backends whose arrays can live off the host (a GPU). The frontend
 * moves values in and out only through these; `NDArray` holds a buffer until it is read.
 */
export interface DeviceMemory {
  /** A buffer of `size` elements of `dtype`, filled from `initial` (an upload) when given. */
  malloc(dtype: DType, size: number, initial?: TypedArray): DeviceBuffer;
  /** The buffer's values on the host. Asynchronous: a WebGPU readback (mapAsync) cannot block. */
  read(buffer: DeviceBuffer): Promise<TypedArray>;
  /** The same, blocking, where the backend can (WebGL's readPixels); absent where it cannot (WebGPU). */
  readSync?(buffer: DeviceBuffer): TypedArray;
  /** Frees the buffer; the caller never uses it again. */
  free(buffer: DeviceBuffer): void;
}

/** Kernels, compilation and (optionally) memory management for one device. */
export interface Backend {
  readonly name: string;
  /** Runs one primitive on concrete arrays. */
  run<P extends Primitive>(prim: P, inputs: NDArray[], params: PrimParams[P]): NDArray[];
  /** Compiles a jaxpr (see CompiledProgram). */
  compile(jaxpr: Jaxpr): CompiledProgram;
  /**
   * Host memory of `size` elements (contents unspecified) for an input the caller fills and then
   * passes *donated* to this backend's compiled programs: the CPU backend hands out pooled memory
   * in its kernel arena, which a program reads in place and recycles. Absent: ordinary memory.
   */
  inputBuffer?(dtype: DType, size: number): TypedArray;
  /**
   * Ordinary host copies of the arrays that live in memory this backend owns (results kept with
   * `keepInBackend`); every other array is returned as it is. With `recycle`, the memory of the
   * arrays copied is reused at once (the caller never touches the originals again).
   */
  toHost?(xs: readonly NDArray[], recycle: boolean): NDArray[];
  /**
   * Takes back the memory of arrays the caller disposed (`dispose`): the frontend passes an array
   * only once no array the caller may hold shares its buffer (views included) and marks every
   * one deleted right after, so nothing reads or writes that memory through them again. A backend
   * reuses only memory it handed out itself (the CPU backend: buffers of its pool; a device
   * backend: its own device buffers) and ignores every other array; each registered backend is
   * asked. Absent: the memory is left to the garbage collector.
   */
  release?(arrays: readonly NDArray[]): void;
  /**
   * Memory of the backend's own, for arrays that live on a device (`toDevice`, `NDArray.read`).
   * Absent: the backend computes on host arrays (the CPU: synchronous all the way).
   */
  readonly memory?: DeviceMemory;
}

/** The backend registered under `name`, or an error naming `where` and the registered ones. */
export function backendNamed(name: string, where: string): Backend {
  const b = backends.get(name);
  if (!b) throw new Error(`${where}: unknown backend '${name}'; registered: ${[...backends.keys()].join(', ')}`);
  return b;
}

const backends = new Map<string, Backend>();
let active: Backend | null = null;

export function registerBackend(backend: Backend, makeDefault = false): void {
  backends.set(backend.name, backend);
  if (makeDefault || active === null) active = backend;
}

/** The backend eager ops and `jit` use now. */
export function getBackend(): Backend {
  if (active === null) throw new Error('spiketrace: no backend registered (import spiketrace/core)');
  return active;
}

/** Every registered backend, in registration order. */
export function registeredBackends(): readonly Backend[] {
  return [...backends.values()];
}

/** Selects a registered backend by name ('cpu', ...) for everything that follows. */
export function setBackend(name: string): void {
  const b = backends.get(name);
  if (!b) throw new Error(`setBackend: unknown backend '${name}'; registered: ${[...backends.keys()].join(', ')}`);
  active = b;
}

/**
 * Runs `fn` with backend `name` active (eager ops and jit inside it use it), then restores the
 * previous one, also when fn throws.
 *
 * @example
 * const y = withBackend('gpujs', () => matmul(a, b));
 */
export function withBackend<T>(name: string, fn: () => T): T {
  const b = backends.get(name);
  if (!b) throw new Error(`withBackend: unknown backend '${name}'; registered: ${[...backends.keys()].join(', ')}`);
  const previous = active;
  active = b;
  try {
    return fn();
  } finally {
    active = previous;
  }
}
