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
 * float32, starting from +0, strictly in p order, with IEEE float32 products and sums (0 * Inf =
 * NaN propagates: steps whose A entries are all zero are skipped only where B is finite, where
 * skipping cannot change a bit): the SIMD kernel and the fallback give bit-identical results (up
 * to NaN payloads). C may share its buffer with A or B: the operands are copied into
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
import {
  arenaAlloc,
  arenaF32,
  arenaFree,
  arenaImport,
  arenaMemory,
  arenaResidentCapable,
  cachedKernel,
  residentOffset,
  type KernelFn,
} from './kernel-cache.js';

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

/**
 * A getter for a fixed kernel's `run` (one module per `kind`, built from `bytes()` on first use
 * over the arena), or null where WebAssembly SIMD is unavailable.
 */
export function simdKernel(kind: string, bytes: () => Uint8Array<ArrayBuffer>): () => KernelFn | null {
  let kernel: KernelFn | null | undefined;
  return () => {
    if (kernel === undefined) kernel = wasmSimdAvailable() ? cachedKernel(kind, { kernel: kind }, [], bytes) : null;
    return kernel;
  };
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
  packSkipA: (
    src: number,
    ld: number,
    dst: number,
    lines: number,
    panels: number,
    panelBytes: number,
    idx: number,
    idxPanelBytes: number,
    counts: number,
    lanes: number,
    bStep: number,
  ) => void;
  finiteRows: (ptr: number, rows: number, n: number, ld: number) => number;
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
  /** Most MR-row panels of A for which a row-major B in the arena is read unpacked (default 8). */
  stridedBMaxPanels?: number;
  /** Multiply-adds per chunk of a product split across threads (default 2^22). */
  chunkWork?: number;
  /** Fewest multiply-adds for which a product is split across threads (default 2^22). */
  threadMinWork?: number;
  /** How long (ms) the helper thread polls for the next product before it sleeps. */
  helperSpinMs?: number;
  /**
   * Skip the k steps where a packed panel of a transposed A is all zeros (default true; the
   * results are the same bits either way, see kernel.ts `packSkipA`).
   */
  skipZeroSteps?: boolean;
  /** Fewest multiply-adds (m k n) for which skipping is tried (default 2^18). */
  skipMinWork?: number;
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

/**
 * How many products were split across threads, and how many of their chunks the helper thread ran
 * (tests and benchmarks read it).
 */
export const gemmThreadStats = { split: 0, helperChunks: 0 };

/**
 * Fewest fraction of a product's steps (panel x k) that must be all zeros for the zero-skipping
 * kernel to run (its break-even is about 0.1; images leave ~0.35 of a 5-pixel panel's steps empty).
 */
const SKIP_MIN_FRACTION = 0.15;

/**
 * An estimate of the fraction of a transposed A's steps that are empty (all MR values of a panel's
 * step zero), from up to 16 x 16 (panel, step) samples of the source (k lines of m floats, `ld`
 * apart, from float index `src`). A dense A then costs ~2 us here instead of a packing pass for
 * nothing (~15 us for 784 x 32).
 */
function emptyStepFraction(h: Float32Array, src: number, ld: number, k: number, m: number, MR: number): number {
  const panels = Math.floor(m / MR);
  if (panels === 0) return 0;
  const ps = Math.min(16, panels);
  const ss = Math.min(16, k);
  let empty = 0;
  for (let a = 0; a < ps; a++) {
    const row = Math.floor((a * panels) / ps) * MR;
    for (let b = 0; b < ss; b++) {
      const at = src + Math.floor((b * k) / ss) * ld + row;
      let r = 0;
      while (r < MR && h[at + r] === 0) r++;
      if (r === MR) empty++;
    }
  }
  return empty / (ps * ss);
}

/** Fewest multiply-adds (m k n) for which skipping is tried: below it the sampling costs more than it can save. */
const SKIP_MIN_WORK = 1 << 18;

/** How many products ran the zero-skipping kernels (kernel.ts packSkipA; tests read it). */
export const gemmSkipStats = { products: 0 };

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
 * A call run by either thread: an operation (OP_*) and up to 12 i32 arguments. Packing is a call
 * too, so that the thread that computes a chunk of C packs that chunk's panels itself.
 */
export const CALL_INTS = 14;
const OP_BLOCK = 0;
const OP_PACK_A = 1;
const OP_PACK_B = 2;
const OP_INTERLEAVE_B = 3;
const OP_BLOCK_STRIDED_B = 4;
/** blockRows{r} is op OP_BLOCK_ROWS + 2 (r - 1), blockStridedBRows{r} the op after it. */
const OP_BLOCK_ROWS = 5;

/**
 * How long (ms) the helper keeps polling for the next job after finishing one before it sleeps:
 * long enough for products posted back to back, short of the gaps in a training step. A polling
 * thread takes a core from whatever else runs: on this machine, shared by several processes
 * (each session its own scheduling group), a helper that polled 2 ms after every job made a
 * training step with split products 2-3x slower, since the poller took half of its process's share
 * from the caller; a late helper only takes fewer chunks (startHelperThread).
 */
const HELPER_SPIN_MS = 0.25;
/** How long (ms) the caller polls for the helper's last chunks before it sleeps until notified. */
const CALLER_SPIN_MS = 0.25;

/**
 * Multiply-adds per chunk of a split product (~180 us on one core here): small enough that a
 * late helper holds back little, large enough that each chunk reuses B's panels over many rows
 * (320x784x128 from ordinary arrays, quiet machine: 964 us with 1M per chunk, 898 with 4M).
 */
const CHUNK_WORK = 1 << 22;

/**
 * The control block shared with the helper (Int32 slots). A job is a list of chunks, each a run
 * of calls. The caller claims chunks from the front and the helper from the back of one range
 * until they meet, so a helper that is late (asleep, or its core busy with another process) only
 * takes fewer chunks instead of stalling the caller, which never waits for a chunk nobody has
 * started; and in a training loop each thread keeps getting about the same chunks (the same
 * columns of a weight matrix stay in its core's cache).
 */
const CTL_SEQ = 0; // job number (posted by the caller; -1 stops the helper)
const CTL_JOB = 1; // byte address of the job: [nChunks + 1 chunk starts (call index) | nChunks done flags | calls]
const CTL_CHUNKS = 2; // chunks in the job
const CTL_RANGE = 3; // unclaimed chunks [front, back), as back << 16 | front
const CTL_DONE = 4; // chunks finished
const CTL_READY = 5; // chunks >= this one have their operands in place (the caller copies them from the back)
const CTL_INTS = 8;
/** Most chunks in a job (CTL_RANGE's 16-bit halves, kept positive). */
const MAX_CHUNKS = 0x7fff;

/** The worker's code: claim chunks of the posted job, run their calls over the shared memory. */
const HELPER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, spinMs } = workerData;
const ctl = new Int32Array(control);
const w = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ops = [w.block, w.packCopyA, w.packCopyB, w.packInterleaveB, w.blockStridedB];
for (let r = 1; w['blockRows' + r]; r++) ops.push(w['blockRows' + r], w['blockStridedBRows' + r]);
let seen = 0;
for (;;) {
  const until = performance.now() + spinMs;
  for (let i = 1; Atomics.load(ctl, ${CTL_SEQ}) === seen; i++) if ((i & 1023) === 0 && performance.now() > until) break;
  Atomics.wait(ctl, ${CTL_SEQ}, seen);
  const seq = Atomics.load(ctl, ${CTL_SEQ});
  if (seq < 0) break;
  seen = seq;
  for (;;) {
    const v = Atomics.load(ctl, ${CTL_RANGE});
    if (v >>> 16 <= (v & 0xffff)) break;
    if (Atomics.compareExchange(ctl, ${CTL_RANGE}, v, v - 0x10000) !== v) continue;
    // Claimed chunk c of the job posted now: that job cannot end before c is reported done, so
    // its description, read after the claim, is current (even if this thread has not seen its
    // number yet).
    const c = (v >>> 16) - 1;
    // Its operands may still be being copied in by the caller (CTL_READY).
    while (Atomics.load(ctl, ${CTL_READY}) > c);
    const job = Atomics.load(ctl, ${CTL_JOB}) >> 2;
    const chunks = Atomics.load(ctl, ${CTL_CHUNKS});
    const mem = new Int32Array(memory.buffer);
    const calls = job + 2 * chunks + 1;
    for (let o = calls + ${CALL_INTS} * mem[job + c], e = calls + ${CALL_INTS} * mem[job + c + 1]; o < e; o += ${CALL_INTS}) {
      ops[mem[o]](mem[o + 1], mem[o + 2], mem[o + 3], mem[o + 4], mem[o + 5], mem[o + 6], mem[o + 7], mem[o + 8], mem[o + 9], mem[o + 10], mem[o + 11], mem[o + 12], mem[o + 13]);
    }
    Atomics.store(mem, job + chunks + 1 + c, 1);
    Atomics.add(ctl, ${CTL_DONE}, 1);
    Atomics.notify(ctl, ${CTL_DONE});
  }
}`;

interface HelperThread {
  /**
   * Runs a job: `chunks` chunks whose calls are at `job` in the memory (the layout of CTL_JOB), the
   * helper claiming chunks as this thread does; `run(c)` runs chunk c here. `prepare(c)`, when
   * given, puts chunk c's operands in place: this thread calls it for every chunk, from the last
   * to the first, before claiming any, and the helper starts a chunk only once it is prepared.
   * Returns when all chunks are done.
   */
  runJob(job: number, chunks: number, run: (c: number) => void, prepare: ((c: number) => void) | null): void;
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

/** Whether a helper worker still runs: false once it failed or exited, or was given up on. */
interface WorkerLife {
  alive: boolean;
}

/** Starts a worker from `source` (eval'd) with `workerData`; it never keeps the process alive. */
function spawnWorker(source: string, workerData: Record<string, unknown>): WorkerLife {
  const wt = nodeBuiltin<WorkerThreadsModule>('node:worker_threads');
  if (wt === undefined) throw new Error('no worker_threads');
  const worker = new wt.Worker(source, { eval: true, workerData });
  const life: WorkerLife = { alive: true };
  worker.on('error', () => (life.alive = false));
  worker.on('exit', () => (life.alive = false));
  // A helper blocked in Atomics.wait must not keep the process alive.
  worker.unref();
  return life;
}

function startHelperThread(module: WebAssembly.Module, memory: WebAssembly.Memory, spinMs: number): HelperThread {
  const control = new SharedArrayBuffer(4 * CTL_INTS);
  const ctl = new Int32Array(control);
  const life = spawnWorker(HELPER_SOURCE, { module, memory, control, spinMs });
  let seq = 0;
  return {
    runJob(job, chunks, run, prepare) {
      const mem = new Int32Array(memory.buffer);
      const flags = (job >> 2) + chunks + 1;
      mem.fill(0, flags, flags + chunks);
      seq = (seq + 1) & 0x3fffffff || 1;
      Atomics.store(ctl, CTL_JOB, job);
      Atomics.store(ctl, CTL_CHUNKS, chunks);
      Atomics.store(ctl, CTL_DONE, 0);
      Atomics.store(ctl, CTL_READY, prepare === null ? 0 : chunks);
      Atomics.store(ctl, CTL_RANGE, chunks << 16);
      Atomics.store(ctl, CTL_SEQ, seq);
      if (life.alive) Atomics.notify(ctl, CTL_SEQ);
      if (prepare !== null)
        for (let c = chunks - 1; c >= 0; c--) {
          prepare(c);
          Atomics.store(ctl, CTL_READY, c);
        }
      let here = 0;
      for (;;) {
        const v = Atomics.load(ctl, CTL_RANGE);
        const c = v & 0xffff;
        if (v >>> 16 <= c) break;
        if (Atomics.compareExchange(ctl, CTL_RANGE, v, v + 1) !== v) continue;
        run(c);
        here++;
        Atomics.store(mem, flags + c, 1);
        Atomics.add(ctl, CTL_DONE, 1);
      }

      // Only chunks the helper has started remain: poll briefly (one chunk takes tens of
      // microseconds), then sleep in bounded waits, so that a helper that died mid-chunk cannot
      // hang the caller (its chunks then run here: same tiles, same values).
      const until = performance.now() + CALLER_SPIN_MS;
      for (let i = 0; Atomics.load(ctl, CTL_DONE) < chunks; i++) if ((i & 255) === 0 && performance.now() > until) break;
      for (let waited = 0; ; waited++) {
        const done = Atomics.load(ctl, CTL_DONE);
        if (done >= chunks) {
          gemmThreadStats.helperChunks += chunks - here;
          return;
        }
        if (!life.alive || waited > 2000) break;
        Atomics.wait(ctl, CTL_DONE, done, 5);
      }
      life.alive = false;
      for (let c = 0; c < chunks; c++) if (Atomics.load(mem, flags + c) === 0) run(c);
      gemmThreadStats.helperChunks += Atomics.load(ctl, CTL_DONE) - here;
    },
  };
}

/** The worker's code for startCallThread: run the posted calls (export `ops[call[0]]` of the module) over the shared memory, then signal. */
const CALL_THREAD_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, names, spinMs } = workerData;
const ctl = new Int32Array(control);
const w = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ops = names.map((name) => w[name]);
let seen = 0;
for (;;) {
  const until = performance.now() + spinMs;
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

/** A second thread that runs a fixed half of a job (the sparse kernel's row blocks). */
export interface CallThread {
  /** Posts `count` calls (CALL_INTS i32 each) stored at byte `ptr`; returns the job's sequence number. */
  post(ptr: number, count: number): number;
  /** Waits for job `seq`; false if the helper is gone (the caller then runs the calls itself). */
  wait(seq: number): boolean;
}

/**
 * A worker thread that instantiates `module` over the shared `memory` and runs the calls posted to
 * it: CALL_INTS i32 each, the index of an export in `names`, then up to CALL_INTS - 1 arguments.
 * Simpler than the gemm's chunk-claiming helper: for kernels whose halves are long (milliseconds),
 * where a late start costs little against the half itself. It polls as briefly as the gemm's
 * helper after a job (HELPER_SPIN_MS), for the same reason: a poller takes a shared core.
 */
export function startCallThread(module: WebAssembly.Module, memory: WebAssembly.Memory, names: readonly string[]): CallThread {
  const control = new SharedArrayBuffer(16);
  const ctl = new Int32Array(control);
  const life = spawnWorker(CALL_THREAD_SOURCE, { module, memory, control, names, spinMs: HELPER_SPIN_MS });
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
      const until = performance.now() + CALLER_SPIN_MS;
      for (let i = 0; Atomics.load(ctl, 1) !== job; i++) if ((i & 255) === 0 && performance.now() > until) break;
      // Bounded waits, so that a helper that died (or never started) cannot hang the caller.
      for (let waited = 0; Atomics.load(ctl, 1) !== job; waited++) {
        if (!life.alive || waited > 2000) {
          life.alive = false;
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
/** A packing or block call: an op (OP_*) and its arguments. */
type KernelCall = [op: number, args: number[]];

/**
 * One product's layout, as the calls that pack its operands and run its blocks read it. One per
 * gemm, refilled by every call (products do not nest), with methods rather than closures made per
 * call: under esbuild's keepNames (tsx, which runs the examples and benchmarks) every closure
 * created costs a defineProperty of its name, ~25 us of an M1 training step's ~1 ms here.
 */
class GemmPlan {
  k = 0;
  n = 0;
  mPanels = 0;
  mRem = 0;
  kc = 0;
  /** A: where its panels start, byte steps between rows, k steps and panels; packed from `aPack`. */
  aAt = 0;
  aRow = 0;
  aCol = 0;
  aPanel = 0;
  aPack: { src: number; ld: number } | null = null;
  /** B: packed panels at bAt (from `bPack`), or read in place at bStridedAt, rows ldb bytes apart. */
  bAt = 0;
  bPanel = 0;
  bPack: { src: number; ld: number; op: number } | null = null;
  bStrided = false;
  bStridedAt = 0;
  ldb = 0;
  /** C's first tile and its row stride. */
  c0 = 0;
  ldc = 0;
  /** Zero-step skipping: the counts and lists of A's panels. */
  skip = false;
  counts0 = 0;
  lists0 = 0;
  listPanel = 0;

  constructor(
    readonly MR: number,
    readonly NR: number,
    readonly mcPanels: number,
    readonly ncPanels: number,
    readonly opBlockSkip: number,
  ) {}

  /** The packing of A's panels [p0, p1) (a transposed A), or null. */
  packA(p0: number, p1: number): KernelCall | null {
    const a = this.aPack;
    if (a === null || p1 <= p0) return null;
    return [OP_PACK_A, [a.src + p0 * this.MR * 4, a.ld, this.aAt + p0 * this.aPanel, this.k, p1 - p0, this.aPanel]];
  }

  /** The packing of B's panels [p0, p1), or null. */
  packB(p0: number, p1: number): KernelCall | null {
    const b = this.bPack;
    if (b === null || p1 <= p0) return null;
    const NR = this.NR;
    if (b.op === OP_PACK_B) return [OP_PACK_B, [b.src + p0 * NR * 4, b.ld, this.bAt + p0 * this.bPanel, this.k, p1 - p0, this.bPanel]];
    // Interleaving reads B's columns as lines: panel p0 starts at line p0 * NR.
    return [
      OP_INTERLEAVE_B,
      [b.src + p0 * NR * b.ld, b.ld, this.bAt + p0 * this.bPanel, Math.min(this.n, p1 * NR) - p0 * NR, this.k, this.bPanel],
    ];
  }

  /**
   * Goto-style blocking over the panels [m0, m1) x [n0, n1): an NC-column block of packed B and
   * an MC-row block of A stay in L2; each K block of C is accumulated onto the previous one. The
   * last panel of A holds mRem rows (0: full); its tiles run the mRem-row kernels.
   */
  blockRange(m0: number, m1: number, n0: number, n1: number, emit: (op: number, args: number[]) => void): void {
    const { mcPanels, ncPanels, mRem, mPanels, k, kc, MR } = this;
    for (let jp0 = n0; jp0 < n1; jp0 += ncPanels) {
      const np = Math.min(ncPanels, n1 - jp0);
      for (let ip0 = m0; ip0 < m1; ip0 += mcPanels) {
        const mp = Math.min(mcPanels, m1 - ip0);
        const partial = mRem > 0 && ip0 + mp === mPanels;
        const full = partial ? mp - 1 : mp;
        for (let p0 = 0; p0 < k; p0 += kc) {
          const kcur = Math.min(kc, k - p0);
          if (full > 0) this.one(ip0, full, jp0, np, p0, kcur, MR, emit);
          if (partial) this.one(ip0 + full, 1, jp0, np, p0, kcur, mRem, emit);
        }
      }
    }
  }

  private one(
    ip0: number,
    mp: number,
    jp0: number,
    np: number,
    p0: number,
    kcur: number,
    rows: number,
    emit: (op: number, args: number[]) => void,
  ): void {
    const { MR, NR, aAt, aPanel, aRow, aCol, bStrided, ldc } = this;
    const cAt = this.c0 + ip0 * MR * ldc + jp0 * NR * 4;
    if (this.skip) {
      // The lists cover all of k: one call, at the first K block.
      if (p0 > 0) return;
      const op = rows === MR ? this.opBlockSkip : this.opBlockSkip + rows;
      const b = this.bAt + jp0 * this.bPanel;
      emit(op, [
        aAt + ip0 * aPanel,
        aRow,
        aCol,
        aPanel,
        b,
        this.bPanel,
        cAt,
        ldc,
        mp,
        np,
        this.counts0 + 4 * ip0,
        0,
        this.lists0 + ip0 * this.listPanel,
        this.listPanel,
      ]);
      return;
    }
    // Op: block or blockStridedB for full panels, their `rows`-row versions for the last one.
    const op = rows === MR ? (bStrided ? OP_BLOCK_STRIDED_B : OP_BLOCK) : OP_BLOCK_ROWS + 2 * (rows - 1) + (bStrided ? 1 : 0);
    const args = [
      aAt + ip0 * aPanel + p0 * aCol,
      aRow,
      aCol,
      aPanel,
      bStrided ? this.bStridedAt + jp0 * NR * 4 + p0 * this.ldb : this.bAt + jp0 * this.bPanel + p0 * NR * 4,
      bStrided ? NR * 4 : this.bPanel,
      cAt,
      ldc,
      mp,
      np,
      kcur,
      p0 > 0 ? 1 : 0,
    ];
    if (bStrided) args.push(this.ldb);
    emit(op, args);
  }
}

/** Whether X shares C's bytes [at, at + bytes) in the same buffer. */
function overlapsBytes(X: Float32Array, C: Float32Array, at: number, bytes: number): boolean {
  return X.buffer === C.buffer && X.byteOffset < at + bytes && at < X.byteOffset + X.byteLength;
}

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
  /** blockSkip's op; blockSkipRows{r} is OP_BLOCK_SKIP + r. */
  const OP_BLOCK_SKIP = OP_BLOCK_ROWS + 2 * (MR - 1);
  const kcMax = Math.max(1, options.kcMax ?? KC_MAX);
  const mcPanels = Math.max(1, Math.floor((options.mc ?? MC) / MR));
  const ncPanels = Math.max(1, Math.floor((options.nc ?? NC) / NR));
  const stridedBMax = options.stridedBMaxPanels ?? STRIDED_B_MAX_PANELS;
  const chunkWork = Math.max(1, options.chunkWork ?? CHUNK_WORK);
  const threadMinWork = options.threadMinWork ?? THREAD_MIN_WORK;
  const helperSpinMs = Math.max(0, options.helperSpinMs ?? HELPER_SPIN_MS);
  const skipZeroSteps = options.skipZeroSteps ?? true;
  const skipMinWork = options.skipMinWork ?? SKIP_MIN_WORK;
  // The module works on the kernels' arena (core/backend/wasm/kernel-cache.ts): operands that
  // live there are packed or read in place, and a helper thread shares it when it is shared.
  let wasm!: KernelExports;
  let helper: HelperThread | null = null;
  // The helper starts with the first product large enough to split (a worker costs milliseconds
  // to start, and a workload of small products never needs it).
  let helperPending = false;
  let module: WebAssembly.Module;
  const ops: KernelFn[] = [];
  const memory = arenaMemory();
  try {
    module = new WebAssembly.Module(gemmModuleBytes(shape, arenaImport()));
    wasm = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
    // The calls by op number (OP_*), as the helper thread's table has them.
    const byName = wasm as unknown as Record<string, KernelFn | undefined>;
    ops.push(...([wasm.block, wasm.packCopyA, wasm.packCopyB, wasm.packInterleaveB, wasm.blockStridedB] as KernelFn[]));
    for (let r = 1; r < MR; r++) ops.push(byName[`blockRows${r}`]!, byName[`blockStridedBRows${r}`]!);
    // The zero-skipping block loops (this thread only): full panels, then r-row ones.
    ops.push(byName.blockSkip!);
    for (let r = 1; r < MR; r++) ops.push(byName[`blockSkipRows${r}`]!);
    helperPending = (options.threads ?? defaultThreads()) > 1 && arenaResidentCapable();
  } catch {
    return null;
  }
  const plan = new GemmPlan(MR, NR, mcPanels, ncPanels, OP_BLOCK_SKIP);
  const call = (op: number, args: readonly number[]): void => ops[op](...args);
  const run = (c: KernelCall | null): void => {
    if (c !== null) call(c[0], c[1]);
  };

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
    const splittable = m * k * n >= threadMinWork && (mPanels > 1 || nPanels > 1);
    if (splittable && helperPending) {
      helperPending = false;
      try {
        helper = startHelperThread(module, memory, helperSpinMs);
      } catch {
        helper = null;
      }
    }
    const threaded = helper !== null && splittable;
    // A split product is cut along whichever axis has more panels into chunks of about
    // CHUNK_WORK multiply-adds.
    const splitN = nPanels >= mPanels;
    const splitPanels = splitN ? nPanels : mPanels;
    const chunks = threaded ? Math.min(splitPanels, MAX_CHUNKS, Math.max(2, Math.round((m * k * n) / chunkWork))) : 0;
    // The job a helper thread shares (CTL_JOB's layout: chunk starts, done flags, calls of
    // CALL_INTS i32 each): each chunk adds at most one block boundary along its axis, and the
    // last, partial row panel one more call per block.
    const listBase = align64(sBase + (aScratch + bScratch0) * 4 + 64 * NR);
    const maxCalls = threaded ? chunks + (Math.ceil(nPanels / ncPanels) + chunks) * (Math.ceil(mPanels / mcPanels) + 2 * chunks) * nK : 0;
    // Zero-step skipping (kernel.ts packSkipA), on this thread, in one K block: a transposed A
    // (x^T @ g, a weight gradient) times a packed B, whose finiteness is checked once it is placed.
    // Per panel of A: the list of its steps' B offsets, and its count. (Skipping for a row-major A,
    // x @ W with W read in place, was measured slower: 239 vs 230 us for 32x784x128 images with a
    // fifth of the steps empty, the checks and an irregular walk over W's rows costing more than
    // the steps saved.)
    const skipT =
      skipZeroSteps &&
      !threaded &&
      m * k * n >= skipMinWork &&
      aTransposed &&
      nK === 1 &&
      (bRowMajor || bTransposed) &&
      !(bRowMajor && mPanels <= stridedBMax);
    const idxPanel = 4 * k;
    const idxBase = align64(listBase + 4 * (2 * chunks + 1 + CALL_INTS * maxCalls));
    const cntBase = align64(idxBase + (skipT ? mPanels * idxPanel : 0));
    const end = skipT ? cntBase + 4 * mPanels : listBase + 4 * (2 * chunks + 1 + CALL_INTS * maxCalls);
    const ws = end > 0x7fff0000 ? -1 : arenaAlloc(end);
    if (ws < 0) {
      // More than a 32-bit memory can address (or the engine refuses to grow).
      gemmF32Fallback(A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n);
      return;
    }
    const h = arenaF32();

    // A: rows read in place (or a row-major copy), or MR-row panels packed from `aPack`.
    let aDeferred = false;
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
        // Split along M, each chunk's rows are copied just before the chunk may start (runJob).
        if (!(threaded && !splitN)) copyLines(h, aAt >> 2, A, aOffset, aRowStride, m, k);
        else aDeferred = true;
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

    // B read unpacked, row by row (in place, or from a compact copy): a row-major B times few rows
    // of A (packing it would cost about as much as the product: x @ W for a batch of 32), or any
    // row-major B when the product is split along M (the chunks then start without waiting for a
    // packing of B that all of them read; the micro-kernel runs about as fast on it).
    const bStrided = bRowMajor && (mPanels <= stridedBMax || (threaded && !splitN));
    const bStridedAt = bSrc >= 0 ? bSrc : ws + sBase + aScratch * 4;
    const ldb = bSrc >= 0 ? 4 * bRowStride : 4 * n;
    if (bStrided && bSrc < 0) copyLines(h, bStridedAt >> 2, B, bOffset, bRowStride, k, n);
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

    const ldc = nPad * 4;
    // C in place: when C lives in the arena, its rows are whole micro-tiles wide (n = nPad) and it
    // overlaps neither operand, every tile is written straight into it (a last, partial row panel
    // by an mRem-row tile); otherwise C goes to the workspace and is copied after.
    const cDirect = nPad === n ? residentOffset(C, cOffset) : -1;
    const inPlace = cDirect >= 0 && !overlapsBytes(A, C, cDirect, 4 * m * n) && !overlapsBytes(B, C, cDirect, 4 * m * n);
    const mRem = m % MR;
    Object.assign(plan, { k, n, mPanels, mRem, kc, aAt, aRow, aCol, aPanel, aPack, bAt, bPanel, bPack, bStrided, bStridedAt, ldb, ldc });
    plan.c0 = inPlace ? cDirect : ws + cBase;
    // Skipping: where A's panels have enough empty steps (sampled, then counted while packing) and
    // B is finite (0 * Inf = NaN must not be skipped).
    let skip = false;
    if (skipT && aPack !== null && bPack !== null && emptyStepFraction(h, aPack.src >> 2, aPack.ld >> 2, k, m, MR) >= SKIP_MIN_FRACTION / 2)
      skip = (bPack.op === OP_PACK_B ? wasm.finiteRows(bPack.src, k, n, bPack.ld) : wasm.finiteRows(bPack.src, n, k, bPack.ld)) === 1;
    if (skip && aPack !== null) {
      // Full panels test all MR rows; a last, partial panel only its mRem rows (the other lanes
      // hold whatever follows A's rows).
      const full = mRem > 0 ? mPanels - 1 : mPanels;
      for (const [p0, panels, lanes] of [
        [0, full, MR],
        [full, mRem > 0 ? 1 : 0, mRem],
      ]) {
        if (panels === 0) continue;
        const idx = ws + idxBase + p0 * idxPanel;
        const counts = ws + cntBase + 4 * p0;
        wasm.packSkipA(aPack.src + p0 * MR * 4, aPack.ld, aAt + p0 * aPanel, k, panels, aPanel, idx, idxPanel, counts, lanes, NR * 4);
      }
      // The skipping kernel costs ~10% more per step than the dense one (a load and an add per
      // step; 784x32x128 with no zeros: 260 vs 235 us), so it runs only where it skips more
      // than SKIP_MIN_FRACTION of the steps; otherwise A is packed again, for the dense kernel.
      const counts = new Int32Array(memory.buffer, ws + cntBase, mPanels);
      let kept = 0;
      for (let i = 0; i < mPanels; i++) kept += counts[i];
      skip = kept <= (1 - SKIP_MIN_FRACTION) * mPanels * k;
      if (skip) gemmSkipStats.products++;
    }
    plan.skip = skip;
    plan.counts0 = ws + cntBase;
    plan.lists0 = ws + idxBase;
    plan.listPanel = idxPanel;
    if (threaded && helper !== null) {
      // Chunks of C's tiles along the split axis, claimed by either thread (startHelperThread).
      // Each chunk packs the panels of the operand it splits (B's columns, or A's rows) before
      // using them, so no packing stays serial; the operand all chunks read is packed first.
      const list = new Int32Array(memory.buffer, ws + listBase, 2 * chunks + 1 + CALL_INTS * maxCalls);
      const callsAt = 2 * chunks + 1;
      let count = 0;
      const record = (op: number, args: number[]): void => {
        list[callsAt + CALL_INTS * count] = op;
        list.set(args, callsAt + CALL_INTS * count + 1);
        count++;
      };
      const recordPack = (c: KernelCall | null): void => {
        if (c !== null) record(c[0], c[1]);
      };
      run(splitN ? plan.packA(0, mPanels) : plan.packB(0, nPanels));
      for (let c = 0; c < chunks; c++) {
        const p0 = Math.floor((c * splitPanels) / chunks);
        const p1 = Math.floor(((c + 1) * splitPanels) / chunks);
        list[c] = count;
        if (splitN) {
          recordPack(plan.packB(p0, p1));
          plan.blockRange(0, mPanels, p0, p1, record);
        } else {
          recordPack(plan.packA(p0, p1));
          plan.blockRange(p0, p1, 0, nPanels, record);
        }
      }
      list[chunks] = count;
      gemmThreadStats.split++;
      const chunkRows = (c: number): [number, number] => [
        Math.floor((c * splitPanels) / chunks) * MR,
        Math.min(m, Math.floor(((c + 1) * splitPanels) / chunks) * MR),
      ];
      helper.runJob(
        ws + listBase,
        chunks,
        (c) => {
          for (let i = list[c]; i < list[c + 1]; i++) {
            const o = callsAt + CALL_INTS * i;
            call(list[o], Array.from(list.subarray(o + 1, o + CALL_INTS)));
          }
        },
        // A copied in (an ordinary array split along M): chunk by chunk from the back, the
        // helper's end, so that it computes while this thread copies the rest.
        aDeferred
          ? (c) => {
              const [r0, r1] = chunkRows(c);
              copyLines(h, (aAt >> 2) + r0 * k, A, aOffset + r0 * aRowStride, aRowStride, r1 - r0, k);
            }
          : null,
      );
    } else {
      if (!skip) run(plan.packA(0, mPanels));
      run(plan.packB(0, nPanels));
      plan.blockRange(0, mPanels, 0, nPanels, call);
    }

    if (nPad !== n) wasm.compact(ws + cBase, ldc, 4 * n, m);
    // C from the workspace, unless it was written in place.
    const c0 = (ws + cBase) >> 2;
    if (!inPlace) C.set(h.subarray(c0, c0 + m * n), cOffset);
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
