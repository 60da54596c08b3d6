/**
 * Float32 matmul for the CPU backend: a WebAssembly 128-bit SIMD kernel, generated at load time
 * (core/backend/wasm/kernel.ts, encoded by core/backend/wasm/encoder.ts), with a plain-JS fallback.
 *
 * All entry points share one signature over strided 2-D views:
 *
 *   C[cOffset + i*n + j] = sum_p A[aOffset + i*aRowStride + p*aColStride] * B[bOffset + p*bRowStride + j*bColStride]
 *
 * for i < m, j < n, p < k; any strides (transposed views, stride 0 for broadcasts, negative); C is
 * written as a contiguous row-major m x n block and never read. Every C[i, j] is accumulated in
 * float32, starting from +0, strictly in p order, with IEEE float32 products and sums (no zero
 * skipping, so 0 * Inf = NaN propagates): the SIMD kernel and the fallback give bit-identical
 * results (up to NaN payloads). C may share its buffer with A or B: the operands are copied into
 * the module's memory before C is written.
 *
 * How operands reach the kernel (one module instance, one linear memory grown geometrically and
 * reused; per call only a few typed-array views are created):
 * - A with aColStride 1 (row-major, also broadcast rows with aRowStride 0): rows copied with
 *   TypedArray.set, read in place by the micro-kernel;
 * - A with aRowStride 1 (a transposed view): copied, then packed into MR-row panels in WebAssembly;
 * - B with bColStride 1: copied, packed into NR-column panels in WebAssembly;
 * - B with bRowStride 1 (a transposed view, as in g @ W^T): copied, interleaved into panels in WebAssembly;
 * - any other strides: gathered element by element in JS (correct, slower).
 * Then Goto-style blocking (NC columns, MC rows, KC depth) over a 5 x 8 micro-kernel.
 *
 * @example
 * import { gemm, matmulBackendName } from './wasm/index.js';
 * // C (m x n) = A (m x k, row-major) @ B (k x n, row-major)
 * gemm(A, 0, k, 1, B, 0, n, 1, C, 0, m, k, n);
 * // A given transposed (stored k x m, as in x^T @ g): aRowStride = 1, aColStride = m
 * gemm(At, 0, 1, m, B, 0, n, 1, C, 0, m, k, n);
 * // B given transposed (W stored n x k, as in g @ W^T): bRowStride = 1, bColStride = k
 * gemm(A, 0, k, 1, W, 0, 1, k, C, 0, m, k, n);
 * matmulBackendName(); // 'wasm-simd' or 'js'
 */
import { DEFAULT_KERNEL, gemmModuleBytes, RELAXED_SIMD_PROBE, SIMD_PROBE, type KernelShape } from './kernel.js';
import { nodeBuiltin } from '../../node-builtin.js';
import { arenaAlloc, arenaF32, arenaFree, arenaImport, arenaMemory, arenaResidentCapable, residentOffset } from './kernel-cache.js';

export type GemmF32 = (
  A: Float32Array,
  aOffset: number,
  aRowStride: number,
  aColStride: number,
  B: Float32Array,
  bOffset: number,
  bRowStride: number,
  bColStride: number,
  C: Float32Array,
  cOffset: number,
  m: number,
  k: number,
  n: number,
) => void;

/** Largest K block: an MR x KC panel of A and a KC x NR panel of B stay in L1. */
const KC_MAX = 256;
/** Rows of A per M block (an MC x KC block of packed A stays in L2). */
const MC = 128;
/** Columns of B per N block (a KC x NC block of packed B stays in L2). */
const NC = 256;

/**
 * Whether `wasm` (default: the global WebAssembly) validates a module that uses 128-bit SIMD;
 * false when it is null (no WebAssembly) or its validate throws. Uncached; `wasmSimdAvailable`
 * is the cached answer.
 */
export function probeWasmSimd(wasm: Pick<typeof WebAssembly, 'validate'> | null | undefined = globalThis.WebAssembly): boolean {
  try {
    return typeof wasm === 'object' && wasm !== null && typeof wasm.validate === 'function' && wasm.validate(SIMD_PROBE) === true;
  } catch {
    return false;
  }
}

let simdProbe: boolean | undefined;

/** True when this engine validates a WebAssembly module that uses 128-bit SIMD (probed once). */
export function wasmSimdAvailable(): boolean {
  if (simdProbe === undefined) simdProbe = probeWasmSimd();
  return simdProbe;
}

interface KernelExports {
  memory: WebAssembly.Memory;
  block: (
    aPtr: number,
    aRow: number,
    aCol: number,
    aPanel: number,
    bPtr: number,
    bPanel: number,
    cPtr: number,
    ldc: number,
    mPanels: number,
    nPanels: number,
    kc: number,
    accumulate: number,
  ) => void;
  packCopyA: (src: number, ld: number, dst: number, lines: number, panels: number, panelBytes: number) => void;
  packCopyB: (src: number, ld: number, dst: number, lines: number, panels: number, panelBytes: number) => void;
  packInterleaveB: (src: number, ld: number, dst: number, lines: number, k: number, panelBytes: number) => void;
  /** `block` reading B unpacked, row-major with row stride `ldb`. */
  blockStridedB: (...args: [...Parameters<KernelExports['block']>, ldb: number]) => void;
  compact: (c: number, ldc: number, rowBytes: number, m: number) => void;
}

export interface WasmGemmOptions extends Partial<KernelShape> {
  /**
   * Threads for large products (default: 2 where worker threads, shared WebAssembly memory and a
   * second core exist, else 1; SPIKETRACE_THREADS=1 turns them off). Results do not depend on it:
   * the threads compute disjoint tiles of C, each exactly as one thread would.
   */
  threads?: number;
  /** Largest K block (default 256). */
  kcMax?: number;
  /** Rows of A per M block (default 128). */
  mc?: number;
  /** Columns of B per N block (default 256). */
  nc?: number;
}

const align64 = (bytes: number) => Math.ceil(bytes / 64) * 64;

/**
 * Copies `lines` lines of `len` floats, `ld` apart in X from `s0`, into heap at float index `dst`,
 * compactly (len apart), with TypedArray.set (a memcpy; JS element loops run ~20x slower).
 */
function copyLines(heap: Float32Array, dst: number, X: Float32Array, s0: number, ld: number, lines: number, len: number): void {
  if (ld === len || lines === 1) {
    heap.set(s0 === 0 && lines * len === X.length ? X : X.subarray(s0, s0 + lines * len), dst);
  } else if (len >= 16) {
    for (let l = 0, s = s0, d = dst; l < lines; l++, s += ld, d += len) heap.set(X.subarray(s, s + len), d);
  } else {
    for (let l = 0, s = s0, d = dst; l < lines; l++, s += ld, d += len) for (let j = 0; j < len; j++) heap[d + j] = X[s + j];
  }
}

/** How many products were split across threads (tests and benchmarks read it). */
export const gemmThreadStats = { split: 0 };

/**
 * Fewest multiply-adds for which a product is split across threads. Measured here: a 32x784x128
 * product alone runs 156 -> 96 us on two threads, yet an M1 training step got slower with its
 * products split (the halves of C and packed B land in the other core's cache, and waking the
 * helper costs tens of microseconds), so products of that size stay on one thread.
 */
const THREAD_MIN_WORK = 1 << 22;

/** Most MR-row panels of A for which a row-major B in the arena is read unpacked. */
const STRIDED_B_MAX_PANELS = 8;

/**
 * A call posted to the helper: an operation (OP_*) and up to 12 i32 arguments. Packing is posted
 * too, so that each thread packs the panels of its own half of C.
 */
export const CALL_INTS = 14;
const OP_BLOCK = 0;
const OP_PACK_A = 1;
const OP_PACK_B = 2;
const OP_INTERLEAVE_B = 3;
const OP_BLOCK_STRIDED_B = 4;

/**
 * How long (ms) the helper keeps polling for the next job after finishing one before it sleeps:
 * a training step posts its products a few hundred microseconds apart, and waking a sleeping
 * thread (a futex wake and a reschedule) costs tens of microseconds, as much as the half it runs.
 */
const HELPER_SPIN_MS = 2;

/** The gemm module's exports, indexed by the OP_* codes of the posted calls. */
const GEMM_OPS = ['block', 'packCopyA', 'packCopyB', 'packInterleaveB', 'blockStridedB'] as const;

/** The worker's code: run the posted calls (export `ops[call[0]]` of the module) over the shared memory, then signal. */
const HELPER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, names } = workerData;
const ctl = new Int32Array(control);
const w = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ops = names.map((name) => w[name]);
let seen = 0;
for (;;) {
  const until = performance.now() + ${HELPER_SPIN_MS};
  for (let i = 1; Atomics.load(ctl, 0) === seen; i++) if ((i & 1023) === 0 && performance.now() > until) break;
  Atomics.wait(ctl, 0, seen);
  const seq = Atomics.load(ctl, 0);
  if (seq < 0) break;
  seen = seq;
  const calls = new Int32Array(memory.buffer, ctl[2], ${CALL_INTS} * ctl[3]);
  for (let o = 0; o < calls.length; o += ${CALL_INTS}) {
    ops[calls[o]](calls[o + 1], calls[o + 2], calls[o + 3], calls[o + 4], calls[o + 5], calls[o + 6], calls[o + 7], calls[o + 8], calls[o + 9], calls[o + 10], calls[o + 11], calls[o + 12], calls[o + 13]);
  }
  Atomics.store(ctl, 1, seq);
  Atomics.notify(ctl, 1);
}`;

export interface HelperThread {
  /** Posts `count` calls (CALL_INTS i32 each) stored at byte `ptr`; returns the job's sequence number. */
  post(ptr: number, count: number): number;
  /** Waits for job `seq`; false if the helper is gone (the caller then runs the calls itself). */
  wait(seq: number): boolean;
}

interface WorkerLike {
  on(event: 'error' | 'exit', listener: () => void): void;
  unref(): void;
}
type WorkerThreadsModule = { Worker: new (source: string, options: { eval: true; workerData: unknown }) => WorkerLike };
type OsModule = { availableParallelism?: () => number; cpus: () => unknown[] };

/** Threads for large products: 2 where worker threads, shared memory and a second core exist (SPIKETRACE_THREADS overrides). */
export function defaultThreads(): number {
  const env = typeof process !== 'undefined' ? process.env?.SPIKETRACE_THREADS : undefined;
  if (env !== undefined && Number(env) >= 1) return Math.floor(Number(env));
  if (typeof SharedArrayBuffer === 'undefined' || nodeBuiltin<WorkerThreadsModule>('node:worker_threads') === undefined) return 1;
  const os = nodeBuiltin<OsModule>('node:os');
  const cores = os === undefined ? 1 : (os.availableParallelism?.() ?? os.cpus().length);
  return cores >= 2 ? 2 : 1;
}

/**
 * A worker thread that instantiates `module` over the shared `memory` and runs the calls posted to
 * it: CALL_INTS i32 each, the index of an export in `names`, then up to CALL_INTS - 1 arguments.
 */
export function startHelperThread(module: WebAssembly.Module, memory: WebAssembly.Memory, names: readonly string[]): HelperThread {
  const wt = nodeBuiltin<WorkerThreadsModule>('node:worker_threads');
  if (wt === undefined) throw new Error('no worker_threads');
  const control = new SharedArrayBuffer(16);
  const ctl = new Int32Array(control);
  const worker = new wt.Worker(HELPER_SOURCE, { eval: true, workerData: { module, memory, control, names } });
  let alive = true;
  worker.on('error', () => (alive = false));
  worker.on('exit', () => (alive = false));
  // A helper blocked in Atomics.wait must not keep the process alive.
  worker.unref();
  let seq = 0;
  return {
    post(ptr, count) {
      seq++;
      ctl[2] = ptr;
      ctl[3] = count;
      Atomics.store(ctl, 0, seq);
      Atomics.notify(ctl, 0);
      return seq;
    },
    wait(job) {
      // The helper's half takes about as long as this thread's: poll a little before sleeping.
      const until = performance.now() + 2;
      for (let i = 0; Atomics.load(ctl, 1) !== job; i++) if ((i & 255) === 0 && performance.now() > until) break;
      // Bounded waits, so that a helper that died (or never started) cannot hang the caller.
      for (let waited = 0; Atomics.load(ctl, 1) !== job; waited++) {
        if (!alive || waited > 2000) {
          alive = false;
          return false;
        }
        Atomics.wait(ctl, 1, Atomics.load(ctl, 1), 5);
      }
      return true;
    },
  };
}

/**
 * Builds a SIMD matmul with its own module instance and linear memory (reused and grown between
 * calls). Returns null when WebAssembly SIMD is unavailable or the module does not build.
 * `gemmF32` is the default-configured one; other micro-tiles are for benchmarks and tests.
 */
export function createWasmGemm(options: WasmGemmOptions = {}): GemmF32 | null {
  if (!wasmSimdAvailable()) return null;
  const fma = options.fma ?? false;
  if (fma && !relaxedSimdAvailable()) return null;
  // Without the separate product, a fused kernel has a register for a sixth row of accumulators
  // (12 + 2 B vectors + the A splat = 15 xmm): 6 x 8 ran ~6% faster than 5 x 8 here with FMA (one
  // thread, 320x784x128, best of 450 interleaved calls), while 5 x 8 fused was no faster than unfused.
  const shape: KernelShape = {
    mr: options.mr ?? (fma ? 6 : DEFAULT_KERNEL.mr),
    nr: options.nr ?? DEFAULT_KERNEL.nr,
    unroll: options.unroll ?? DEFAULT_KERNEL.unroll,
    fma,
  };
  const MR = shape.mr;
  const NR = shape.nr;
  const kcMax = Math.max(1, options.kcMax ?? KC_MAX);
  const mcPanels = Math.max(1, Math.floor((options.mc ?? MC) / MR));
  const ncPanels = Math.max(1, Math.floor((options.nc ?? NC) / NR));
  // The module works on the kernels' arena (core/backend/wasm/kernel-cache.ts): operands that
  // live there are packed or read in place, and a helper thread shares it when it is shared.
  let wasm!: KernelExports;
  let helper: HelperThread | null = null;
  // The helper starts with the first product large enough to split (a worker costs milliseconds
  // to start, and a workload of small products never needs it).
  let helperPending = false;
  let module: WebAssembly.Module;
  const memory = arenaMemory();
  try {
    module = new WebAssembly.Module(gemmModuleBytes(shape, arenaImport()));
    wasm = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
    helperPending = (options.threads ?? defaultThreads()) > 1 && arenaResidentCapable();
  } catch {
    return null;
  }

  return (A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n) => {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
      C.fill(0, cOffset, cOffset + m * n);
      return;
    }
    const mPanels = Math.ceil(m / MR);
    const nPanels = Math.ceil(n / NR);
    const mPad = mPanels * MR;
    const nPad = nPanels * NR;
    // Workspace layout: [A: row-major copy or packed panels | packed B | C | scratch for raw
    // copies | block calls for the helper]. Operands in the arena are not copied: row-major A is
    // read in place, and the packers read their sources in place.
    const aRowMajor = aColStride === 1;
    const aTransposed = !aRowMajor && aRowStride === 1;
    const bRowMajor = bColStride === 1;
    const bTransposed = !bRowMajor && bRowStride === 1;
    let aSrc = residentOffset(A, aOffset);
    const bSrc = residentOffset(B, bOffset);
    // The micro-kernel reads whole MR-row panels: rows past m must still be inside the memory.
    if (aRowMajor && aSrc >= 0 && aSrc + 4 * ((mPad - 1) * Math.max(aRowStride, 0) + k) > memory.buffer.byteLength) aSrc = -1;
    const aInPlace = aSrc >= 0 && aRowMajor && aRowStride >= 0;
    const aBase = 0;
    const bBase = align64(aBase + (aInPlace ? 0 : mPad * k * 4));
    const cBase = align64(bBase + nPad * k * 4);
    const sBase = align64(cBase + mPad * nPad * 4);
    const aScratch = aTransposed && aSrc < 0 ? m * k : 0;
    const bScratch0 = (bRowMajor || bTransposed) && bSrc < 0 ? n * k : 0;
    const nK = Math.ceil(k / kcMax);
    const kc = Math.ceil(k / nK);
    // The block calls a helper thread runs are written here (12 i32 each).
    const listBase = align64(sBase + (aScratch + bScratch0) * 4 + 64 * NR);
    const maxCalls = (Math.ceil(nPanels / ncPanels) + 1) * (Math.ceil(mPanels / mcPanels) + 1) * nK;
    const end = listBase + 4 * CALL_INTS * (maxCalls + 1);
    const ws = end > 0x7fff0000 ? -1 : arenaAlloc(end);
    if (ws < 0) {
      // More than a 32-bit memory can address (or the engine refuses to grow).
      gemmF32Fallback(A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n);
      return;
    }
    const h = arenaF32();
    const call = (op: number, args: readonly number[]): void => {
      if (op === OP_BLOCK) wasm.block(...(args as Parameters<KernelExports['block']>));
      else if (op === OP_PACK_A) wasm.packCopyA(...(args as Parameters<KernelExports['packCopyA']>));
      else if (op === OP_PACK_B) wasm.packCopyB(...(args as Parameters<KernelExports['packCopyB']>));
      else if (op === OP_BLOCK_STRIDED_B) wasm.blockStridedB(...(args as Parameters<KernelExports['blockStridedB']>));
      else wasm.packInterleaveB(...(args as Parameters<KernelExports['packInterleaveB']>));
    };

    // A: rows read in place (or a row-major copy), or MR-row panels packed from `aPack`.
    let aAt: number;
    let aRow: number;
    let aCol: number;
    let aPanel: number;
    let aPack: { src: number; ld: number } | null = null;
    if (aRowMajor) {
      if (aInPlace) {
        aAt = aSrc;
        aRow = 4 * aRowStride;
      } else {
        aAt = ws + aBase;
        copyLines(h, aAt >> 2, A, aOffset, aRowStride, m, k);
        aRow = 4 * k;
      }
      aCol = 4;
      aPanel = MR * aRow;
    } else {
      aAt = ws + aBase;
      aRow = 4;
      aCol = 4 * MR;
      aPanel = 4 * MR * k;
      if (aTransposed) {
        aPack = { src: aSrc, ld: 4 * aColStride };
        if (aSrc < 0) {
          aPack = { src: ws + sBase, ld: 4 * m };
          copyLines(h, aPack.src >> 2, A, aOffset, aColStride, k, m);
        }
      } else {
        // Any other strides (broadcast rows, strided slices): gather element by element.
        gatherPanels(h, aAt >> 2, A, aOffset, aRowStride, aColStride, m, mPad, k, MR);
      }
    }
    /** The packing of A's panels [p0, p1) (a transposed A), or null. */
    const packA = (p0: number, p1: number): [number, number[]] | null =>
      aPack === null || p1 <= p0 ? null : [OP_PACK_A, [aPack.src + p0 * MR * 4, aPack.ld, aAt + p0 * aPanel, k, p1 - p0, aPanel]];

    const splittable = m * k * n >= THREAD_MIN_WORK && (mPanels > 1 || nPanels > 1);
    if (splittable && helperPending) {
      helperPending = false;
      try {
        helper = startHelperThread(module, memory, GEMM_OPS);
      } catch {
        helper = null;
      }
    }
    const threaded = helper !== null && splittable;
    // B read in place, unpacked: a row-major B in the arena times few rows of A (packing it would
    // cost about as much as the product: x @ W for a batch of 32).
    const bStrided = bRowMajor && bSrc >= 0 && mPanels <= STRIDED_B_MAX_PANELS;
    // B: NR-column panels packed from `bPack` (row-major or transposed source).
    const bPanel = 4 * NR * k;
    const bAt = ws + bBase;
    const bScratch = ws + sBase + aScratch * 4;
    let bPack: { src: number; ld: number; op: number } | null = null;
    if (bStrided) {
      // Nothing to pack.
    } else if (bRowMajor) {
      bPack = { src: bSrc, ld: 4 * bRowStride, op: OP_PACK_B };
      if (bSrc < 0) {
        bPack = { src: bScratch, ld: 4 * n, op: OP_PACK_B };
        copyLines(h, bScratch >> 2, B, bOffset, bRowStride, k, n);
      }
    } else if (bTransposed) {
      bPack = { src: bSrc, ld: 4 * bColStride, op: OP_INTERLEAVE_B };
      if (bSrc < 0) {
        bPack = { src: bScratch, ld: 4 * k, op: OP_INTERLEAVE_B };
        copyLines(h, bScratch >> 2, B, bOffset, bColStride, n, k);
      }
    } else {
      gatherPanels(h, bAt >> 2, B, bOffset, bColStride, bRowStride, n, nPad, k, NR);
    }
    /** The packing of B's panels [p0, p1), or null. */
    const packB = (p0: number, p1: number): [number, number[]] | null => {
      if (bPack === null || p1 <= p0) return null;
      if (bPack.op === OP_PACK_B) return [OP_PACK_B, [bPack.src + p0 * NR * 4, bPack.ld, bAt + p0 * bPanel, k, p1 - p0, bPanel]];
      // Interleaving reads B's columns as lines: panel p0 starts at line p0 * NR.
      return [OP_INTERLEAVE_B, [bPack.src + p0 * NR * bPack.ld, bPack.ld, bAt + p0 * bPanel, Math.min(n, p1 * NR) - p0 * NR, k, bPanel]];
    };

    const ldc = nPad * 4;
    // C in place: when C lives in the arena, its rows are whole micro-tiles wide (n = nPad) and it
    // overlaps neither operand, the full MR-row panels are written straight into it; only a last,
    // partial panel goes to the workspace (a tile always writes MR rows) and is copied after.
    const cDirect = nPad === n ? residentOffset(C, cOffset) : -1;
    const overlaps = (X: Float32Array): boolean =>
      X.buffer === C.buffer && X.byteOffset < cDirect + 4 * m * n && cDirect < X.byteOffset + X.byteLength;
    const fullPanels = cDirect >= 0 && !overlaps(A) && !overlaps(B) ? Math.floor(m / MR) : 0;
    const cAt = (ip0: number): number => (ip0 < fullPanels ? cDirect : ws + cBase) + ip0 * MR * ldc;
    // Goto-style blocking over the panels [m0, m1) x [n0, n1): an NC-column block of packed B and
    // an MC-row block of A stay in L2; each K block of C is accumulated onto the previous one.
    const blockRange = (m0: number, m1: number, n0: number, n1: number, emit: (op: number, args: number[]) => void): void => {
      for (let jp0 = n0; jp0 < n1; jp0 += ncPanels) {
        const np = Math.min(ncPanels, n1 - jp0);
        for (let ip0 = m0; ip0 < m1; ip0 += mcPanels) {
          const mp = Math.min(mcPanels, m1 - ip0);
          for (let p0 = 0; p0 < k; p0 += kc) {
            const kcur = Math.min(kc, k - p0);
            if (bStrided) {
              const ldb = 4 * bRowStride;
              emit(OP_BLOCK_STRIDED_B, [
                aAt + ip0 * aPanel + p0 * aCol,
                aRow,
                aCol,
                aPanel,
                bSrc + jp0 * NR * 4 + p0 * ldb,
                NR * 4,
                cAt(ip0) + jp0 * NR * 4,
                ldc,
                mp,
                np,
                kcur,
                p0 > 0 ? 1 : 0,
                ldb,
              ]);
            } else
              emit(OP_BLOCK, [
                aAt + ip0 * aPanel + p0 * aCol,
                aRow,
                aCol,
                aPanel,
                bAt + jp0 * bPanel + p0 * NR * 4,
                bPanel,
                cAt(ip0) + jp0 * NR * 4,
                ldc,
                mp,
                np,
                kcur,
                p0 > 0 ? 1 : 0,
              ]);
          }
        }
      }
    };
    // One block call covers panels of one C region: split the rows where direct C ends.
    const blocks = (m0: number, m1: number, n0: number, n1: number, emit: (op: number, args: number[]) => void): void => {
      const cut = Math.min(Math.max(fullPanels, m0), m1);
      if (cut > m0) blockRange(m0, cut, n0, n1, emit);
      if (m1 > cut) blockRange(cut, m1, n0, n1, emit);
    };
    const run = (c: [number, number[]] | null): void => {
      if (c !== null) call(c[0], c[1]);
    };
    if (threaded && helper !== null) {
      // Two halves of C's tiles, along whichever axis has more panels. Each thread packs the
      // panels of the operand it splits (B's columns, or A's rows) for its own half, so no packing
      // stays serial; the operand both halves read is packed first. The helper's calls go into
      // memory for it, the main thread runs the other half, then waits for the helper.
      const splitN = nPanels >= mPanels;
      const mid = Math.ceil((splitN ? nPanels : mPanels) / 2);
      const list = new Int32Array(memory.buffer, ws + listBase, CALL_INTS * (maxCalls + 1));
      let count = 0;
      const record = (op: number, args: number[]): void => {
        list[CALL_INTS * count] = op;
        list.set(args, CALL_INTS * count + 1);
        count++;
      };
      const recordPack = (c: [number, number[]] | null): void => {
        if (c !== null) record(c[0], c[1]);
      };
      if (splitN) {
        run(packA(0, mPanels));
        recordPack(packB(mid, nPanels));
        blocks(0, mPanels, mid, nPanels, record);
      } else {
        run(packB(0, nPanels));
        recordPack(packA(mid, mPanels));
        blocks(mid, mPanels, 0, nPanels, record);
      }
      const job = helper.post(ws + listBase, count);
      gemmThreadStats.split++;
      if (splitN) {
        run(packB(0, mid));
        blocks(0, mPanels, 0, mid, call);
      } else {
        run(packA(0, mid));
        blocks(0, mid, 0, nPanels, call);
      }
      // If the helper died, its half runs here (same tiles, same values).
      if (!helper.wait(job)) {
        helper = null;
        for (let c = 0; c < count; c++) call(list[CALL_INTS * c], Array.from(list.subarray(CALL_INTS * c + 1, CALL_INTS * c + CALL_INTS)));
      }
    } else {
      run(packA(0, mPanels));
      run(packB(0, nPanels));
      blocks(0, mPanels, 0, nPanels, call);
    }

    if (nPad !== n) wasm.compact(ws + cBase, ldc, 4 * n, m);
    // Rows not written in place (all of them, or the last partial panel's).
    const r0 = fullPanels * MR;
    const c0 = (ws + cBase) >> 2;
    if (r0 < m) C.set(h.subarray(c0 + r0 * n, c0 + m * n), cOffset + r0 * n);
    arenaFree(ws, end);
  };
}

/** Whether the engine validates relaxed SIMD (f32x4.relaxed_madd). */
export function relaxedSimdAvailable(wasm: Pick<typeof WebAssembly, 'validate'> | null | undefined = globalThis.WebAssembly): boolean {
  try {
    return !!wasm && wasm.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

/** Fused multiply-add in the matmul kernel: off unless asked for (setGemmFma, SPIKETRACE_GEMM_FMA=1). */
let fmaWanted = typeof process !== 'undefined' && process.env?.SPIKETRACE_GEMM_FMA === '1';

/**
 * Opt-in fused multiply-add for float32 matmul (relaxed SIMD's f32x4.relaxed_madd) where the engine
 * has it (Node 20 needs --experimental-wasm-relaxed-simd). Each product's rounding then depends on
 * the engine and CPU (fused or not), so results are no longer bit-identical to the default kernel,
 * the JS fallback or another machine; they stay within float32 rounding of the exact sum. Returns
 * whether FMA is now in use (false where relaxed SIMD is missing).
 */
export function setGemmFma(on: boolean): boolean {
  if (on !== fmaWanted) {
    fmaWanted = on;
    defaultGemm = undefined;
  }
  return gemmFmaActive();
}

/** Whether the matmul kernel multiplies-adds with relaxed SIMD's f32x4.relaxed_madd now. */
export function gemmFmaActive(): boolean {
  getDefault();
  return defaultIsFma;
}

/** undefined: not built yet; null: SIMD unavailable or the module failed to build. */
let defaultGemm: GemmF32 | null | undefined;
let defaultIsFma = false;

function getDefault(): GemmF32 | null {
  if (defaultGemm === undefined) {
    const fused = fmaWanted && relaxedSimdAvailable() ? createWasmGemm({ fma: true }) : null;
    defaultIsFma = fused !== null;
    defaultGemm = fused ?? createWasmGemm();
  }
  return defaultGemm;
}

/**
 * Packs `lines` strided lines of `k` elements (line i starts at offset + i * lineStride, elements
 * elemStride apart) into panels of `width` interleaved lines, zero-filling up to `linesPad`: the
 * layout the micro-kernel reads, for operands whose strides the in-WASM packers do not cover.
 */
function gatherPanels(
  h: Float32Array,
  base: number,
  src: Float32Array,
  offset: number,
  lineStride: number,
  elemStride: number,
  lines: number,
  linesPad: number,
  k: number,
  width: number,
): void {
  for (let i = 0; i < linesPad; i++) {
    const r = i % width;
    let d = base + (i - r) * k + r;
    if (i >= lines) {
      for (let p = 0; p < k; p++, d += width) h[d] = 0;
      continue;
    }
    let s = offset + i * lineStride;
    for (let p = 0; p < k; p++, d += width, s += elemStride) h[d] = src[s];
  }
}

/**
 * The WebAssembly SIMD matmul (see the module comment for the contract). Throws when SIMD
 * WebAssembly is unavailable; `gemm` picks this or the fallback.
 */
export function gemmF32(
  A: Float32Array,
  aOffset: number,
  aRowStride: number,
  aColStride: number,
  B: Float32Array,
  bOffset: number,
  bRowStride: number,
  bColStride: number,
  C: Float32Array,
  cOffset: number,
  m: number,
  k: number,
  n: number,
): void {
  const g = getDefault();
  if (!g) throw new Error('gemmF32: WebAssembly SIMD is not available in this engine (use gemm or gemmF32Fallback)');
  g(A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n);
}

/**
 * Plain-JS matmul with the same contract and the same float32 rounding as `gemmF32` (products
 * rounded with Math.fround, sums rounded by the Float32Array store, p in order).
 */
export function gemmF32Fallback(
  A: Float32Array,
  aOffset: number,
  aRowStride: number,
  aColStride: number,
  B: Float32Array,
  bOffset: number,
  bRowStride: number,
  bColStride: number,
  C: Float32Array,
  cOffset: number,
  m: number,
  k: number,
  n: number,
): void {
  if (m <= 0 || n <= 0) return;
  // Write into a scratch block when C may alias an operand.
  const alias = C.buffer === A.buffer || C.buffer === B.buffer;
  const out = alias ? new Float32Array(m * n) : C;
  const co = alias ? 0 : cOffset;
  out.fill(0, co, co + m * n);
  const fround = Math.fround;
  for (let i = 0; i < m; i++) {
    const crow = co + i * n;
    let a = aOffset + i * aRowStride;
    let brow = bOffset;
    for (let p = 0; p < k; p++, a += aColStride, brow += bRowStride) {
      const av = A[a];
      if (bColStride === 1) {
        for (let j = 0; j < n; j++) out[crow + j] += fround(av * B[brow + j]);
      } else {
        for (let j = 0, b = brow; j < n; j++, b += bColStride) out[crow + j] += fround(av * B[b]);
      }
    }
  }
  if (alias) C.set(out, cOffset);
}

export type GemmBackend = 'wasm-simd' | 'js';

let forced: GemmBackend | 'auto' = 'auto';

/**
 * Chooses the implementation `gemm` runs: 'auto' (the default: SIMD when available), or one of
 * them explicitly (forcing 'wasm-simd' where it is unavailable still runs 'js').
 */
export function setGemmBackend(choice: GemmBackend | 'auto'): void {
  forced = choice;
}

/** The implementation `gemm` runs now: 'wasm-simd' or 'js'. */
export function matmulBackendName(): GemmBackend {
  if (forced === 'js') return 'js';
  return getDefault() ? 'wasm-simd' : 'js';
}

/** Float32 matmul through the fastest available implementation (see `matmulBackendName`). */
export const gemm: GemmF32 = (A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n) => {
  const f = matmulBackendName() === 'wasm-simd' ? gemmF32 : gemmF32Fallback;
  f(A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n);
};
