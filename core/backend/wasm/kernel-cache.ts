/**
 * What the generated elementwise and reduction kernels share: one linear memory (operands are
 * copied in, results copied out, within one call) and the cache of their compiled modules.
 */
import { keyJson } from '../../ir.js';

export type KernelFn = (...args: number[]) => void;

const PAGE = 65536;
let memory: WebAssembly.Memory | null = null;
let heap = new Float32Array(0);

/**
 * The shared memory, grown to at least `bytes` (geometrically), as a float32 view; the view is
 * valid until the next call (growing detaches the old buffer).
 */
export function kernelHeap(bytes: number): Float32Array {
  if (memory === null) memory = new WebAssembly.Memory({ initial: Math.max(16, Math.ceil(bytes / PAGE)) });
  const have = memory.buffer.byteLength;
  if (bytes > have) memory.grow(Math.max(Math.ceil(bytes / PAGE) - have / PAGE, have / PAGE));
  if (heap.buffer !== memory.buffer) heap = new Float32Array(memory.buffer);
  return heap;
}

const kernels = new Map<string, KernelFn>();
const specKeys = new WeakMap<object, string>();

/**
 * The `run` export of the module for (kind, spec, operand layouts), built from `bytes()` (a module
 * importing "env"."memory") and instantiated over the shared memory on first use.
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
    kernelHeap(PAGE);
    fn = new WebAssembly.Instance(new WebAssembly.Module(bytes()), { env: { memory: memory! } }).exports.run as KernelFn;
    kernels.set(key, fn);
  }
  return fn;
}
