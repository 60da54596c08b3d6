/**
 * This machine's WebAssembly SIMD peak for float32 multiply-add, the denominator of the matmul
 * row's "fraction of peak": a micro-kernel that keeps ACCUMULATORS independent f32x4 sums in
 * registers and adds x * y to each (f32x4.mul then f32x4.add, as the gemm kernel does), so nothing
 * but the vector units limits it. Measured on one thread and on two at once (worker threads, one
 * per core: spiketrace splits a product of this size across both), best of several timed runs.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { Code, I32, V128, encodeModule, type ValType } from '../../core/backend/wasm/encoder.js';

/** Enough independent sums to cover the add latency on the vector ports (3-4 cycles x 2-3 ports). */
const ACCUMULATORS = 12;
/** Multiply-adds per loop iteration and lane group: FLOPs per iteration = ACCUMULATORS * 4 lanes * 2. */
const FLOPS_PER_ITERATION = ACCUMULATORS * 8;

/** peak(iterations) -> f32 (a lane of the sums, so the work cannot be dropped). */
export function peakModuleBytes(): Uint8Array<ArrayBuffer> {
  const N = 0;
  const [X, Y] = [1, 2];
  const acc = (i: number) => 3 + i;
  const f = new Code();
  f.f32x4Const(1.0000001).set(X);
  f.f32x4Const(0.9999999).set(Y);
  for (let i = 0; i < ACCUMULATORS; i++) f.f32x4Const(i).set(acc(i));
  f.block().loop();
  f.get(N).eqz().brIf(1);
  for (let i = 0; i < ACCUMULATORS; i++) f.get(acc(i)).get(X).get(Y).f32x4Mul().f32x4Add().set(acc(i));
  f.get(N).i32(1).sub().set(N).br(0);
  f.end().end();
  for (let i = 1; i < ACCUMULATORS; i++) f.get(acc(0)).get(acc(i)).f32x4Add().set(acc(0));
  f.get(acc(0)).simdLaneOp(0x1f, 0); // f32x4.extract_lane 0
  const locals: ValType[] = [V128, V128, ...new Array<ValType>(ACCUMULATORS).fill(V128)];
  return encodeModule([{ name: 'peak', params: [I32], results: [0x7d], locals, body: f }]);
}

/** Runs in each thread: best GFLOP/s over `reps` runs of about `ms` milliseconds each. */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { bytes, reps, ms, flopsPerIteration } = workerData;
const peak = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports.peak;
let n = 1 << 16;
for (;;) { const t = performance.now(); peak(n); if (performance.now() - t > ms / 4) break; n *= 2; }
const t0 = performance.now(); peak(n); const calib = performance.now() - t0;
n = Math.max(1, Math.round(n * ms / Math.max(calib, 1e-3)));
let best = 0;
for (let r = 0; r < reps; r++) {
  const t = performance.now();
  peak(n);
  best = Math.max(best, (n * flopsPerIteration) / ((performance.now() - t) * 1e6));
}
parentPort.postMessage(best);
`;

function runThreads(count: number, reps: number, ms: number): Promise<number[]> {
  const bytes = peakModuleBytes();
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(THREAD_SOURCE, { eval: true, workerData: { bytes, reps, ms, flopsPerIteration: FLOPS_PER_ITERATION } });
          w.once('message', (v: number) => {
            resolve(v);
            void w.terminate();
          });
          w.once('error', reject);
        }),
    ),
  );
}

export interface SimdPeak {
  /** GFLOP/s of one thread. */
  readonly oneThread: number;
  /** GFLOP/s of two threads running at once (summed), or of one where there is a single core. */
  readonly allThreads: number;
  readonly threads: number;
}

/** Measures the peak (about reps x ms x 2 milliseconds). */
export async function measureSimdPeak(reps = 5, ms = 100): Promise<SimdPeak> {
  const threads = Math.min(2, availableParallelism());
  const [one] = await runThreads(1, reps, ms);
  const all = threads > 1 ? (await runThreads(threads, reps, ms)).reduce((s, v) => s + v, 0) : one;
  return { oneThread: one, allThreads: all, threads };
}
