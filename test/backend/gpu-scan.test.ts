/**
 * Scans on the gpu.js backend (issue 7): a scan whose body compiles to device kernels runs on the
 * device, carry kept in textures from step to step, x_t read at a run-time offset of the uploaded
 * xs, the y_t stacked on the device; the program reads back once at the end.
 *
 * - generic scans (constants, several carries, reverse, 1 to 70 steps, matmul and reductions in
 *   the body, a nested scan, xs broadcast over time) against a float64 reference, jit'd and eager;
 *   a body that needs the CPU falls back to the CPU scan and the plan says why;
 * - transfers: jit'd spikingActivation, lowpass and alpha forward over 10 steps of [32, 128], and
 *   a grad through spikingActivation, upload each input once and read back each output once;
 * - spikingActivation (relu; dt 0.01 and 0.001; stateful and seeded) forward, final voltage and
 *   gradient against the CPU backend; lowpass and alpha (applyDuringTraining both ways, training
 *   and inference, returnSequences false) forward and gradients against a float64 reference;
 * - the seed's spiking-aware model trained 20 steps of batch 32 on both backends: same loss curve.
 *
 * Needs the native 'gl' package and an X display (`xvfb-run -a`); skips without them unless
 * SPIKETRACE_REQUIRE_GPU=1.
 */
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { gpuBackendOrSkip } from './fixtures/gpu.js';
import { expectAllClose, type Tap } from './fixtures/compare.js';
import {
  add,
  array,
  broadcastTo,
  cast,
  fromTyped,
  grad,
  jit,
  makeJaxpr,
  matmul,
  maximum,
  mean,
  mul,
  random,
  scalar,
  scan,
  withBackend,
  square,
  sub,
  sum,
  tanh,
  treeLeaves,
  valueAndGrad,
  type NDArray,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import * as nn from '../../nn/index.js';
import { alpha, lowpass, spikingActivation, type FilterParams, type SpikingState } from '../../spiking/index.js';
import { tileTime } from '../../data/index.js';
import { gpuTransferStats, resetGpuTransferStats } from '../../core/backend/gpu/index.js';

const enabled = gpuBackendOrSkip();

/** Float32 results against a float64 reference: |got - ref| <= ATOL + RTOL * |ref|. */
const RTOL = 1e-4;
const ATOL = 1e-5;

function rand(shape: number[], seed: number, lo = -1, hi = 1): NDArray {
  const next = rng(seed);
  const n = shape.reduce((a, c) => a * c, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = lo + next() * (hi - lo);
  return fromTyped(d, shape);
}
const f64 = (x: Tensor): NDArray => array(x as NDArray, { dtype: 'float64' });

const maxAbs = (x: Tensor): number =>
  Array.from((x as NDArray).toTyped() as ArrayLike<number>).reduce((a, v) => Math.max(a, Math.abs(v)), 0);

/** What `fn` prints with SPIKETRACE_DEBUG=plan (the plans of the programs it compiles). */
function planOf(fn: () => void): string {
  const prevEnv = process.env.SPIKETRACE_DEBUG;
  const prevErr = console.error;
  const lines: string[] = [];
  process.env.SPIKETRACE_DEBUG = 'plan';
  console.error = (...a: unknown[]) => void lines.push(a.map(String).join(' '));
  try {
    fn();
  } finally {
    console.error = prevErr;
    if (prevEnv === undefined) delete process.env.SPIKETRACE_DEBUG;
    else process.env.SPIKETRACE_DEBUG = prevEnv;
  }
  return lines.join('\n');
}

/**
 * Spike trains (time-major [T, ...]) of the gpu against the CPU backend. Both run float32; the
 * voltage can differ by an ulp, so a spike may move by one step where the voltage lies within an
 * ulp of 1: allowed for at most 1 in 10^4 elements, each by one spike (1/dt), and the spike count
 * of every unit over the run still within one spike. Everything else: rtol 1e-6.
 */
function spikesClose(t: Tap, got: Tensor, ref: Tensor, dt: number, timeAxis: number, msg: string): void {
  const g = (got as NDArray).toTyped();
  const r = (ref as NDArray).toTyped();
  t.same(got.shape, ref.shape, `${msg}: shape`);
  const spike = 1 / dt;
  let moved = 0;
  let bad = -1;
  for (let i = 0; i < r.length; i++) {
    const d = Math.abs(g[i] - r[i]);
    if (d <= 1e-6 * Math.abs(r[i]) + 1e-6) continue;
    if (Math.abs(d - spike) <= 1e-5 * spike) moved++;
    else if (bad < 0) bad = i;
  }
  t.ok(bad < 0, bad < 0 ? `${msg}: every element equal or one spike apart` : `${msg}: element ${bad} got ${g[bad]}, want ${r[bad]}`);
  t.ok(moved <= Math.max(2, r.length * 1e-4), `${msg}: ${moved} of ${r.length} elements one spike apart (<= max(2, 1e-4 of them))`);
  const counts = (x: Tensor): Float32Array => (sum(x, timeAxis) as NDArray).toTyped() as Float32Array;
  const cg = counts(got);
  const cr = counts(ref);
  let worst = 0;
  for (let i = 0; i < cr.length; i++) worst = Math.max(worst, Math.abs(cg[i] - cr[i]));
  t.ok(worst <= spike * (1 + 1e-5), `${msg}: spike counts per unit within one spike (max difference ${worst * dt} spikes)`);
}

/** Voltages in [0, 1): equal within 1e-5 as points on the circle (a moved spike wraps one by 1). */
function voltagesClose(t: Tap, got: Tensor, ref: Tensor, msg: string): void {
  const g = (got as NDArray).toTyped();
  const r = (ref as NDArray).toTyped();
  let worst = 0;
  for (let i = 0; i < r.length; i++) {
    const d = Math.abs(g[i] - r[i]) % 1;
    worst = Math.max(worst, Math.min(d, 1 - d));
  }
  t.ok(worst <= 1e-5, `${msg}: worst voltage difference ${worst} (mod 1) <= 1e-5`);
}

if (enabled) {
  t.test('generic scans on the device match a float64 reference', async (t) => {
    // Two carries, a constant, two xs; ys: a new value, x itself, the carry entering the step and
    // the constant (the last three need no per-step kernel).
    const cumulative = (reverse: boolean) => (a: Tensor, c0: Tensor, c1: Tensor, xs: Tensor, zs: Tensor) => {
      const [[e0, e1], ys] = scan(
        ([p, q]: Tensor[], [x, z]: Tensor[]) => {
          const p2 = add(mul(p, a), x);
          const q2 = maximum(q, mul(x, z));
          return [
            [p2, q2],
            [sub(p2, q2), x, p, a],
          ];
        },
        [c0, c1],
        [xs, zs],
        { reverse },
      );
      return [e0, e1, ...(ys as Tensor[])];
    };
    for (const T of [1, 3, 20, 70]) {
      for (const reverse of [false, true]) {
        const args: [Tensor, Tensor, Tensor, Tensor, Tensor] = [
          rand([4, 5], 1, 0.5, 0.9),
          rand([4, 5], 2),
          rand([4, 5], 3),
          rand([T, 4, 5], 4 + T),
          rand([T, 4, 5], 5 + T),
        ];
        const f = cumulative(reverse);
        const ref = f(f64(args[0]), f64(args[1]), f64(args[2]), f64(args[3]), f64(args[4]));
        withBackend('gpujs', () => {
          const j = jit(f);
          let got: Tensor[] = [];
          const plan = planOf(() => (got = j(...args)));
          t.match(plan, /gpu scan\[length=/, `T=${T}${reverse ? ' reverse' : ''}: the scan runs on the device`);
          got.forEach((g, i) => close(t, g, ref[i], `T=${T}${reverse ? ' reverse' : ''} jit output ${i}`));
          if (T === 20) f(...args).forEach((g, i) => close(t, g, ref[i], `T=${T}${reverse ? ' reverse' : ''} eager output ${i}`));
        });
      }
    }

    // An RNN: matmuls (one of x_t, read at its run-time offset), tanh and reductions in the body.
    const rnn = (w: Tensor, u: Tensor, h0: Tensor, xs: Tensor) =>
      scan(
        (h: Tensor, x: Tensor) => {
          const h2 = tanh(add(matmul(h, w), matmul(x, u)));
          return [h2, [sum(h2, -1), sum(mul(h2, x), -1)]];
        },
        h0,
        xs,
      );
    const w = rand([6, 6], 30, -0.5, 0.5);
    const u = rand([6, 6], 33, -0.5, 0.5);
    const h0 = rand([3, 6], 31);
    const xs = rand([12, 3, 6], 32);
    const [rh, [rs, rp]] = rnn(f64(w), f64(u), f64(h0), f64(xs));
    withBackend('gpujs', () => {
      const j = jit(rnn);
      let got: [Tensor, Tensor[]] = [scalar(0), []];
      const plan = planOf(() => (got = j(w, u, h0, xs) as [Tensor, Tensor[]]));
      t.match(plan, /gpu scan[^\n]*\n\s+gpu matmul/, 'rnn: matmul in the body on the device');
      close(t, got[0], rh, 'rnn final state');
      close(t, got[1][0], rs, 'rnn per-step sums');
      close(t, got[1][1], rp, 'rnn per-step sums of h * x_t');
    });

    // A nested scan (over the rows of x_t), and xs broadcast over time (stride 0).
    const nested = (xs: Tensor, c0: Tensor) =>
      scan(
        (c: Tensor, x: Tensor) => {
          const [inner, rows] = scan((s: Tensor, row: Tensor) => [add(mul(s, 0.5), row), mul(s, row)], c, x);
          return [inner, sum(rows, 0)];
        },
        c0,
        xs,
      );
    const nx = rand([5, 4, 7], 40);
    const bx = broadcastTo(rand([1, 4, 7], 41), [5, 4, 7]) as NDArray;
    const nc = rand([7], 42);
    for (const [name, x] of [
      ['nested', nx],
      ['nested on xs broadcast over time', bx],
    ] as const) {
      const nref = nested(f64(x), f64(nc)) as Tensor[];
      withBackend('gpujs', () => {
        const j = jit(nested);
        let got: Tensor[] = [];
        const plan = planOf(() => (got = j(x, nc) as Tensor[]));
        t.match(plan, /gpu scan[^\n]*\n\s+gpu scan/, `${name}: the inner scan runs on the device too`);
        got.forEach((g, i) => close(t, g, nref[i], `${name} output ${i}`));
      });
    }
  });

  t.test('a kernel with more inputs than texture units packs some into one texture', async (t) => {
    // 20 distinct inputs in one fused group: gpu.js would bind a 16th texture to its scratch unit.
    const xs = Array.from({ length: 20 }, (_, i) => rand([3, 7], 100 + i));
    const f = (...a: Tensor[]) => a.reduce((acc, x, i) => add(acc, mul(x, i + 1)));
    const ref = f(...xs.map(f64));
    withBackend('gpujs', () => close(t, jit(f)(...xs), ref, '20-input fused sum'));
  });

  t.test('a scan whose body needs the CPU falls back to the CPU scan and says so', async (t) => {
    // A cast to int32 and back: int32 has no device kernels.
    const f = (xs: Tensor, c0: Tensor) =>
      scan(
        (c: Tensor, x: Tensor) => {
          const n = add(c, cast(cast(mul(x, 10), 'int32'), 'float32'));
          return [n, n];
        },
        c0,
        xs,
      );
    const xs = rand([6, 8], 50);
    const c0 = rand([8], 51);
    const ref = withBackend('cpu', () => f(xs, c0)) as Tensor[];
    withBackend('gpujs', () => {
      let got: Tensor[] = [];
      const plan = planOf(() => (got = jit(f)(xs, c0) as Tensor[]));
      t.match(
        plan,
        /cpu scan\[length=6[^\n]*not on the device: its body runs cast on the CPU/,
        'the plan says why the scan runs on the CPU',
      );
      got.forEach((g, i) => close(t, g, ref[i], `fallback output ${i}`, 0, 0));
    });
  });

  // ---------------------------------------------------------------------------------------------
  // Transfers: one upload per input, one readback per output, none per step.

  const B = 32;
  const T = 10;
  const U = 128;
  const bytes = (...xs: Tensor[]): number => xs.reduce((a, x) => a + x.size * 4, 0);
  /** Non-scalar float constants the traced program captures (uploaded like inputs; PRNG keys stay on the CPU). */
  const constsOf = (f: (...a: never[]) => unknown, ...args: unknown[]): Tensor[] =>
    (makeJaxpr(f as (...a: unknown[]) => unknown)(...args).consts as Tensor[]).filter((c) => c.size > 1 && c.dtype === 'float32');

  t.test("transfers of jit'd spiking and filter layers on gpujs", async (t) => {
    const x = rand([B, T, U], 60, -20, 120);
    const v0 = rand([B, U], 61, 0, 0.999);
    const target = rand([B, T, U], 62, 0, 50);
    const measure = (name: string, f: (...a: never[]) => unknown, args: unknown[], inputs: Tensor[], outputs: number): void => {
      withBackend('gpujs', () => {
        const j = jit(f as (...a: unknown[]) => unknown);
        j(...args);
        resetGpuTransferStats();
        j(...args);
        const s = gpuTransferStats();
        const consts = constsOf(f, ...args);
        t.comment(`${name}: ${JSON.stringify(s)}`);
        t.equal(
          s.uploads,
          inputs.length + consts.length,
          `${name}: ${s.uploads} uploads = one per input (${inputs.length}) and captured constant (${consts.length})`,
        );
        t.equal(s.uploadBytes, bytes(...inputs, ...consts), `${name}: each uploaded whole, once`);
        t.equal(s.readbacks, outputs, `${name}: ${s.readbacks} readbacks = one per output (${outputs}), none per step`);
        t.equal(s.kernelsBuilt, 0, `${name}: the second call builds no kernels`);
      });
    };
    const spk = spikingActivation('relu', { dt: 0.01, stateful: true });
    const state = (v: Tensor): SpikingState => ({ dt: scalar(0.01), voltage: v });
    const spkFwd = (x: Tensor, v: Tensor) => spk.apply({}, x, { training: false }, state(v)).y;
    measure('spikingActivation forward', spkFwd, [x, v0], [x, v0], 1);
    const seeded = spikingActivation('relu', { dt: 0.01, seed: 3 });
    // The seeded initial voltage is drawn while tracing: a captured constant, uploaded once.
    measure(
      'spikingActivation forward, seeded',
      (x: Tensor) => seeded.apply({}, x, { training: false }, { dt: scalar(0.01), voltage: null }).y,
      [x],
      [x],
      1,
    );
    const spkLoss = (x: Tensor, v: Tensor, y: Tensor) => mean(square(sub(spkFwd(x, v), y)));
    measure('valueAndGrad through spikingActivation', valueAndGrad(spkLoss), [x, v0, target], [x, v0, target], 2);
    for (const [name, layer] of [
      ['lowpass', lowpass(0.05, { dt: 0.01 })],
      ['alpha', alpha(0.05, { dt: 0.01 })],
    ] as const) {
      const { params, state: fs } = layer.init(random.key(0), [T, U]);
      const fwd = (p: FilterParams, x: Tensor) => layer.apply(p, x, { training: true }, fs).y;
      measure(`${name} forward`, fwd, [params, x], [params.tau, params.initialLevel, x], 1);
      const loss = (p: FilterParams, x: Tensor, y: Tensor) => mean(square(sub(fwd(p, x), y)));
      measure(
        `${name} valueAndGrad`,
        valueAndGrad(loss, { argnums: [0, 1] }),
        [params, x, target],
        [params.tau, params.initialLevel, x, target],
        4,
      );
    }
  });

  // ---------------------------------------------------------------------------------------------
  // Accuracy of the spiking layers.

  t.test('spikingActivation on gpujs matches the CPU backend', async (t) => {
    const x = rand([B, T, U], 70, -20, 150);
    const w = rand([B, T, U], 71);
    for (const dt of [0.01, 0.001]) {
      for (const stateful of [true, false]) {
        const name = `dt ${dt}${stateful ? ', stateful' : ', seeded'}`;
        const layer = spikingActivation('relu', stateful ? { dt, stateful: true } : { dt, seed: 5, returnState: true });
        const v0 = stateful ? rand([B, U], 72, 0, 0.999) : null;
        const run = (x: Tensor, s: SpikingState) => {
          const r = layer.apply({}, x, { training: true }, s);
          return [r.y, r.state.voltage as Tensor];
        };
        const loss = (x: Tensor, s: SpikingState) => sum(mul(mul(layer.apply({}, x, { training: true }, s).y, w), 1e-3));
        const results = Object.fromEntries(
          ['cpu', 'gpujs'].map((b) =>
            withBackend(b, () => {
              const j = jit(run);
              const s1: SpikingState = { dt: scalar(dt), voltage: v0 };
              const [y1, v1] = j(x, s1);
              // Stateful: a second call continues from the voltage the first left.
              const [y2, v2] = stateful ? j(x, { dt: scalar(dt), voltage: v1 }) : [y1, v1];
              const g = jit(grad(loss))(x, s1) as Tensor;
              return [b, { y1, v1, y2, v2, g }];
            }),
          ),
        );
        const [c, g] = [results.cpu, results.gpujs];
        spikesClose(t, g.y1, c.y1, dt, 1, `${name}: spikes`);
        voltagesClose(t, g.v1, c.v1, `${name}: final voltage`);
        if (stateful) {
          spikesClose(t, g.y2, c.y2, dt, 1, `${name}: spikes of the second call`);
          voltagesClose(t, g.v2, c.v2, `${name}: final voltage of the second call`);
        }
        close(t, g.g, c.g, `${name}: d loss / d x (straight-through relu')`, 1e-6, 1e-9);
        const rate = ((mean(c.y1) as NDArray).item() as number) * dt;
        t.ok(rate > 0.05, `${name}: the neurons spike (${rate.toFixed(3)} spikes per step on average)`);
      }
    }
  });

  t.test('lowpass and alpha on gpujs match a float64 reference', async (t) => {
    const x = rand([16, 12, 24], 80);
    const w = rand([16, 12, 24], 81);
    const makers = { lowpass, alpha };
    for (const kind of ['lowpass', 'alpha'] as const) {
      for (const during of [true, false]) {
        for (const training of [true, false]) {
          for (const returnSequences of [true, false]) {
            if (!returnSequences && !(during && training)) continue;
            const name = `${kind} applyDuringTraining ${during}, ${training ? 'training' : 'inference'}${returnSequences ? '' : ', last step only'}`;
            const layer = makers[kind](0.03, { dt: 0.01, applyDuringTraining: during, initialLevel: 0.3, returnSequences });
            const init = layer.init(random.key(0), [12, 24]);
            // Per-unit taus around 0.03.
            const params: FilterParams = { tau: rand([1, 24], 82, 0.02, 0.05), initialLevel: init.params.initialLevel };
            const fwd = (p: FilterParams, x: Tensor) => layer.apply(p, x, { training }, init.state).y;
            const loss = (p: FilterParams, x: Tensor) => sum(mul(fwd(p, x), returnSequences ? w : (mean(w, 1) as Tensor)));
            const yRef = fwd(params, f64(x));
            const gRef = treeLeaves(grad(loss, { argnums: [0, 1] })(params, f64(x)));
            for (const b of ['cpu', 'gpujs']) {
              withBackend(b, () => {
                let y: Tensor = scalar(0);
                const plan = planOf(() => (y = jit(fwd)(params, x)));
                if (b === 'gpujs' && (during || !training))
                  t.match(plan, /gpu scan\[length=12/, `${name}: the filter's scan runs on the device`);
                close(t, y, yRef, `[${b}] ${name}: forward`);
                const gs = treeLeaves(jit(grad(loss, { argnums: [0, 1] }))(params, x));
                // A parameter's gradient sums B * T terms: its float32 error scales with their
                // size, not with the (possibly cancelling) sum, so atol is relative to the largest.
                gs.forEach((g, i) =>
                  close(t, g, gRef[i], `[${b}] ${name}: d ${['initialLevel', 'tau', 'x'][i]}`, RTOL, ATOL * Math.max(1, maxAbs(gRef[i]))),
                );
              });
            }
          }
        }
      }
    }
    // The backward pass of a filter is a reverse scan: on the device too.
    const layer = lowpass(0.03, { dt: 0.01 });
    const init = layer.init(random.key(0), [12, 24]);
    withBackend('gpujs', () => {
      const plan = planOf(() =>
        jit(grad((p: FilterParams, x: Tensor) => sum(layer.apply(p, x, { training: true }, init.state).y)))(init.params, x),
      );
      t.match(plan, /gpu scan\[length=12, reverse/, 'the VJP of the filter scan (a reverse scan) runs on the device');
      t.notMatch(plan, /cpu scan/, 'no scan of the gradient runs on the CPU');
    });
  });

  t.test("the seed's spiking-aware model trains on gpujs with the CPU's loss curve", async (t) => {
    // TimeDistributed Dense(128) -> spikingActivation('relu', dt 0.01) -> mean over time -> Dense(10),
    // 20 steps of batch 32 (Adam 1e-3, sparse softmax cross-entropy), images repeated over 10 steps.
    const N = 20 * 32;
    const next = rng(90);
    const pixels = new Float32Array(N * 784).map(() => next());
    const labels = Int32Array.from({ length: N }, () => Math.floor(next() * 10));
    const x = tileTime(fromTyped(pixels, [N, 28, 28]), 10);
    const y = fromTyped(labels, [N], 'int32');
    const train = (b: string): { losses: number[]; params: Tree; ms: number; stats: ReturnType<typeof gpuTransferStats> } =>
      withBackend(b, () => {
        const model = nn.sequential([
          nn.reshape([-1, 784]),
          nn.timeDistributed(nn.dense(128)),
          spikingActivation('relu', { dt: 0.01 }),
          nn.globalAveragePooling1d(),
          nn.dense(10),
        ]);
        const init = model.init(random.key(3), [null, 28, 28]);
        const losses: number[] = [];
        resetGpuTransferStats();
        const t0 = performance.now();
        const r = nn.fit(model, { params: init.params, state: init.state }, x, y, {
          optimizer: nn.adam(),
          loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
          batchSize: 32,
          shuffle: false,
          verbose: 0,
          key: random.key(4),
          callbacks: [{ onBatchEnd: (_b, logs) => void losses.push(logs.batchLoss as number) }],
        });
        return { losses, params: r.params, ms: performance.now() - t0, stats: gpuTransferStats() };
      });
    const cpu = train('cpu');
    const gpu = train('gpujs');
    t.comment(`20 steps: cpu ${cpu.ms.toFixed(0)} ms, gpujs ${gpu.ms.toFixed(0)} ms ${JSON.stringify(gpu.stats)}`);
    t.equal(gpu.losses.length, 20, 'trained 20 steps');
    let worst = 0;
    gpu.losses.forEach((l, i) => (worst = Math.max(worst, Math.abs(l - cpu.losses[i]) / Math.max(1, Math.abs(cpu.losses[i])))));
    t.ok(
      worst <= 1e-4,
      `loss curves agree within 1e-4 relative (worst ${worst.toExponential(2)}; first ${cpu.losses[0].toFixed(4)}, last ${cpu.losses[19].toFixed(4)})`,
    );
    t.ok(cpu.losses[19] < cpu.losses[0], 'the loss goes down');
    treeLeaves(gpu.params).forEach((p, i) => close(t, p, treeLeaves(cpu.params)[i], `trained parameter ${i}`, 1e-3, 1e-5));
    // One program per step: its readbacks are its outputs (parameters, optimizer state, loss), not per time step.
    t.ok(gpu.stats.readbacks <= 20 * 16, `readbacks ${gpu.stats.readbacks} <= 16 per step`);
  });
}

function close(t: Tap, got: Tensor, ref: Tensor, msg: string, rtol = RTOL, atol = ATOL): void {
  expectAllClose(t, got, ref, msg, rtol, atol);
}
