/**
 * Matmul throughput, gpujs vs cpu: `xvfb-run -a npx tsx core/backend/gpu/bench.ts [n ...]`.
 * Reports GFLOP/s for the eager op (upload + kernel + readback) and for the kernel alone
 * (operands resident, one readback at the end), and the transfers of one jit'd MLP step.
 */
import { fromTyped, getBackend, grad, jit, matmul, setBackend, type NDArray, type Tensor } from '../../index.js';
import { add, logSoftmax, mean, mul, relu, sum } from '../../ops.js';
import { enableGpuBackend, gpuBackendInfo, gpuTransferStats, resetGpuTransferStats } from './index.js';
import { matmulKernelSource } from './codegen.js';
import { launch, readback, release, upload } from './runtime.js';

function rand(shape: number[], seed: number): NDArray {
  let s = seed;
  const n = shape.reduce((a, c) => a * c, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    d[i] = s / 2 ** 32 - 0.5;
  }
  return fromTyped(d, shape);
}

function time(fn: () => void, minMs = 300): number {
  fn();
  let reps = 0;
  const t0 = performance.now();
  do {
    fn();
    reps++;
  } while (performance.now() - t0 < minMs);
  return (performance.now() - t0) / reps;
}

const r = enableGpuBackend();
if (!r.ok) {
  console.log(`gpujs unavailable: ${r.reason}`);
  process.exit(0);
}
console.log(`gpu.js mode: ${gpuBackendInfo().mode}`);
const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0);
for (const n of sizes.length ? sizes : [128, 256, 512]) {
  const a = rand([n, n], 1);
  const b = rand([n, n], 2);
  const flop = 2 * n * n * n;
  const cpuMs = time(() => void matmul(a, b));
  setBackend('gpujs');
  const gpuMs = time(() => void matmul(a, b));
  setBackend('cpu');
  const da = upload(a);
  const db = upload(b);
  const src = matmulKernelSource([], n, n, n, { strides: da.strides, offset: 0 }, { strides: db.strides, offset: 0 });
  const reps = 5;
  const kMs =
    time(() => {
      let last = null;
      for (let i = 0; i < reps; i++) {
        if (last) release(last);
        last = launch(src, [da, db], [n, n], 'float32');
      }
      readback(last!);
      release(last!);
    }) / reps;
  release(da);
  release(db);
  const g = (ms: number): string => (flop / ms / 1e6).toFixed(2);
  console.log(
    `matmul ${n}^3: cpu ${cpuMs.toFixed(1)} ms (${g(cpuMs)} GFLOP/s); gpujs eager ${gpuMs.toFixed(1)} ms (${g(gpuMs)} GFLOP/s); gpujs kernel ${kMs.toFixed(1)} ms (${g(kMs)} GFLOP/s)`,
  );
}

type Params = { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor };
const loss = (p: Params, x: Tensor, y: Tensor): Tensor =>
  mean(sum(mul(y, logSoftmax(add(matmul(relu(add(matmul(x, p.w1), p.b1)), p.w2), p.b2))), -1));
const p: Params = { w1: rand([784, 128], 3), b1: rand([128], 4), w2: rand([128, 10], 5), b2: rand([10], 6) };
const x = rand([64, 784], 7);
const y = rand([64, 10], 8);
for (const name of ['cpu', 'gpujs']) {
  setBackend(name);
  const step = jit(grad(loss));
  step(p, x, y);
  resetGpuTransferStats();
  const ms = time(() => void step(p, x, y));
  const once = gpuTransferStats();
  console.log(`jit(grad) MLP 784-128-10, batch 64 on ${getBackend().name}: ${ms.toFixed(1)} ms/step`);
  if (name === 'gpujs') {
    resetGpuTransferStats();
    step(p, x, y);
    console.log(`  one step: ${JSON.stringify(gpuTransferStats())} (${once.kernelRuns} launches over the timed loop)`);
  }
}
setBackend('cpu');
