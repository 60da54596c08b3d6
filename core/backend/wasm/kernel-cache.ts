/**
 * What the generated kernels share: one linear memory (the arena), a block allocator over it, and
 * the cache of compiled kernel modules.
 *
 * Why one memory with an allocator: a kernel can only read and write its own linear memory, so an
 * operand in an ordinary JS typed array must be copied in and its result copied out on every call.
 * For an Adam update over a 100k-element kernel those copies (7 x 400 kB) cost about as much as the
 * arithmetic. When the engine supports a shared WebAssembly memory (a SharedArrayBuffer: Node, and
 * cross-origin-isolated pages), growing the memory never detaches the views already made on it, so
 * typed arrays can live *inside* the arena ("resident" arrays): the buffer pool hands them out to
 * compiled programs (core/backend/pool.ts), and kernels then read and write them in place by byte
 * offset. Without a shared memory nothing is resident and every kernel copies, as before.
 *
 * Blocks are 64-byte aligned and carry 64 spare bytes, so a kernel's last vector may run past the
 * logical end of an operand or a result without touching a neighbour. Freed blocks go onto a list
 * per size class (a training step asks for the same sizes every time); a request its class cannot
 * serve takes a free block of up to twice its size before the memory grows, and any larger free
 * block once it cannot grow. The memory never shrinks (WebAssembly memories cannot).
 */
import type { DType, TypedArray } from '../../dtype.js';
import { keyJson } from '../../ir.js';

export type KernelFn = (...args: number[]) => void;

const PAGE = 65536;
/** Pages the arena may grow to (2 GiB); a shared memory must declare its maximum up front. */
export const ARENA_MAX_PAGES = 32768;
const ALIGN = 64;
/** Spare bytes after every block: room for a kernel's over-running last vector. */
const TAIL = 64;

let memory: WebAssembly.Memory | null = null;
let shared = false;
let heap = new Float32Array(0);
let heapU8 = new Uint8Array(0);
/** Every SharedArrayBuffer generation of the memory: views made on any of them are resident. */
const generations = new WeakSet<ArrayBufferLike>();
let top = ALIGN; // byte 0..63 stay unused, so a block offset is never 0
const freeLists = new Map<number, number[]>();
export const arenaStats = { blocks: 0, freeBytes: 0, grows: 0 };

function createMemory(): WebAssembly.Memory {
  try {
    if (typeof SharedArrayBuffer !== 'undefined') {
      const m = new WebAssembly.Memory({ initial: 16, maximum: ARENA_MAX_PAGES, shared: true });
      shared = m.buffer instanceof SharedArrayBuffer;
      if (shared) return m;
    }
  } catch {
    // No shared memory here (a page without cross-origin isolation): kernels copy.
  }
  shared = false;
  return new WebAssembly.Memory({ initial: 16 });
}

/** The arena's memory (created on first use). */
export function arenaMemory(): WebAssembly.Memory {
  if (memory === null) {
    memory = createMemory();
    generations.add(memory.buffer);
  }
  return memory;
}

/** How generated modules import the arena: the limits must match the memory's own. */
export function arenaImport(): true | { readonly sharedMaxPages: number } {
  arenaMemory();
  return shared ? { sharedMaxPages: ARENA_MAX_PAGES } : true;
}

/** Whether typed arrays may live in the arena (a shared memory, whose views survive growth). */
export function arenaResidentCapable(): boolean {
  arenaMemory();
  return shared;
}

/**
 * Whether the WebAssembly kernels' memory is shared (a SharedArrayBuffer), so that arrays stay in it
 * between kernels. False in a browser page that is not cross-origin isolated (served without the
 * COOP/COEP headers): the results are the same, but a CPU training step takes about twice as long.
 */
export function sharedMemoryArena(): boolean {
  return arenaResidentCapable();
}

/** A float32 view of the whole arena; valid until the next arenaAlloc (which may grow it). */
export function arenaF32(): Float32Array {
  const m = arenaMemory();
  if (heap.buffer !== m.buffer) {
    heap = new Float32Array(m.buffer);
    heapU8 = new Uint8Array(m.buffer);
    generations.add(m.buffer);
  }
  return heap;
}

/** A byte view of the whole arena, like arenaF32. */
export function arenaU8(): Uint8Array {
  arenaF32();
  return heapU8;
}

/**
 * A block's size class: small blocks in 64-byte steps; from 8 kB up, the next of 4/4, 5/4, 6/4 or
 * 7/4 times a power of two (at most 25% unused), so that the many sizes a long job asks for
 * (shapes of other batches, of evaluation runs) share free blocks instead of growing the memory.
 */
function rounded(bytes: number): number {
  const b = Math.max(bytes, 1);
  if (b <= 8192) return Math.ceil(b / ALIGN) * ALIGN + TAIL;
  const quarter = 2 ** (Math.floor(Math.log2(b)) - 2);
  return Math.ceil(b / quarter) * quarter + TAIL;
}

function grow(toBytes: number): boolean {
  const m = arenaMemory();
  const have = m.buffer.byteLength;
  if (toBytes <= have) return true;
  const maxBytes = (shared ? ARENA_MAX_PAGES : 65536) * PAGE;
  if (toBytes > maxBytes) return false;
  const need = Math.ceil((toBytes - have) / PAGE);
  // Geometric growth: a sequence of growing requests re-grows O(log) times.
  const want = Math.min(Math.max(need, Math.ceil(have / PAGE / 2)), maxBytes / PAGE - have / PAGE);
  try {
    m.grow(want);
  } catch {
    try {
      m.grow(need);
    } catch {
      return false;
    }
  }
  arenaStats.grows++;
  arenaF32();
  return true;
}

/**
 * A block of at least `bytes` bytes (64-byte aligned, with 64 spare bytes after it): its byte
 * offset, or -1 when the memory cannot grow that far. Give it back with arenaFree(offset, bytes).
 */
export function arenaAlloc(bytes: number): number {
  const size = rounded(bytes);
  const list = freeLists.get(size);
  if (list !== undefined && list.length > 0) {
    arenaStats.freeBytes -= size;
    arenaStats.blocks++;
    return list.pop()!;
  }
  // A free block of up to twice the size before new memory; when the memory cannot grow, any
  // larger free block (used whole).
  let best = -1;
  for (const [s, l] of freeLists) if (s > size && s <= 2 * size + TAIL && l.length > 0 && (best < 0 || s < best)) best = s;
  if (best < 0) {
    if (grow(top + size)) {
      const at = top;
      top += size;
      arenaStats.blocks++;
      return at;
    }
    for (const [s, l] of freeLists) if (s > size && l.length > 0 && (best < 0 || s < best)) best = s;
  }
  if (best < 0) return -1;
  const at = freeLists.get(best)!.pop()!;
  blockSizes.set(at, best);
  arenaStats.freeBytes -= best;
  arenaStats.blocks++;
  return at;
}

/** Blocks handed out larger than asked for (best fit), so arenaFree files them correctly. */
const blockSizes = new Map<number, number>();

/** Returns a block from arenaAlloc; nothing may read or write it afterwards. */
export function arenaFree(at: number, bytes: number): void {
  let size = rounded(bytes);
  const actual = blockSizes.get(at);
  if (actual !== undefined) {
    blockSizes.delete(at);
    size = actual;
  }
  let list = freeLists.get(size);
  if (list === undefined) {
    list = [];
    freeLists.set(size, list);
  }
  list.push(at);
  arenaStats.blocks--;
  arenaStats.freeBytes += size;
}

const constructors = { float32: Float32Array, float64: Float64Array, int32: Int32Array, uint32: Uint32Array, bool: Uint8Array } as const;
const ELEMENT_BYTES: Record<DType, number> = { float32: 4, float64: 8, int32: 4, uint32: 4, bool: 1 };

/**
 * A typed array of `size` elements living in the arena (contents unspecified), or null when the
 * arena is not shared or full. Free it with releaseResidentArray.
 */
export function residentArray(dtype: DType, size: number): TypedArray | null {
  if (!arenaResidentCapable()) return null;
  const at = arenaAlloc(size * ELEMENT_BYTES[dtype]);
  if (at < 0) return null;
  const buffer = arenaMemory().buffer;
  generations.add(buffer);
  return new constructors[dtype](buffer, at, size);
}

/**
 * Gives the block of a residentArray back to the arena. Throws for an array that does not live
 * there: its byte offset would be filed as a free block and handed out again over live data.
 */
export function releaseResidentArray(data: TypedArray): void {
  if (!generations.has(data.buffer))
    throw new RangeError(
      `releaseResidentArray: expected an array from residentArray, got a ${data.constructor.name} outside the kernels' arena`,
    );
  arenaFree(data.byteOffset, data.byteLength);
}

/**
 * Byte offset in the arena of `data[index]`, or -1 when `data` does not live in the arena (the
 * kernel must then copy it in).
 */
export function residentOffset(data: TypedArray, index = 0): number {
  return generations.has(data.buffer) ? data.byteOffset + index * data.BYTES_PER_ELEMENT : -1;
}

const kernels = new Map<string, KernelFn>();
const specKeys = new WeakMap<object, string>();

/**
 * The `run` export of the module for (kind, spec, operand layouts), built from `bytes()` (a module
 * importing "env"."memory" with arenaImport()'s limits) and instantiated over the arena on first use.
 */
export function cachedKernel(kind: string, spec: object, layouts: readonly string[], bytes: () => Uint8Array<ArrayBuffer>): KernelFn {
  let sk = specKeys.get(spec);
  if (sk === undefined) {
    // keyJson keeps -0, NaN and the infinities apart in literals.
    sk = keyJson(spec);
    specKeys.set(spec, sk);
  }
  const key = `${kind}|${layouts.map((l) => l[0]).join('')}|${sk}`;
  let fn = kernels.get(key);
  if (fn === undefined) {
    fn = new WebAssembly.Instance(new WebAssembly.Module(bytes()), { env: { memory: arenaMemory() } }).exports.run as KernelFn;
    kernels.set(key, fn);
  }
  return fn;
}
