/**
 * The neuron layers against float64 loops written here from the formulas of
 * ../shared/spec/neurons.md (snnTorch conventions), the continuous-time LIF against the exact
 * solution of tau dv/dt = (v_leak - v) + R I, stateful chunks against one run, and the
 * gradient through time against central finite differences (also w.r.t. a learned tau), and training
 * that moves a learned tau.
 */
import t from 'tap';
import { array, grad, random, sigmoid, mul, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import { adam, fit, meanSquaredError, resetLayerNames, type Layer } from '../../nn/index.js';
import {
  adaptiveLeaky,
  integrateAndFire,
  leaky,
  leakyIntegrator,
  recurrentLeaky,
  recurrentSynaptic,
  synaptic,
  type NeuronLayerState,
  type Surrogate,
} from '../../spiking/index.js';

resetLayerNames();
const B = 3;
const T = 40;
const U = 5;

/** Deterministic pseudo-random inputs in [lo, hi). */
function inputs(seed: number, b = B, steps = T, u = U, lo = -0.2, hi = 0.9): number[] {
  let s = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < b * steps * u; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(lo + ((s >>> 8) / 2 ** 24) * (hi - lo));
  }
  return out;
}
const at = (x: readonly number[], b: number, t: number, u: number, steps = T, units = U): number => x[(b * steps + t) * units + u];
const H = (u: number): number => (u > 0 ? 1 : 0);
type Tap = Pick<typeof t, 'ok' | 'equal'>;

interface RefOptions {
  beta: number;
  thr: number;
  reset: 'subtract' | 'zero' | 'none';
  alpha?: number;
  /** All-to-all recurrent weights, w[from][to] (S_{t-1} @ W). */
  recurrentAll?: number[][];
  /** One-to-one recurrent weights. */
  recurrentOne?: number[];
  adaptive?: { rho: number; adaptation: number };
  graded?: number;
}

/** The spec's update, one unit vector per batch row, float64. Returns spikes and membranes (b, t, u). */
function reference(x: readonly number[], o: RefOptions, steps = T): { spk: number[]; mem: number[]; syn: number[] } {
  const spkOut: number[] = [];
  const memOut: number[] = [];
  const synOut: number[] = [];
  const g = o.graded ?? 1;
  for (let b = 0; b < B; b++) {
    const mem = new Array<number>(U).fill(0);
    const syn = new Array<number>(U).fill(0);
    let prevS = new Array<number>(U).fill(0);
    const adapt = new Array<number>(U).fill(0);
    const rows: number[][] = [];
    for (let t = 0; t < steps; t++) rows.push([]);
    for (let t = 0; t < steps; t++) {
      const S = new Array<number>(U).fill(0);
      for (let u = 0; u < U; u++) {
        let rec = 0;
        if (o.recurrentAll) for (let j = 0; j < U; j++) rec += prevS[j] * o.recurrentAll[j][u];
        if (o.recurrentOne) rec = prevS[u] * o.recurrentOne[u];
        let drive = at(x, b, t, u, steps) + rec;
        if (o.alpha !== undefined) {
          syn[u] = o.alpha * syn[u] + drive;
          drive = syn[u];
        }
        let thrNow = o.thr;
        let thrPrev = o.thr;
        if (o.adaptive) {
          thrPrev = o.thr + o.adaptive.adaptation * adapt[u];
          adapt[u] = o.adaptive.rho * adapt[u] + (1 - o.adaptive.rho) * prevS[u];
          thrNow = o.thr + o.adaptive.adaptation * adapt[u];
        }
        const R = H(mem[u] - thrPrev);
        if (o.reset === 'subtract') mem[u] = o.beta * mem[u] + drive - R * thrNow;
        else if (o.reset === 'zero') mem[u] = (1 - R) * o.beta * mem[u] + drive;
        else mem[u] = o.beta * mem[u] + drive;
        S[u] = H(mem[u] - thrNow) * g;
        spkOut[(b * steps + t) * U + u] = S[u];
        memOut[(b * steps + t) * U + u] = mem[u];
        synOut[(b * steps + t) * U + u] = syn[u];
      }
      prevS = S;
    }
  }
  return { spk: spkOut, mem: memOut, syn: synOut };
}

function run(
  layer: Layer<Tree, NeuronLayerState>,
  x: readonly number[],
  steps = T,
): { y: number[]; state: NeuronLayerState; params: Tree } {
  const vars = layer.init(random.key(3), [steps, U]);
  const r = layer.apply(vars.params, array(x, { shape: [B, steps, U], dtype: 'float64' }), { training: false }, vars.state);
  return { y: Array.from(r.y.toTyped() as Float64Array), state: r.state, params: vars.params };
}

function hiddenOf(state: NeuronLayerState, name: string): number[] {
  return Array.from((state.hidden as Record<string, Tensor>)[name].toTyped() as Float64Array);
}

function sameSpikes(t: Tap, got: readonly number[], want: readonly number[], what: string): void {
  let diff = 0;
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) diff++;
  const total = want.reduce((a, c) => a + (c !== 0 ? 1 : 0), 0);
  t.equal(diff, 0, `${what}: spikes equal the float64 loop (${total} spikes of ${want.length})`);
  t.ok(total > 0 && total < want.length, `${what}: some units spike, not all`);
}
function closeAll(t: Tap, got: readonly number[], want: readonly number[], what: string, tol = 1e-12): void {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  t.ok(worst <= tol, `${what}: worst difference ${worst} <= ${tol}`);
}

const weights = (p: Tree, name: string): number[] => Array.from((p as Record<string, Tensor>)[name].toTyped() as Float64Array);

t.test('leaky against the float64 loop, each reset mode, graded spikes', async (t) => {
  const x = inputs(1);
  for (const reset of ['subtract', 'zero', 'none'] as const) {
    const r = run(leaky({ beta: 0.85, threshold: 1.1, reset, returnHidden: ['mem'], paramDtype: 'float64' }), x);
    const want = reference(x, { beta: 0.85, thr: 1.1, reset });
    sameSpikes(t, r.y, want.spk, `leaky reset ${reset}`);
    closeAll(t, hiddenOf(r.state, 'mem'), want.mem, `leaky reset ${reset} membrane`);
  }
  const g = run(leaky({ beta: 0.9, graded: 2.5, learnGraded: true, paramDtype: 'float64' }), x);
  sameSpikes(t, g.y, reference(x, { beta: 0.9, thr: 1, reset: 'subtract', graded: 2.5 }).spk, 'leaky graded 2.5');
});

t.test('synaptic, integrate-and-fire and the leaky integrator against the float64 loop', async (t) => {
  const x = inputs(2, B, T, U, -0.3, 0.6);
  const s = run(synaptic({ alpha: 0.7, beta: 0.8, returnHidden: true, paramDtype: 'float64' }), x);
  const want = reference(x, { alpha: 0.7, beta: 0.8, thr: 1, reset: 'subtract' });
  sameSpikes(t, s.y, want.spk, 'synaptic');
  closeAll(t, hiddenOf(s.state, 'syn'), want.syn, 'synaptic current');
  closeAll(t, hiddenOf(s.state, 'mem'), want.mem, 'synaptic membrane');
  const f = run(integrateAndFire({ threshold: 2, reset: 'zero', paramDtype: 'float64' }), x);
  sameSpikes(t, f.y, reference(x, { beta: 1, thr: 2, reset: 'zero' }).spk, 'integrateAndFire (zero reset)');
  const li = run(leakyIntegrator({ beta: 0.75, paramDtype: 'float64' }), x);
  closeAll(t, li.y, reference(x, { beta: 0.75, thr: Infinity, reset: 'none' }).mem, 'leakyIntegrator membrane output');
});

t.test('recurrent neurons (all-to-all and one-to-one) and ALIF against the float64 loop', async (t) => {
  const x = inputs(3, B, T, U, -0.4, 0.8);
  const all = run(recurrentLeaky({ beta: 0.9, paramDtype: 'float64' }), x);
  const w = weights(all.params, 'recurrent');
  const W = Array.from({ length: U }, (_, i) => w.slice(i * U, (i + 1) * U));
  t.ok(
    w.some((v) => Math.abs(v) > 0.1),
    'the recurrent weights are not trivial',
  );
  sameSpikes(t, all.y, reference(x, { beta: 0.9, thr: 1, reset: 'subtract', recurrentAll: W }).spk, 'recurrentLeaky all-to-all');
  const one = run(
    recurrentLeaky({
      beta: 0.9,
      recurrent: 'oneToOne',
      recurrentInitializer: (_k, shape, dtype) => array([0.5, -0.3, 0.2, 0.9, -1], { shape: shape.slice(), dtype }),
      paramDtype: 'float64',
    }),
    x,
  );
  sameSpikes(
    t,
    one.y,
    reference(x, { beta: 0.9, thr: 1, reset: 'subtract', recurrentOne: [0.5, -0.3, 0.2, 0.9, -1] }).spk,
    'recurrentLeaky one-to-one',
  );
  const rs = run(recurrentSynaptic({ alpha: 0.6, beta: 0.85, reset: 'zero', paramDtype: 'float64', returnHidden: ['mem'] }), x);
  const ws = weights(rs.params, 'recurrent');
  const Ws = Array.from({ length: U }, (_, i) => ws.slice(i * U, (i + 1) * U));
  const wantRs = reference(x, { alpha: 0.6, beta: 0.85, thr: 1, reset: 'zero', recurrentAll: Ws });
  sameSpikes(t, rs.y, wantRs.spk, 'recurrentSynaptic');
  closeAll(t, hiddenOf(rs.state, 'mem'), wantRs.mem, 'recurrentSynaptic membrane');
  const al = run(adaptiveLeaky({ beta: 0.95, rho: 0.9, adaptation: 0.5, paramDtype: 'float64', returnHidden: ['mem'] }), x);
  const wantAl = reference(x, { beta: 0.95, thr: 1, reset: 'subtract', adaptive: { rho: 0.9, adaptation: 0.5 } });
  sameSpikes(t, al.y, wantAl.spk, 'adaptiveLeaky');
  closeAll(t, hiddenOf(al.state, 'mem'), wantAl.mem, 'adaptiveLeaky membrane');
  const plain = reference(x, { beta: 0.95, thr: 1, reset: 'subtract' }).spk.reduce((a, c) => a + c, 0);
  t.ok(al.y.reduce((a, c) => a + c, 0) < plain, 'adaptation lowers the spike count');
});

t.test('stateful chunks (5 x 20 steps) equal one run of 100', async (t) => {
  const steps = 100;
  const x = inputs(4, B, steps, U, -0.3, 0.8);
  const cases: [string, (o: { stateful?: boolean; name?: string }) => Layer<Tree, NeuronLayerState>][] = [
    ['leaky', (o) => leaky({ beta: 0.9, paramDtype: 'float64', ...o })],
    ['recurrentSynaptic', (o) => recurrentSynaptic({ alpha: 0.5, beta: 0.9, paramDtype: 'float64', ...o })],
    ['adaptiveLeaky', (o) => adaptiveLeaky({ beta: 0.9, paramDtype: 'float64', ...o })],
  ];
  for (const [name, make] of cases) {
    const whole = make({});
    const vars = whole.init(random.key(5), [steps, U]);
    const all = Array.from(
      whole
        .apply(vars.params, array(x, { shape: [B, steps, U], dtype: 'float64' }), { training: false }, vars.state)
        .y.toTyped() as Float64Array,
    );
    const chunked = whole.with({ stateful: true });
    let state = chunked.init(random.key(5), [20, U]).state;
    const parts: number[] = new Array<number>(all.length);
    for (let c = 0; c < 5; c++) {
      const chunk: number[] = [];
      for (let b = 0; b < B; b++) for (let s = 0; s < 20; s++) for (let u = 0; u < U; u++) chunk.push(at(x, b, c * 20 + s, u, steps));
      const r = chunked.apply(vars.params, array(chunk, { shape: [B, 20, U], dtype: 'float64' }), { training: false }, state);
      state = r.state;
      const y = r.y.toTyped() as Float64Array;
      for (let b = 0; b < B; b++)
        for (let s = 0; s < 20; s++) for (let u = 0; u < U; u++) parts[(b * steps + c * 20 + s) * U + u] = y[(b * 20 + s) * U + u];
    }
    t.same(parts, all, `${name}: 5 stateful chunks of 20 = one run of 100 (${all.filter((v) => v !== 0).length} spikes)`);
  }
});

t.test('continuous-time LIF: first spike against the exact solution of tau dv/dt = (v_leak - v) + R I', async (t) => {
  const tau = 0.02;
  const r = 2;
  const vLeak = -0.1;
  const thr = 1;
  // The layer holds dt as a float32 scalar (as every dt-carrying layer does).
  const dt = Math.fround(0.001);
  const steps = 80;
  for (const current of [0.6, 0.8, 1.5]) {
    // v(t) = v_inf + (v0 - v_inf) e^(-t/tau), v0 = 0, v_inf = v_leak + R I; crossing at t*.
    const vInf = vLeak + r * current;
    const tStar = -tau * Math.log((vInf - thr) / (vInf - 0));
    const x = new Array<number>(B * steps * U).fill(current);
    for (const discretisation of ['exact', 'euler'] as const) {
      const layer = leaky({ tau, r, vLeak, threshold: thr, dt, discretisation, paramDtype: 'float64', returnHidden: ['mem'] });
      const vars = layer.init(random.key(0), [steps, U]);
      const out = layer.apply(vars.params, array(x, { shape: [B, steps, U], dtype: 'float64' }), { training: false }, vars.state);
      const y = out.y.toTyped() as Float64Array;
      let first = -1;
      for (let s = 0; s < steps && first < 0; s++) if (y[s * U] > 0) first = s;
      // Step s holds v((s + 1) dt): the first step whose end lies past t*.
      const want = Math.ceil(tStar / dt) - 1;
      if (discretisation === 'exact') {
        t.equal(first, want, `exact, I = ${current}: first spike at step ${first}, t* = ${(tStar * 1e3).toFixed(3)} ms`);
        const mem = hiddenOf(out.state, 'mem');
        const vAt = (k: number): number => vInf + (0 - vInf) * Math.exp(-((k + 1) * dt) / tau);
        closeAll(
          t,
          [mem[0], mem[(first - 1) * U]],
          [vAt(0), vAt(first - 1)],
          `exact, I = ${current}: membrane on the exact curve before the spike`,
          1e-12,
        );
      } else t.ok(Math.abs(first - want) <= 1, `euler, I = ${current}: first spike at step ${first}, within one step of ${want}`);
    }
  }
});

t.test('gradients through time of a recurrent layer match finite differences of a smooth model', async (t) => {
  // A smooth spike function (sigmoid forward, its true derivative backward) makes the whole model
  // differentiable, so central differences in float64 check the backward pass through time,
  // the recurrent weights, the learned beta and threshold, and the (not detached) reset.
  const smooth: Surrogate = {
    name: 'smoothSigmoid',
    config: { slope: 4 },
    derivative: (u) => mul(mul(sigmoid(mul(u, 4)), sigmoid(mul(u, -4))), 4),
    spike: (u) => sigmoid(mul(u, 4)),
  };
  const steps = 12;
  const x = array(inputs(7, B, steps, U, -0.5, 1.2), { shape: [B, steps, U], dtype: 'float64' });
  const layer = recurrentSynaptic({
    alpha: 0.6,
    beta: 0.8,
    learnBeta: true,
    learnThreshold: true,
    perUnit: true,
    surrogate: smooth,
    resetGradient: true,
    paramDtype: 'float64',
  });
  const vars = layer.init(random.key(11), [steps, U]);
  const target = array(inputs(8, B, steps, U, 0, 1), { shape: [B, steps, U], dtype: 'float64' });
  const loss = (p: Tree): Tensor => {
    const y = layer.apply(p as never, x, { training: true }, vars.state).y;
    return y.sub(target).mul(y.sub(target)).sum();
  };
  const g = grad(loss)(vars.params) as Record<string, Tensor>;
  const p0 = vars.params as Record<string, NDArray>;
  let checked = 0;
  let worst = 0;
  for (const name of ['recurrent', 'beta', 'threshold']) {
    const base = Array.from(p0[name].toTyped() as Float64Array);
    const gv = g[name].toTyped() as Float64Array;
    for (let i = 0; i < base.length; i += name === 'recurrent' ? 4 : 1) {
      const eps = 1e-6;
      const at2 = (d: number): number => {
        const v = base.slice();
        v[i] += d;
        return loss({ ...p0, [name]: array(v, { shape: p0[name].shape, dtype: 'float64' }) }).item();
      };
      const fd = (at2(eps) - at2(-eps)) / (2 * eps);
      worst = Math.max(worst, Math.abs(fd - gv[i]) / (1e-6 + Math.abs(fd)));
      checked++;
    }
  }
  t.ok(worst < 1e-5, `${checked} gradient entries, worst relative error ${worst.toExponential(2)}`);
  t.ok(Math.abs((g.beta.toTyped() as Float64Array)[0]) > 1e-6, 'beta gets a gradient');
});

t.test('learned tau (continuous time): same forward as a fixed tau; gradient w.r.t. tau against finite differences', async (t) => {
  // A smooth spike function makes the loss differentiable in tau, so central differences in float64
  // check d/dtau of the decay exp(-dt/tau) (or 1 - dt/tau) and of its input gain (1 - a) r.
  const smooth: Surrogate = {
    name: 'smoothSigmoid',
    config: { slope: 4 },
    derivative: (u) => mul(mul(sigmoid(mul(u, 4)), sigmoid(mul(u, -4))), 4),
    spike: (u) => sigmoid(mul(u, 4)),
  };
  const steps = 15;
  const dt = 1e-3;
  const x = array(inputs(21, B, steps, U, -0.5, 1.5), { shape: [B, steps, U], dtype: 'float64' });
  const target = array(inputs(22, B, steps, U, 0, 1), { shape: [B, steps, U], dtype: 'float64' });
  const tau = [0.004, 0.01, 0.02, 0.005, 0.008];
  const cases: [
    string,
    (learn: boolean, discretisation: 'exact' | 'euler') => Layer<Record<string, Tensor>, NeuronLayerState>,
    string[],
  ][] = [
    [
      'leaky (per-unit tau, r, vLeak)',
      (learn, discretisation) =>
        leaky({
          tau,
          r: 2,
          vLeak: 0.1,
          learnTau: learn,
          surrogate: smooth,
          resetGradient: true,
          dt,
          discretisation,
          paramDtype: 'float64',
        }),
      ['tau'],
    ],
    [
      'synaptic (shared tau and tauSyn)',
      (learn, discretisation) =>
        synaptic({
          tau: 0.01,
          tauSyn: 0.004,
          learnTau: learn,
          learnTauSyn: learn,
          surrogate: smooth,
          dt,
          discretisation,
          paramDtype: 'float64',
        }),
      ['tau', 'tauSyn'],
    ],
    [
      'leakyIntegrator (tau per unit by perUnit)',
      (learn, discretisation) =>
        leakyIntegrator({ tau: 0.02, r: 1.5, learnTau: learn, perUnit: learn, dt, discretisation, paramDtype: 'float64' }),
      ['tau'],
    ],
  ];
  for (const discretisation of ['exact', 'euler'] as const) {
    for (const [what, make, names] of cases) {
      const layer = make(true, discretisation);
      const vars = layer.init(random.key(3), [steps, U]);
      const fixed = make(false, discretisation);
      const fixedVars = fixed.init(random.key(3), [steps, U]);
      const run = (l: typeof layer, p: Tree, s: NeuronLayerState): number[] =>
        Array.from(l.apply(p as never, x, { training: false }, s).y.toTyped() as Float64Array);
      t.same(
        run(layer, vars.params, vars.state),
        run(fixed, fixedVars.params, fixedVars.state),
        `${what} ${discretisation}: forward as a fixed tau`,
      );
      t.same(layer.config.learn, names, `${what}: config lists ${names.join(', ')} as learned`);
      const loss = (p: Tree): Tensor => {
        const d = layer.apply(p as never, x, { training: true }, vars.state).y.sub(target);
        return d.mul(d).sum();
      };
      const g = grad(loss)(vars.params) as Record<string, Tensor>;
      const p0 = vars.params as Record<string, NDArray>;
      let worst = 0;
      let checked = 0;
      for (const name of names) {
        const base = Array.from(p0[name].toTyped() as Float64Array);
        const gv = g[name].toTyped() as Float64Array;
        for (let i = 0; i < base.length; i++) {
          const eps = 1e-6 * base[i];
          const lossAt = (d: number): number => {
            const v = base.slice();
            v[i] += d;
            return loss({ ...p0, [name]: array(v, { shape: p0[name].shape, dtype: 'float64' }) }).item();
          };
          const fd = (lossAt(eps) - lossAt(-eps)) / (2 * eps);
          t.ok(Math.abs(fd) > 1e-3, `${what} ${discretisation}: d loss / d ${name}[${i}] = ${fd.toExponential(3)} is not negligible`);
          worst = Math.max(worst, Math.abs(fd - gv[i]) / (1e-6 + Math.abs(fd)));
          checked++;
        }
      }
      t.ok(worst < 1e-5, `${what} ${discretisation}: ${checked} tau gradients, worst relative error ${worst.toExponential(2)}`);
    }
  }
});

t.test('training moves a learned tau towards the teacher', async (t) => {
  // A leaky integrator with tau 20 ms learns to reproduce one with tau 50 ms from their outputs.
  const dt = 1e-3;
  const steps = 30;
  const xs = random.uniform(random.key(9), [64, steps, U], { minval: 0, maxval: 1 });
  const teacher = leakyIntegrator({ tau: 0.05, dt });
  const tv = teacher.init(random.key(0), [steps, U]);
  const ys = teacher.apply(tv.params, xs, { training: false }, tv.state).y as NDArray;
  const student = leakyIntegrator({ tau: 0.02, learnTau: true, perUnit: true, dt });
  const sv = student.init(random.key(0), [steps, U]);
  const before = Array.from((sv.params as Record<string, Tensor>).tau.toTyped() as Float32Array);
  const trained = fit(student, sv, xs as NDArray, ys, {
    optimizer: adam(2e-3),
    loss: meanSquaredError(),
    epochs: 20,
    batchSize: 16,
    key: random.key(1),
    verbose: 0,
  });
  const after = Array.from((trained.params as Record<string, Tensor>).tau.toTyped() as Float32Array);
  t.same(before, new Array<number>(U).fill(Math.fround(0.02)), 'starts at 20 ms');
  t.ok(
    after.every((v) => Math.abs(v - 0.05) < Math.abs(0.02 - 0.05) / 2),
    `every unit's tau moved more than half way to 50 ms: ${after.map((v) => (v * 1e3).toFixed(1)).join(', ')} ms`,
  );
  const loss = trained.history.history.loss;
  t.ok(loss[loss.length - 1] < loss[0] / 10, `loss fell from ${loss[0].toExponential(2)} to ${loss[loss.length - 1].toExponential(2)}`);
});

t.test('learn flags of the other time base are refused, naming the layer', async (t) => {
  t.throws(
    () => leaky({ tau: 0.01, learnBeta: true, name: 'lt1' }),
    /leaky 'lt1': learnBeta is for discrete time \(beta\); with tau give learnTau/,
  );
  t.throws(() => leaky({ beta: 0.9, learnTau: true, name: 'lt2' }), /leaky 'lt2': learnTau needs tau \(continuous time\)/);
  t.throws(() => synaptic({ tau: 0.01, learnAlpha: true, name: 'lt3' }), /synaptic 'lt3': learnAlpha is for discrete time/);
  t.throws(() => synaptic({ learnTauSyn: true, name: 'lt4' }), /synaptic 'lt4': learnTauSyn needs tau/);
});
