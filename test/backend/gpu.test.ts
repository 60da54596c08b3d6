/**
 * The gpu.js backend (core/backend/gpu, issue 7): one set of checks run on 'cpu' and on 'gpujs',
 * each against a float64 reference within float32 tolerances: eager and jit'd elementwise chains
 * with broadcasting, reductions (last axes, leading axes, all axes), matmul (2-D, batched,
 * transposed views), jit(grad(f)) of a small MLP loss; plus which gpu.js mode ran and how many
 * transfers one jit'd MLP step makes. Scans on the device (spiking layers, filters, the seed's
 * model) are in gpu-scan.test.ts.
 *
 * Needs the native 'gl' package and an X display (`xvfb-run -a`). Without them the file skips with
 * the reason, unless SPIKETRACE_REQUIRE_GPU=1 (set by .ci/run), where that is a failure.
 */
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { gpuBackendOrSkip } from './fixtures/gpu.js';
import { expectAllClose, type Tap } from './fixtures/compare.js';
import {
  add,
  array,
  broadcastTo,
  exp,
  fromTyped,
  getBackend,
  grad,
  jit,
  logSoftmax,
  matmul,
  max,
  maximum,
  mean,
  min,
  mul,
  NDArray,
  relu,
  withBackend,
  sigmoid,
  sub,
  sum,
  tanh,
  transpose,
  where,
  greater,
  type Tensor,
} from '../../core/index.js';
import { gpuBackendInfo, gpuTransferStats, resetGpuTransferStats } from '../../core/backend/gpu/index.js';

const enabled = gpuBackendOrSkip();

/** Float32 tolerances (vs a float64 reference): |got - ref| <= ATOL + RTOL * |ref|. */
const RTOL = 2e-5;
const ATOL = 2e-6;
/** Looser for transcendental chains (GPU exp/log/tanh are a few ulp) and long sums. */
const RTOL_LOOSE = 1e-4;
const ATOL_LOOSE = 1e-5;

function rand(shape: number[], seed: number, scale = 1): NDArray {
  const next = rng(seed);
  const n = shape.reduce((a, c) => a * c, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = (next() * 2 - 1) * scale;
  return fromTyped(d, shape);
}
const f64 = (x: NDArray): NDArray => array(x, { dtype: 'float64' });

const backends = ['cpu', 'gpujs'];

if (enabled) {
  t.test('gpu.js mode', async (t) => {
    const info = gpuBackendInfo();
    t.equal(info.enabled, true);
    const expected = process.env.SPIKETRACE_GPU_MODE ?? (typeof process !== 'undefined' ? 'headlessgl' : 'webgl2');
    t.equal(info.mode, expected, `gpu.js ran in mode ${info.mode} (${info.reason})`);
    t.equal(getBackend().name, 'cpu', 'enabling does not change the default backend');
  });

  for (const name of backends) {
    t.test(`[${name}] elementwise chains with broadcasting`, async (t) => {
      const x = rand([6, 5, 7], 1, 2);
      const row = rand([7], 2);
      const col = rand([5, 1], 3);
      const chain = (x: Tensor, row: Tensor, col: Tensor): Tensor => {
        const a = add(mul(x, row), col); // broadcast both ways
        const b = sub(tanh(a), mul(sigmoid(x), 0.5));
        return where(greater(a, 0), maximum(b, -0.25), exp(mul(b, 0.3)));
      };
      const ref = chain(f64(x), f64(row), f64(col));
      withBackend(name, () => {
        close(t, chain(x, row, col), ref, 'eager', RTOL_LOOSE, ATOL_LOOSE);
        close(t, jit(chain)(x, row, col), ref, 'jit', RTOL_LOOSE, ATOL_LOOSE);
        // A stride-0 (broadcast) and a transposed input.
        const xb = broadcastTo(rand([1, 5, 7], 4), [6, 5, 7]) as NDArray;
        const xt = transpose(rand([7, 5, 6], 5), [2, 1, 0]) as NDArray;
        const g = jit((p: Tensor, q: Tensor) => add(mul(p, q), relu(q)));
        const refPQ = add(mul(f64(xb), f64(xt)), relu(f64(xt)));
        close(t, g(xb, xt), refPQ, 'jit on broadcast and transposed views');
      });
    });

    t.test(`[${name}] reductions`, async (t) => {
      const x = rand([4, 6, 33], 6, 3);
      const x64 = f64(x);
      withBackend(name, () => {
        close(t, sum(x, -1), sum(x64, -1), 'sum last axis', RTOL_LOOSE, ATOL_LOOSE);
        close(t, sum(x, [1, 2]), sum(x64, [1, 2]), 'sum last two axes', RTOL_LOOSE, ATOL_LOOSE);
        close(t, max(x, -1), max(x64, -1), 'max last axis');
        close(t, min(x, [0, 2]), min(x64, [0, 2]), 'min over axes 0 and 2');
        close(t, sum(x), sum(x64), 'sum all', RTOL_LOOSE, ATOL_LOOSE);
        const fused = jit((x: Tensor) => [sum(mul(exp(x), x), -1), max(sub(x, 1), 0), mean(tanh(x), [0, 1])]);
        const [s, m, me] = fused(x) as Tensor[];
        close(t, s, sum(mul(exp(x64), x64), -1), 'jit fused exp*x then sum', RTOL_LOOSE, ATOL_LOOSE);
        close(t, m, max(sub(x64, 1), 0), 'jit fused sub then max over axis 0');
        close(t, me, mean(tanh(x64), [0, 1]), 'jit fused tanh then mean over leading axes', RTOL_LOOSE, ATOL_LOOSE);
      });
    });

    t.test(`[${name}] matmul`, async (t) => {
      const a = rand([17, 31], 7);
      const b = rand([31, 9], 8);
      const ab = rand([3, 5, 6], 9);
      const bb = rand([3, 6, 4], 10);
      const at = rand([31, 17], 11); // used transposed
      const bt = rand([9, 31], 12);
      withBackend(name, () => {
        close(t, matmul(a, b), matmul(f64(a), f64(b)), '2-D', RTOL_LOOSE, ATOL_LOOSE);
        close(t, matmul(ab, bb), matmul(f64(ab), f64(bb)), 'batched', RTOL_LOOSE, ATOL_LOOSE);
        const tv = transpose(at) as NDArray;
        const tb = transpose(bt) as NDArray;
        close(t, matmul(tv, tb), matmul(f64(tv), f64(tb)), 'transposed views', RTOL_LOOSE, ATOL_LOOSE);
        const mm = jit((x: Tensor, y: Tensor, z: Tensor) => relu(add(matmul(transpose(x), y), z)));
        const z = rand([9], 13);
        close(
          t,
          mm(at, b, z),
          relu(add(matmul(transpose(f64(at)), f64(b)), f64(z))),
          'jit transpose-matmul-add-relu',
          RTOL_LOOSE,
          ATOL_LOOSE,
        );
        const bm = jit((x: Tensor, y: Tensor) => sum(matmul(x, transpose(y, [0, 2, 1])), -1));
        const yb = rand([3, 4, 6], 14);
        close(
          t,
          bm(ab, yb),
          sum(matmul(f64(ab), transpose(f64(yb), [0, 2, 1])), -1),
          'jit batched matmul with transposed batch view',
          RTOL_LOOSE,
          ATOL_LOOSE,
        );
      });
    });
  }

  // The MLP: 32 x 20 -> 64 (relu) -> 10, softmax cross-entropy on one-hot labels.
  type Params = { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor };
  const mlpLoss = (p: Params, x: Tensor, y: Tensor): Tensor => {
    const h = relu(add(matmul(x, p.w1), p.b1));
    const logits = add(matmul(h, p.w2), p.b2);
    return mean(sum(mul(y, logSoftmax(logits)), -1));
  };
  const params: Params = { w1: rand([20, 64], 20, 0.3), b1: rand([64], 21, 0.1), w2: rand([64, 10], 22, 0.3), b2: rand([10], 23, 0.1) };
  const xs = rand([32, 20], 24);
  const labels = new Float32Array(32 * 10);
  for (let i = 0; i < 32; i++) labels[i * 10 + ((i * 7) % 10)] = 1;
  const ys = fromTyped(labels, [32, 10]);
  const p64 = {
    w1: f64(params.w1 as NDArray),
    b1: f64(params.b1 as NDArray),
    w2: f64(params.w2 as NDArray),
    b2: f64(params.b2 as NDArray),
  };
  const ref = grad(mlpLoss)(p64, f64(xs), f64(ys)) as unknown as Params;

  for (const name of backends) {
    t.test(`[${name}] jit(grad(f)) of an MLP loss`, async (t) => {
      withBackend(name, () => {
        const step = jit(grad(mlpLoss));
        for (let rep = 0; rep < 2; rep++) {
          const g = step(params, xs, ys) as unknown as Params;
          for (const k of ['w1', 'b1', 'w2', 'b2'] as const)
            close(t, g[k], ref[k], `d loss / d ${k} (call ${rep + 1})`, RTOL_LOOSE, ATOL_LOOSE);
        }
      });
    });
  }

  t.test('transfers of one jit(grad) MLP step on gpujs', async (t) => {
    withBackend('gpujs', () => {
      const step = jit(grad(mlpLoss));
      step(params, xs, ys);
      resetGpuTransferStats();
      step(params, xs, ys);
      const s = gpuTransferStats();
      t.comment(`one step: ${JSON.stringify(s)}`);
      // Uploads: 4 parameters, x, y, and the one non-scalar constant of the traced program (scalar
      // constants are float arguments of the kernels); readbacks: the 4 gradients only.
      t.ok(s.uploads <= 7, `uploads ${s.uploads} <= 7`);
      t.equal(s.readbacks, 4, `readbacks ${s.readbacks} = 4 (the gradients)`);
      t.ok(s.kernelRuns > 0, 'kernels ran on the device');
      t.equal(s.kernelsBuilt, 0, 'the second call builds no kernels');
    });
  });
}

function close(t: Tap, got: Tensor, ref: Tensor, msg: string, rtol = RTOL, atol = ATOL): void {
  expectAllClose(t, got, ref, msg, rtol, atol);
}
