/**
 * Optimizers against hand recurrences written out in plain JS doubles: Adam (Keras's formula),
 * SGD with momentum and Nesterov momentum, the learning-rate schedules, and `chain`.
 */
import t from 'tap';
import { fromTyped, scalar, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import {
  adam,
  applyUpdates,
  chain,
  exponentialDecay,
  piecewiseConstant,
  scaleByAdam,
  scaleByLearningRate,
  sgd,
  traceMomentum,
  type GradientTransformation,
} from '../../nn/index.js';

const f64 = (v: readonly number[]): NDArray => fromTyped(Float64Array.from(v), [v.length], 'float64');
const f32 = (v: readonly number[]): NDArray => fromTyped(Float32Array.from(v), [v.length], 'float32');
const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);

/** Largest |a_i - b_i| / scale_i over all elements. */
function maxRelErr(actual: readonly number[], expected: readonly number[], scale: readonly number[]): number {
  if (actual.length !== expected.length) return Infinity;
  return Math.max(...actual.map((a, i) => Math.abs(a - expected[i]) / scale[i]));
}

// Params: a float64 vector `w` and a float64 2x1 matrix `b` (two leaves, to exercise the tree).
const w0 = [0.5, -1.25, 2, 0.75];
const b0 = [0.1, -0.3];
// Varying gradients, one per step; component 3 is tiny (1e-6), where epsilon's placement matters.
const gradsW = [
  [0.1, -0.2, 3, 1e-6],
  [-0.5, 0.7, 1e-3, -2e-6],
  [2, -3, 0.25, 5e-7],
];
const gradsB = [
  [1.5, -0.01],
  [0.2, 0.03],
  [-4, 0.02],
];

interface Run {
  w: number[][];
  b: number[][];
  updW: number[][];
}

/** Runs `opt` for the three steps on float64 params; records params and the `w` updates. */
function runOpt(opt: GradientTransformation): Run {
  let params: Tree = { w: f64(w0), b: fromTyped(Float64Array.from(b0), [2, 1], 'float64') };
  let state = opt.init(params);
  const out: Run = { w: [], b: [], updW: [] };
  for (let s = 0; s < gradsW.length; s++) {
    const g = { w: f64(gradsW[s]), b: fromTyped(Float64Array.from(gradsB[s]), [2, 1], 'float64') };
    const [u, next]: [Tree, typeof state] = opt.update(g, state, params);
    state = next;
    params = applyUpdates(params, u);
    const p = params as { w: Tensor; b: Tensor };
    out.updW.push(vals((u as { w: Tensor }).w));
    out.w.push(vals(p.w));
    out.b.push(vals(p.b));
  }
  return out;
}

/** Keras's Adam, one parameter vector, in float64. Returns params and updates after each step. */
function kerasAdam(p0: readonly number[], grads: readonly number[][], lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-7) {
  const p = p0.slice();
  const m = p0.map(() => 0);
  const v = p0.map(() => 0);
  const params: number[][] = [];
  const updates: number[][] = [];
  grads.forEach((g, k) => {
    const step = k + 1;
    const lrT = (lr * Math.sqrt(1 - Math.pow(b2, step))) / (1 - Math.pow(b1, step));
    const u = p.map((_, i) => {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      return (-lrT * m[i]) / (Math.sqrt(v[i]) + eps);
    });
    u.forEach((d, i) => (p[i] += d));
    params.push(p.slice());
    updates.push(u);
  });
  return { params, updates };
}

t.test('adam: first three updates equal Keras closed form (float64 params, default hyperparameters)', async (t) => {
  const r = runOpt(adam());
  const hw = kerasAdam(w0, gradsW);
  const hb = kerasAdam(b0, gradsB);
  for (let s = 0; s < 3; s++) {
    // Structural check (float32-level): catches a wrong formula, eps placement, bias correction.
    const scale = hw.updates[s].map((u) => Math.abs(u));
    t.ok(
      maxRelErr(r.updW[s], hw.updates[s], scale) < 1e-4,
      `step ${s + 1}: updates of w match Keras's formula to 1e-4 relative (got ${r.updW[s]}, want ${hw.updates[s]})`,
    );
  }
  // The params are float64, so the update must be float64-accurate too (relative to the step).
  for (let s = 0; s < 3; s++) {
    const scaleW = hw.updates[s].map((u) => Math.abs(u));
    const errW = maxRelErr(r.updW[s], hw.updates[s], scaleW);
    t.ok(errW < 1e-9, `step ${s + 1}: float64 update of w matches to 1e-9 relative of the step (max rel err ${errW.toExponential(3)})`);
    const errP = Math.max(...r.w[s].map((x, i) => Math.abs(x - hw.params[s][i])));
    t.ok(errP < 1e-12, `step ${s + 1}: float64 params w match to 1e-12 (max abs err ${errP.toExponential(3)})`);
    const errB = Math.max(...r.b[s].map((x, i) => Math.abs(x - hb.params[s][i])));
    t.ok(errB < 1e-12, `step ${s + 1}: float64 params b (second leaf, shape [2,1]) match to 1e-12 (max abs err ${errB.toExponential(3)})`);
  }
});

t.test('adam: custom learning rate, betas and epsilon follow the same formula', async (t) => {
  const r = runOpt(adam(0.05, { beta1: 0.8, beta2: 0.99, epsilon: 1e-3 }));
  const hw = kerasAdam(w0, gradsW, 0.05, 0.8, 0.99, 1e-3);
  for (let s = 0; s < 3; s++) {
    const scale = hw.updates[s].map((u) => Math.abs(u));
    t.ok(maxRelErr(r.updW[s], hw.updates[s], scale) < 1e-4, `step ${s + 1}: ${r.updW[s]} vs ${hw.updates[s]}`);
  }
  // Epsilon placement: Keras adds eps to sqrt(v) (not to sqrt(v_hat) as Optax/the paper). For the
  // tiny component at step 1 the two differ by a factor ~3.8; check we are on Keras's side.
  const g = 1e-6;
  const kerasStep1 = (((-1e-3 * Math.sqrt(1 - 0.999)) / (1 - 0.9)) * (0.1 * g)) / (Math.sqrt(0.001 * g * g) + 1e-7);
  const paperStep1 = (-1e-3 * g) / (Math.abs(g) + 1e-7);
  const r2 = runOpt(adam());
  t.ok(
    Math.abs(r2.updW[0][3] - kerasStep1) < 1e-3 * Math.abs(kerasStep1),
    `tiny-gradient step ${r2.updW[0][3]} is Keras's ${kerasStep1}, not the paper's ${paperStep1}`,
  );
});

t.test('adam: float32 params stay float32 and match the formula to float32 precision', async (t) => {
  const opt = adam();
  let params: Tree = { w: f32(w0) };
  let state = opt.init(params);
  const hw = kerasAdam(w0, gradsW);
  for (let s = 0; s < 3; s++) {
    const [u, next]: [Tree, typeof state] = opt.update({ w: f32(gradsW[s]) }, state, params);
    state = next;
    params = applyUpdates(params, u);
    const w = (params as { w: Tensor }).w;
    t.equal(w.dtype, 'float32', 'params keep their dtype');
    const err = Math.max(...vals(w).map((x, i) => Math.abs(x - hw.params[s][i])));
    t.ok(err < 2e-6, `step ${s + 1}: float32 params within 2e-6 (err ${err.toExponential(2)})`);
  }
});

/** The smallest normal float32 magnitude: below it lie the subnormals. */
const FLT_MIN = 2 ** -126;
const subnormal = (x: number): boolean => x !== 0 && Math.abs(x) < FLT_MIN;

t.test('adam and momentum: moments that decay through the subnormal range are flushed to zero; params unchanged', async (t) => {
  // One gradient, then zeros: the moments decay geometrically. Component 0's m starts at 1e-37
  // (normal) and is subnormal from step ~21 on; component 1's g^2 (1e-40) is subnormal at once;
  // component 2 is an ordinary parameter; component 3's gradient is NaN, which must propagate.
  const p0 = [0.5, -0.25, 1, 0.75];
  const g0 = [1e-36, 1e-20, 0.5, NaN];
  const steps = 40;
  const grads = Array.from({ length: steps }, (_, k) => (k === 0 ? g0 : [0, 0, 0, 0]));
  const ref = kerasAdam(p0, grads);
  // The float64 reference's first moment for component 0 (0.1 * 1e-36 * 0.9^k) does pass through
  // the float32 subnormal range within these steps, so the flush is exercised.
  t.ok(
    grads.some((_, k) => subnormal(0.1 * 1e-36 * 0.9 ** k)),
    'the unflushed first moment of component 0 becomes subnormal within the run',
  );
  const opt = adam();
  let params: Tree = { w: f32(p0) };
  let state = opt.init(params);
  let seenSubnormal = 0;
  for (let s = 0; s < steps; s++) {
    const [u, next]: [Tree, typeof state] = opt.update({ w: f32(grads[s]) }, state, params);
    state = next;
    params = applyUpdates(params, u);
    const adamState = (state as unknown as [{ mu: { w: Tensor }; nu: { w: Tensor } }])[0];
    for (const x of [...vals(adamState.mu.w), ...vals(adamState.nu.w)]) if (subnormal(x)) seenSubnormal++;
    const w = vals((params as { w: Tensor }).w);
    // Params: the unflushed float64 formula, to float32 precision (components 0, 1 never move).
    for (let i = 0; i < 3; i++) {
      if (!(Math.abs(w[i] - ref.params[s][i]) <= 2e-6)) t.fail(`step ${s + 1}, component ${i}: ${w[i]} vs ${ref.params[s][i]}`);
    }
    if (!Number.isNaN(w[3])) t.fail(`step ${s + 1}: a NaN gradient's parameter is ${w[3]}, not NaN`);
  }
  t.equal(seenSubnormal, 0, "no subnormal entry in Adam's first or second moment at any step");
  const finalState = (state as unknown as [{ mu: { w: Tensor }; nu: { w: Tensor } }])[0];
  t.equal(vals(finalState.mu.w)[0], 0, "component 0's first moment ends at exactly zero");
  t.ok(Number.isNaN(vals(finalState.mu.w)[3]) && Number.isNaN(vals(finalState.nu.w)[3]), 'NaN moments stay NaN');
  t.equal(vals((params as { w: Tensor }).w)[0], 0.5, 'the parameter whose moment was flushed is unchanged, as without the flush');

  // SGD's momentum trace decays the same way (0.9^k from 1e-37).
  const mom = traceMomentum(0.9);
  let trace = mom.init({ w: f32([0, 0]) });
  let momSubnormal = 0;
  for (let s = 0; s < steps; s++) {
    const [, next] = mom.update({ w: f32(s === 0 ? [1e-37, NaN] : [0, 0]) }, trace);
    trace = next;
    const tr = vals((trace as { trace: { w: Tensor } }).trace.w);
    if (subnormal(tr[0])) momSubnormal++;
    if (!Number.isNaN(tr[1])) t.fail(`step ${s + 1}: a NaN gradient's momentum is ${tr[1]}`);
  }
  t.equal(momSubnormal, 0, 'no subnormal entry in the momentum trace');
});

t.test('sgd: float64 params get a float64-accurate step', async (t) => {
  // lr 0.1 is not representable in float32; a float64 step must still be -0.1 * g exactly.
  const opt = sgd(0.1);
  const p = { w: f64([1, 2, 3]) };
  const [u] = opt.update({ w: f64([0.3, -0.7, 1.1]) }, opt.init(p), p);
  const got = vals((u as { w: Tensor }).w);
  const want = [0.3, -0.7, 1.1].map((g) => -0.1 * g);
  const err = Math.max(...got.map((x, i) => Math.abs(x - want[i]) / Math.abs(want[i])));
  t.ok(err < 1e-12, `sgd(0.1) update ${got} equals ${want} to 1e-12 relative (rel err ${err.toExponential(3)})`);
});

/** Keras's SGD: v = mom v - lr g; w += v (plain) or w += mom v - lr g (Nesterov). */
function kerasSgd(p0: readonly number[], grads: readonly number[][], lr: number, mom: number, nesterov: boolean): number[][] {
  const p = p0.slice();
  const v = p0.map(() => 0);
  return grads.map((g) => {
    p.forEach((_, i) => {
      v[i] = mom * v[i] - lr * g[i];
      p[i] += nesterov ? mom * v[i] - lr * g[i] : v[i];
    });
    return p.slice();
  });
}

t.test('sgd: plain, momentum and nesterov follow the hand recurrences', async (t) => {
  // lr 0.25 is exact in float32, so these checks are independent of the lr's dtype.
  const lr = 0.25;
  const cases: [string, GradientTransformation, number, boolean][] = [
    ['plain', sgd(lr), 0, false],
    ['momentum 0.9', sgd(lr, { momentum: 0.9 }), 0.9, false],
    ['nesterov 0.9', sgd(lr, { momentum: 0.9, nesterov: true }), 0.9, true],
    ['momentum 0.5 via chain', chain(traceMomentum(0.5), scaleByLearningRate(lr)), 0.5, false],
  ];
  for (const [name, opt, mom, nest] of cases) {
    const r = runOpt(opt);
    const hw = kerasSgd(w0, gradsW, lr, mom, nest);
    const hb = kerasSgd(b0, gradsB, lr, mom, nest);
    for (let s = 0; s < 3; s++) {
      const e = Math.max(...r.w[s].map((x, i) => Math.abs(x - hw[s][i])), ...r.b[s].map((x, i) => Math.abs(x - hb[s][i])));
      t.ok(e < 1e-12, `${name}, step ${s + 1}: params ${r.w[s]} vs ${hw[s]} (err ${e.toExponential(2)})`);
    }
  }
  // Momentum and Nesterov differ from plain SGD after step 1 (the recurrences are not vacuous).
  const plain = runOpt(sgd(lr)).w[2];
  const mom = runOpt(sgd(lr, { momentum: 0.9 })).w[2];
  const nes = runOpt(sgd(lr, { momentum: 0.9, nesterov: true })).w[2];
  t.ok(Math.abs(plain[0] - mom[0]) > 1e-3 && Math.abs(mom[0] - nes[0]) > 1e-3, 'the three variants give different params');
});

const lrOf = (f: (s: Tensor) => unknown, step: number): number => (f(scalar(step)) as Tensor).item();

t.test("piecewiseConstant: values[i] on (boundaries[i-1], boundaries[i]] as Keras's PiecewiseConstantDecay", async (t) => {
  const f = piecewiseConstant([3, 6], [1, 0.5, 0.25]);
  const hand = (s: number): number => (s <= 3 ? 1 : s <= 6 ? 0.5 : 0.25);
  for (let s = 0; s <= 9; s++) t.equal(lrOf(f, s), hand(s), `step ${s}`);
  t.equal(lrOf(piecewiseConstant([], [0.125]), 100), 0.125, 'no boundaries: a constant');
  t.throws(() => piecewiseConstant([1, 2], [1, 2]), /needs 3 values for 2 boundaries/, 'values/boundaries mismatch is an error');
});

t.test('exponentialDecay: continuous and staircase against hand values', async (t) => {
  const initial = 0.1;
  const decaySteps = 4;
  const rate = 0.5;
  const smooth = exponentialDecay(initial, decaySteps, rate);
  const stairs = exponentialDecay(initial, decaySteps, rate, { staircase: true });
  const noStairs = exponentialDecay(initial, decaySteps, rate, { staircase: false });
  for (let s = 0; s <= 10; s++) {
    const want = initial * Math.pow(rate, s / decaySteps);
    const wantStair = initial * Math.pow(rate, Math.floor(s / decaySteps));
    t.ok(Math.abs(lrOf(smooth, s) - want) < 1e-7 * want + 1e-9, `smooth step ${s}: ${lrOf(smooth, s)} vs ${want}`);
    t.ok(Math.abs(lrOf(noStairs, s) - want) < 1e-7 * want + 1e-9, `staircase false step ${s}`);
    t.ok(Math.abs(lrOf(stairs, s) - wantStair) < 1e-7 * wantStair + 1e-9, `staircase step ${s}: ${lrOf(stairs, s)} vs ${wantStair}`);
  }
  t.not(lrOf(smooth, 1), lrOf(stairs, 1), 'staircase differs from smooth inside a period');
});

t.test('schedules drive the optimizer step by step (step count starts at 0)', async (t) => {
  const check = (name: string, sched: (s: Tensor) => Tensor, hand: (s: number) => number): void => {
    const opt = sgd(sched);
    let params: Tree = { w: f32([0]) };
    let state = opt.init(params);
    for (let s = 0; s < 10; s++) {
      const [u, next]: [Tree, typeof state] = opt.update({ w: f32([1]) }, state, params);
      state = next;
      params = applyUpdates(params, u);
      const got = vals((u as { w: Tensor }).w)[0];
      t.ok(Math.abs(got + hand(s)) < 1e-7, `${name}: update ${s} is -lr(${s}) = ${-hand(s)}, got ${got}`);
    }
  };
  check('piecewiseConstant', piecewiseConstant([2, 5], [0.5, 0.25, 0.125]), (s) => (s <= 2 ? 0.5 : s <= 5 ? 0.25 : 0.125));
  check('exponentialDecay staircase', exponentialDecay(0.5, 3, 0.5, { staircase: true }), (s) => 0.5 * Math.pow(0.5, Math.floor(s / 3)));
  check('exponentialDecay smooth', exponentialDecay(0.5, 3, 0.5), (s) => 0.5 * Math.pow(0.5, s / 3));
  // Adam with a schedule: lr enters as lr(t-1) times the bias correction of step t.
  const opt = adam(piecewiseConstant([1], [0.5, 0.25]));
  let params: Tree = { w: f64([0, 0]) };
  let state = opt.init(params);
  const g = [
    [2, -1],
    [-3, 4],
  ];
  const m = [0, 0];
  const v = [0, 0];
  for (let s = 0; s < 2; s++) {
    const [u, next]: [Tree, typeof state] = opt.update({ w: f64(g[s]) }, state, params);
    state = next;
    params = applyUpdates(params, u);
    const lr = s <= 1 ? 0.5 : 0.25;
    const lrT = (lr * Math.sqrt(1 - 0.999 ** (s + 1))) / (1 - 0.9 ** (s + 1));
    const want = g[s].map((gi, i) => {
      m[i] = 0.9 * m[i] + 0.1 * gi;
      v[i] = 0.999 * v[i] + 0.001 * gi * gi;
      return (-lrT * m[i]) / (Math.sqrt(v[i]) + 1e-7);
    });
    const got = vals((u as { w: Tensor }).w);
    t.ok(maxRelErr(got, want, want.map(Math.abs)) < 1e-4, `adam + schedule step ${s + 1}: ${got} vs ${want}`);
  }
});

t.test('chain composes transformations in order and keeps a list of states', async (t) => {
  // adam(lr) is chain(scaleByAdam(), scaleByLearningRate(lr)); an explicit chain gives the same.
  const a = runOpt(adam(0.5));
  const b = runOpt(chain(scaleByAdam(), scaleByLearningRate(0.5)));
  t.same(b.w, a.w, 'explicit chain equals adam');
  // Two learning-rate scalings compose multiplicatively: (-0.5) * (-0.25) * g = 0.125 g.
  const opt = chain(scaleByLearningRate(0.5), scaleByLearningRate(0.25));
  const p = { w: f64([1, 2]) };
  const st = opt.init(p);
  t.ok(Array.isArray(st) && st.length === 2, 'state is a list with one entry per transformation');
  const [u, st2] = opt.update({ w: f64([4, -8]) }, st, p);
  t.same(vals((u as { w: Tensor }).w), [0.5, -1], 'updates are 0.125 * g');
  t.same(
    (st2 as { count: Tensor }[]).map((s) => s.count.item()),
    [1, 1],
    'each inner state advanced one step',
  );
  // Order matters when one stage depends on the magnitude: scaleByAdam normalizes, so
  // lr-then-adam gives ~unit-size steps (sign only), adam-then-lr gives lr-size steps.
  const lrFirst = chain(scaleByLearningRate(0.5), scaleByAdam());
  const adamFirst = chain(scaleByAdam(), scaleByLearningRate(0.5));
  const p1 = { w: f64([0]) };
  const [u1] = lrFirst.update({ w: f64([3]) }, lrFirst.init(p1), p1);
  const [u2] = adamFirst.update({ w: f64([3]) }, adamFirst.init(p1), p1);
  const x1 = vals((u1 as { w: Tensor }).w)[0];
  const x2 = vals((u2 as { w: Tensor }).w)[0];
  // Keras-style step 1: corr * m / (sqrt(v) + eps) with m = 0.1 g, v = 0.001 g^2 -> ~ sign(g).
  t.ok(Math.abs(x1 - -1) < 1e-4, `lr then adam: ${x1} ~ -1 (sign of -0.5 * 3)`);
  t.ok(Math.abs(x2 - -0.5) < 1e-4, `adam then lr: ${x2} ~ -0.5`);
});

t.test('a hand-written jitted training step traces once: init state has the layout of updated state', async (t) => {
  const { jit, valueAndGrad, matmul, mean, square, random } = await import('../../core/index.js');
  const x = random.normal(random.key(1), [8, 3]) as NDArray;
  const y = random.normal(random.key(2), [8, 1]) as NDArray;
  let params: Tree = { w: random.normal(random.key(3), [3, 1]), b: f32([0]) };
  for (const [name, opt] of [
    ['adam', adam(0.05)],
    ['sgd + nesterov momentum', sgd(0.05, { momentum: 0.9, nesterov: true })],
  ] as const) {
    let traces = 0;
    const step = jit((p: Tree, s: Tree, xb: Tensor, yb: Tensor) => {
      traces++;
      const [loss, g] = valueAndGrad((q: Tree) => {
        const { w, b } = q as { w: Tensor; b: Tensor };
        return mean(square(matmul(xb, w).add(b).sub(yb)));
      })(p);
      const [u, s2] = opt.update(g, s as Tree[], p);
      return { p: applyUpdates(p, u), s: s2, loss };
    });
    let state: Tree = opt.init(params);
    const losses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const out = step(params, state, x, y) as { p: Tree; s: Tree; loss: Tensor };
      params = out.p;
      state = out.s;
      losses.push(out.loss.item());
    }
    t.equal(traces, 1, `${name}: four steps, one trace`);
    t.equal(step.cacheSize, 1, `${name}: one cache entry`);
    t.ok(losses[3] < losses[0], `${name}: the loss falls (${losses[0]} -> ${losses[3]})`);
  }
});
