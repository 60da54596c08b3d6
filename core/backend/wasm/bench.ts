/**
 * GFLOP/s of the WebAssembly SIMD matmul against the plain-JS loop of core/backend/matmul.ts
 * (and this folder's JS fallback), single-threaded, on the MLP shapes of the Fashion-MNIST
 * tutorial (batch 320 or 32, 784 -> 128):
 *
 *   npx tsx core/backend/wasm/bench.ts [--trials 5] [--mr 4 --nr 8 --unroll 4 --kc 256 --mc 128 --nc 256] [--quick]
 *
 * Each figure is the best of `trials` timings (each timing averages enough repetitions to run
 * ~0.1 s), since other jobs may share the machine (the load average is printed; rerun and take
 * the best when it is high). Operands are dense random normals: the JS loop
 * skips zeros of A, so on spike/relu data it gets faster than shown here.
 */
import { cpus, loadavg } from 'node:os';
import ndarray from 'ndarray';
import { NDArray, fromTyped } from '../../ndarray.js';
import { matmulKernel } from '../matmul.js';
import { createWasmGemm, gemmF32Fallback, matmulBackendName, type GemmF32, type WasmGemmOptions } from './index.js';

const args = process.argv.slice(2);
function opt(name: string): number | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : undefined;
}
const trials = opt('trials') ?? 5;
const quick = args.includes('--quick');
const kernelOptions: WasmGemmOptions = {
  mr: opt('mr'),
  nr: opt('nr'),
  unroll: opt('unroll'),
  kcMax: opt('kc'),
  mc: opt('mc'),
  nc: opt('nc'),
};

function randn(size: number, seed: number): Float32Array {
  // Small LCG + Box-Muller: reproducible without the library's PRNG.
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** Best-of-`trials` seconds per call. */
function time(fn: () => void, minSeconds = quick ? 0.05 : 0.1): number {
  fn();
  fn();
  let best = Infinity;
  for (let t = 0; t < trials; t++) {
    let reps = 0;
    const start = process.hrtime.bigint();
    let elapsed = 0;
    do {
      fn();
      reps++;
      elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    } while (elapsed < minSeconds);
    best = Math.min(best, elapsed / reps);
  }
  return best;
}

interface Case {
  name: string;
  m: number;
  k: number;
  n: number;
  /** A stored transposed (k x m), used through a transposed view. */
  aT?: boolean;
  /** B stored transposed (n x k), used through a transposed view (g @ W^T). */
  bT?: boolean;
}

const cases: Case[] = [
  { name: '320x784x128 (x @ W)', m: 320, k: 784, n: 128 },
  { name: '32x784x128 (x @ W)', m: 32, k: 784, n: 128 },
  { name: '784x320x128 (x^T @ g, A transposed)', m: 784, k: 320, n: 128, aT: true },
  { name: '320x128x784 (g @ W^T, B transposed)', m: 320, k: 128, n: 784, bT: true },
  { name: '320x128x784 (B contiguous)', m: 320, k: 128, n: 784 },
];

const wasm = createWasmGemm(kernelOptions);
console.log(
  `backend: ${matmulBackendName()}  kernel: ${JSON.stringify(kernelOptions)}  trials: ${trials}  cpu: ${cpus()[0]?.model} x${cpus().length}  load: ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
const rows: string[][] = [['shape', 'wasm-simd GFLOP/s', 'ms', 'fallback GFLOP/s', 'matmul.ts JS GFLOP/s', 'ms', 'speedup', 'max rel err']];
for (const c of cases) {
  const { m, k, n } = c;
  const aData = randn(m * k, 1);
  const bData = randn(k * n, 2);
  // Strides as the views see them.
  const [ars, acs] = c.aT ? [1, m] : [k, 1];
  const [brs, bcs] = c.bT ? [1, k] : [n, 1];
  const aView = c.aT ? new NDArray(ndarray(aData, [k, m]).transpose(1, 0)) : fromTyped(aData, [m, k]);
  const bView = c.bT ? new NDArray(ndarray(bData, [n, k]).transpose(1, 0)) : fromTyped(bData, [k, n]);
  const flops = 2 * m * k * n;
  const C = new Float32Array(m * n);
  const C2 = new Float32Array(m * n);
  const run = (g: GemmF32, out: Float32Array) => () => g(aData, 0, ars, acs, bData, 0, brs, bcs, out, 0, m, k, n);
  const tW = wasm ? time(run(wasm, C)) : NaN;
  const tF = time(run(gemmF32Fallback, C2));
  let ref: NDArray | undefined;
  const tJ = time(() => {
    ref = matmulKernel(aView, bView);
  });
  let err = 0;
  const r = ref!.data;
  for (let i = 0; i < m * n; i++) err = Math.max(err, Math.abs(C[i] - r[i]) / (Math.abs(r[i]) + 1));
  const g = (t: number) => (flops / t / 1e9).toFixed(2);
  rows.push([c.name, g(tW), (tW * 1e3).toFixed(2), g(tF), g(tJ), (tJ * 1e3).toFixed(2), (tJ / tW).toFixed(1) + 'x', err.toExponential(1)]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows) console.log(r.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  '));
