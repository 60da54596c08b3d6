/**
 * The gpu.js runtime: the GPU context and the mode that runs, device arrays (strided views of
 * flat float32 textures), uploads and readbacks (counted), and the kernel cache.
 */
import type { GPU, IKernelRunShortcut, Texture } from 'gpu.js';
import { allocate, type DType, type TypedArray } from '../../dtype.js';
import { makeView, NDArray } from '../../ndarray.js';
import type { DeviceBuffer, DeviceMemory } from '../../backends.js';
import { contiguousStrides } from '../../shape.js';
import { debugEnabled } from '../../debug.js';
import { UPLOAD_SOURCE } from './codegen.js';
import { evalAllowed } from '../eval-check.js';

/**
 * gpu.js is an optional peer dependency (a CPU-only install should not build the native 'gl'
 * module): it is loaded here, and a missing package becomes enableGpuBackend's reason, not an
 * import error of spiketrace/gpu.
 */
const gpuJs: { GPU: typeof GPU } | { missing: string } = await import('gpu.js').then(
  (m: { GPU?: typeof GPU; default?: { GPU?: typeof GPU } }) => {
    const ctor = m.GPU ?? m.default?.GPU;
    return ctor ? { GPU: ctor } : { missing: "the 'gpu.js' package does not export GPU (gpu.js ^2.24 expected)" };
  },
  (e: Error) => ({
    missing:
      "the optional peer dependency 'gpu.js' is not installed (npm install gpu.js; in Node also gl and a display, e.g. xvfb-run): " +
      e.message.split('\n')[0],
  }),
);

export type GpuMode = 'headlessgl' | 'webgl2' | 'webgl' | 'webgpu';

/** A value on the device: a strided view of a flat float32 texture of `bufSize` elements. */
export interface DevArray {
  readonly tex: Texture;
  readonly bufSize: number;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
  /**
   * A run-time part of the offset, passed to kernels as a uniform (not baked into their source):
   * a scan's per-step view of its stacked inputs, so every step runs the same kernels.
   */
  readonly dyn?: number;
  /** The host copy, once read back. */
  host?: NDArray;
}

export interface GpuTransferStats {
  /** Host -> device copies (one per array uploaded). */
  uploads: number;
  /** Device -> host copies (one per array read back). */
  readbacks: number;
  uploadBytes: number;
  readbackBytes: number;
  /** gpu.js kernel launches (uploads excluded). */
  kernelRuns: number;
  /** gpu.js kernels built (each is transpiled and compiled on its first run). */
  kernelsBuilt: number;
}

const stats: GpuTransferStats = { uploads: 0, readbacks: 0, uploadBytes: 0, readbackBytes: 0, kernelRuns: 0, kernelsBuilt: 0 };

/** Debug counters of the gpujs backend since the last reset. */
export function gpuTransferStats(): GpuTransferStats {
  return { ...stats };
}
export function resetGpuTransferStats(): void {
  for (const k of Object.keys(stats) as (keyof GpuTransferStats)[]) stats[k] = 0;
}

let gpu: GPU | null = null;
let activeMode: GpuMode | null = null;
const kernels = new Map<string, IKernelRunShortcut>();

export function currentMode(): GpuMode | null {
  return activeMode;
}

const KERNEL_SETTINGS = { pipeline: true, immutable: true, precision: 'single', tactic: 'precision', loopMaxIterations: 1 << 24 } as const;

/**
 * Builds (or finds) the kernel for `source` with a flat output of `size` elements, for texture
 * arguments of the sizes `args` describes: gpu.js bakes each texture argument's dimensions into
 * the shader when it first runs and never checks them again, so one source read from textures of
 * another size (a scan's xs of another length, a view of a bigger buffer) needs its own kernel.
 */
export function kernelFor(source: string, size: number, args = ''): IKernelRunShortcut {
  const key = `${size}|${args}|${source}`;
  let k = kernels.get(key);
  if (k === undefined) {
    if (gpu === null) throw new Error('gpujs backend: not enabled (call enableGpuBackend())');
    if (debugEnabled('kernels')) console.error(`[spiketrace gpujs kernel output=[${size}]]\n${source}`);
    k = gpu.createKernel(source, { ...KERNEL_SETTINGS, output: [size] });
    kernels.set(key, k);
    stats.kernelsBuilt++;
  }
  return k;
}

/**
 * Runs a compiled kernel on device arrays and scalars (float arguments); returns a new contiguous
 * device array. An input with a run-time offset (`dyn`) is passed as its texture followed by that
 * offset (the kernel's source declares the extra argument: codegen's `InputView.dynamic`).
 */
export function launch(source: string, inputs: readonly (DevArray | number)[], shape: readonly number[], dtype: DType): DevArray {
  const args: (DevArray | number)[] = [];
  for (const x of inputs) {
    args.push(x);
    if (typeof x !== 'number' && x.dyn !== undefined) args.push(x.dyn);
  }
  return launchArgs(source, args, shape, dtype);
}

/** Runs a kernel on its arguments exactly as given: device arrays pass their texture. */
export function launchArgs(source: string, args: readonly (DevArray | number)[], shape: readonly number[], dtype: DType): DevArray {
  const size = shape.reduce((a, c) => a * c, 1);
  const sizes: string[] = [];
  const raw = args.map((x) => {
    if (typeof x === 'number') return x;
    sizes.push(`${(x.tex as unknown as { size: number[] }).size.join('x')}:${x.bufSize}`);
    return x.tex;
  });
  const k = kernelFor(source, size, sizes.join(','));
  const tex = (k as unknown as (...a: (Texture | number)[]) => Texture)(...raw);
  stats.kernelRuns++;
  return { tex, bufSize: size, shape: shape.slice(), strides: contiguousStrides(shape), offset: 0, dtype };
}

/**
 * Uploads a host array. Broadcast (stride-0) axes stay broadcast: only the compact data moves.
 */
export function upload(x: NDArray): DevArray {
  const bAxes = x.shape.map((d, i) => d > 1 && x.strides[i] === 0);
  const compactShape = x.shape.map((d, i) => (bAxes[i] ? 1 : d));
  const compact = bAxes.some(Boolean) ? new NDArray(x.nd.hi(...compactShape), x.dtype) : x;
  const { tex, size } = uploadFlat(compact.toTyped());
  const strides = contiguousStrides(compactShape).map((s, i) => (bAxes[i] ? 0 : s));
  return { tex, bufSize: size, shape: x.shape.slice(), strides, offset: 0, dtype: x.dtype };
}

/** Uploads flat values as a float32 texture (one texel at least) and counts the transfer. */
function uploadFlat(values: ArrayLike<number>): { tex: Texture; size: number } {
  const data = values instanceof Float32Array ? values : Float32Array.from(values);
  const size = Math.max(1, data.length);
  const k = kernelFor(UPLOAD_SOURCE, size);
  const tex = k(data.length ? data : new Float32Array(1)) as unknown as Texture;
  stats.uploads++;
  stats.uploadBytes += data.byteLength;
  return { tex, size };
}

/**
 * Uploads the whole buffer behind a host view, so every view of the same buffer (a weight and its
 * transpose, an input and its reshape) shares one texture; the result has the view's strides.
 */
export function uploadBuffer(x: NDArray): DevArray {
  const { tex, size } = uploadFlat(x.data);
  return { tex, bufSize: size, shape: x.shape.slice(), strides: x.strides.slice(), offset: x.offset, dtype: x.dtype };
}

/** Reads a device array back into a host array of its dtype (a view with the same strides). */
export function readback(x: DevArray): NDArray {
  if (x.host !== undefined) return x.host;
  const raw = x.tex.toArray() as unknown as Float32Array;
  stats.readbacks++;
  stats.readbackBytes += x.bufSize * 4;
  let data: TypedArray = raw;
  if (x.dtype !== 'float32') {
    data = allocate(x.dtype, x.bufSize);
    for (let i = 0; i < x.bufSize; i++) data[i] = raw[i];
  } else if (raw.length !== x.bufSize) data = raw.slice(0, x.bufSize);
  x.host = new NDArray(makeView(data, x.shape.slice(), x.strides.slice(), x.offset + (x.dyn ?? 0)), x.dtype);
  return x.host;
}

/** A gpujs device buffer: a flat float32 texture (bools and integers held as floats, as in the kernels). */
export interface GpuBuffer extends DeviceBuffer {
  readonly tex: Texture;
}

function readBuffer(buffer: DeviceBuffer): TypedArray {
  const b = buffer as GpuBuffer;
  return readback({ tex: b.tex, bufSize: Math.max(1, b.size), shape: [b.size], strides: [1], offset: 0, dtype: b.dtype }).data.slice(
    0,
    b.size,
  ) as TypedArray;
}

/** The gpujs backend's device memory (core/backends.ts DeviceMemory); WebGL reads back synchronously. */
export const gpuMemory: DeviceMemory = {
  malloc(dtype, size, initial) {
    const { tex } = uploadFlat(initial ?? new Float32Array(size));
    const buffer: GpuBuffer = { dtype, size, tex };
    return buffer;
  },
  read: (buffer) => Promise.resolve(readBuffer(buffer)),
  readSync: readBuffer,
  free: (buffer) => (buffer as GpuBuffer).tex.delete(),
};

export function release(x: DevArray): void {
  x.tex.delete();
}

interface ModeProbe {
  mode: GpuMode;
  ok: boolean;
  reason: string;
}

/** Whether gpu.js can run `mode` here, checked by running a small kernel and reading it back. */
function probe(GPU: typeof import('gpu.js').GPU, mode: GpuMode): { gpu: GPU | null; result: ModeProbe } {
  const fail = (reason: string): { gpu: null; result: ModeProbe } => ({ gpu: null, result: { mode, ok: false, reason } });
  if (mode === 'webgpu') {
    return fail('gpu.js runs webgpu kernels asynchronously (Promise readback); the Backend interface is synchronous');
  }
  const supported = mode === 'headlessgl' ? GPU.isHeadlessGLSupported : mode === 'webgl2' ? GPU.isWebGL2Supported : GPU.isWebGLSupported;
  if (!supported) {
    const why =
      mode === 'headlessgl'
        ? "the native 'gl' package is missing or could not create a context (no X display? run under xvfb-run)"
        : `${mode} is not available in this environment`;
    return fail(why);
  }
  let g: GPU | null = null;
  try {
    g = new GPU({ mode });
    const k = g.createKernel('function probe(a) {\n  return a[this.thread.x] * 2.0 + 0.5;\n}', { ...KERNEL_SETTINGS, output: [4] });
    const tex = k(new Float32Array([1, 2, 3, -4])) as unknown as Texture;
    const out = tex.toArray() as unknown as Float32Array;
    tex.delete();
    const kind = (k as unknown as { kernel?: { constructor: { name: string } } }).kernel?.constructor.name ?? '';
    if (/cpu/i.test(kind)) return fail(`gpu.js fell back to its CPU kernel (${kind})`);
    const expect = [2.5, 4.5, 6.5, -7.5];
    if (!expect.every((v, i) => out[i] === v)) return fail(`probe kernel returned ${Array.from(out).join(',')}`);
    return { gpu: g, result: { mode, ok: true, reason: `gpu.js ${kind || mode} ran a probe kernel` } };
  } catch (e) {
    void g?.destroy().catch(() => undefined);
    return fail(`gpu.js failed: ${(e as Error).message.split('\n')[0]}`);
  }
}

export const probes: ModeProbe[] = [];

/** Tries the modes in order; the first that runs becomes the active one. */
export function startGpu(modes: readonly GpuMode[]): { ok: boolean; mode: GpuMode | null; reason: string } {
  if (gpu !== null && activeMode !== null) return { ok: true, mode: activeMode, reason: 'already enabled' };
  probes.length = 0;
  if ('missing' in gpuJs) return { ok: false, mode: null, reason: gpuJs.missing };
  if (!evalAllowed()) {
    return {
      ok: false,
      mode: null,
      reason:
        "gpu.js builds its kernels with new Function, which this page's Content-Security-Policy forbids " +
        "(script-src needs 'unsafe-eval' for the gpujs backend; the cpu backend works without it)",
    };
  }
  for (const m of modes) {
    const { gpu: g, result } = probe(gpuJs.GPU, m);
    probes.push(result);
    if (g !== null) {
      gpu = g;
      activeMode = m;
      return { ok: true, mode: m, reason: result.reason };
    }
  }
  return { ok: false, mode: null, reason: probes.length ? probes.map((p) => `${p.mode}: ${p.reason}`).join('; ') : 'no modes to try' };
}

export function defaultModes(): GpuMode[] {
  const isNode = typeof process !== 'undefined' && process.versions?.node !== undefined;
  return isNode ? ['headlessgl'] : ['webgl2', 'webgl', 'webgpu'];
}
