/**
 * SpikingActivation: rate equivalence (property), straight-through gradients, seeds, stateful
 * threading. Expected values are computed by hand in plain JS.
 */
import t from 'tap';
import fc from 'fast-check';
import { array, broadcastTo, grad, mul, random, sum, type Tensor } from '../../core/index.js';
import { resetLayerNames, type ActivationFn } from '../../nn/index.js';
import { spikingActivation, type SpikingState } from '../../spiking/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>, Number);
const square: ActivationFn = (x) => mul(x, x);

const fns: { name: string; act: 'relu' | 'tanh' | 'sigmoid' | ActivationFn; f: (x: number) => number; df: (x: number) => number }[] = [
  { name: 'relu', act: 'relu', f: (x) => Math.max(0, x), df: (x) => (x > 0 ? 1 : 0) },
  { name: 'tanh', act: 'tanh', f: Math.tanh, df: (x) => 1 - Math.tanh(x) ** 2 },
  {
    name: 'sigmoid',
    act: 'sigmoid',
    f: (x) => 1 / (1 + Math.exp(-x)),
    df: (x) => {
      const s = 1 / (1 + Math.exp(-x));
      return s * (1 - s);
    },
  },
  { name: 'square (user)', act: square, f: (x) => x * x, df: (x) => 2 * x },
];

function run(layer: ReturnType<typeof spikingActivation>, x: Tensor, training = false, key?: Tensor, state?: SpikingState) {
  const init = layer.init(random.key(0), x.shape.slice(1));
  return layer.apply(init.params, x, { training, key }, state ?? init.state);
}

t.test('rate equivalence: mean spikes over T equal f(x) within 1/(T dt)', async (t) => {
  for (const { name, act, f } of fns) {
    resetLayerNames();
    let failure = '';
    const prop = fc.property(
      fc.array(fc.double({ min: -5, max: 5, noNaN: true }), { minLength: 1, maxLength: 4 }),
      fc.double({ min: 0.001, max: 0.1, noNaN: true }),
      fc.integer({ min: 50, max: 200 }),
      fc.integer({ min: 0, max: 1000 }),
      (xs, dt, T, seed) => {
        const units = xs.length;
        const x = broadcastTo(array([[xs]]), [2, T, units]);
        const y = run(spikingActivation(act, { dt, seed }), x).y;
        if (y.shape.join() !== [2, T, units].join()) {
          failure = `shape ${y.shape}`;
          return false;
        }
        const v = vals(y);
        for (let b = 0; b < 2; b++) {
          for (let u = 0; u < units; u++) {
            let s = 0;
            for (let k = 0; k < T; k++) s += v[(b * T + k) * units + u];
            const m = s / T;
            const want = f(Math.fround(xs[u]));
            const tol = 1 / (T * dt) + 1e-4 * Math.max(1, Math.abs(want));
            if (!(Math.abs(m - want) <= tol)) {
              failure = `${name} x=${xs[u]} dt=${dt} T=${T}: mean ${m} want ${want} tol ${tol}`;
              return false;
            }
            // Sign: a negative rate never gives a positive spike.
            if (want < 0)
              for (let k = 0; k < T; k++)
                if (v[(b * T + k) * units + u] > 0) {
                  failure = `${name}: positive spike for negative rate`;
                  return false;
                }
          }
        }
        return true;
      },
    );
    const r = fc.check(prop, { numRuns: 15, seed: 42 });
    t.notOk(r.failed, `${name}: ${failure} ${r.counterexample ? JSON.stringify(r.counterexample) : ''}`);
  }
});

t.test('negative rates give negative spikes (tanh of negative x)', async (t) => {
  const dt = 0.01;
  const x = broadcastTo(array([[[-2]]]), [1, 100, 1]);
  const v = vals(run(spikingActivation('tanh', { dt, seed: 3 }), x).y);
  t.ok(
    v.some((s) => s < 0),
    'some spikes are negative',
  );
  t.ok(
    v.every((s) => s <= 0),
    'no positive spikes',
  );
  t.ok(
    v.every((s) => Math.abs(Math.abs(s) * dt - Math.round(Math.abs(s) * dt)) < 1e-3),
    'spikes are multiples of 1/dt',
  );
});

t.test("gradient is straight-through f'(x) * w, spikingAwareTraining true and false", async (t) => {
  const B = 2,
    T = 5,
    U = 3;
  const xsRaw = [-1.5, -0.3, 0.4, 1.2, 2.5, -2.2];
  const xData: number[] = [];
  const wData: number[] = [];
  for (let b = 0; b < B; b++)
    for (let k = 0; k < T; k++)
      for (let u = 0; u < U; u++) {
        xData.push(xsRaw[(b * 7 + k * 3 + u) % xsRaw.length] + 0.01 * k);
        wData.push((((b + 1) * (k + 2) * (u + 1)) % 5) - 2 + 0.5);
      }
  const x = array(xData, { shape: [B, T, U] });
  const w = array(wData, { shape: [B, T, U] });
  const xv = vals(x);
  const wv = vals(w);
  for (const { name, act, df } of fns) {
    for (const aware of [true, false]) {
      const layer = spikingActivation(act, { dt: 0.01, seed: 1, spikingAwareTraining: aware, returnSequences: true });
      const init = layer.init(random.key(0), [T, U]);
      const g = grad((xx: Tensor) => sum(mul(w, layer.apply(init.params, xx, { training: true }, init.state).y)))(x) as Tensor;
      const gv = vals(g);
      const want = xv.map((xi, i) => wv[i] * df(xi));
      const bad = want.findIndex((e, i) => !(Math.abs(gv[i] - e) <= 1e-4 * (1 + Math.abs(e))));
      t.equal(bad, -1, `${name} aware=${aware}: ${bad >= 0 ? `at ${bad} got ${gv[bad]} want ${want[bad]}` : 'ok'}`);
    }
  }
});

t.test('seeds: same seed same spikes, different seeds differ, keys, missing key', async (t) => {
  const x = broadcastTo(array([[[0.3, 1.7, 4.2, -0.5]]]), [3, 60, 4]);
  const a = vals(run(spikingActivation('relu', { dt: 0.01, seed: 5 }), x).y);
  const b = vals(run(spikingActivation('relu', { dt: 0.01, seed: 5 }), x).y);
  const c = vals(run(spikingActivation('relu', { dt: 0.01, seed: 6 }), x).y);
  t.same(a, b, 'same seed, same spikes (two layers)');
  t.notSame(a, c, 'different seeds differ');
  const u = spikingActivation('relu', { dt: 0.01 });
  const k1 = vals(run(u, x, false, random.key(1)).y);
  const k1b = vals(run(u, x, false, random.key(1)).y);
  const k2 = vals(run(u, x, false, random.key(2)).y);
  t.same(k1, k1b, 'same key, same spikes');
  t.notSame(k1, k2, 'unseeded layer with different ctx.key differ');
  t.throws(
    () => run(spikingActivation('relu', { dt: 0.01, name: 'nokey' }), x),
    /PRNG key|ctx\.key|seed/,
    'unseeded without key throws a clear error',
  );
});

t.test('stateful: ten calls of 10 steps equal one call of 100 steps', async (t) => {
  const xs = [
    [0.37, 2.3, 7.9],
    [1.1, 0.05, 3.3],
  ];
  const full = broadcastTo(array(xs).reshape([2, 1, 3]), [2, 100, 3]);
  const chunk = broadcastTo(array(xs).reshape([2, 1, 3]), [2, 10, 3]);
  const one = spikingActivation('relu', { dt: 0.01, seed: 11, stateful: true });
  const whole = vals(run(one, full).y);
  const layer = spikingActivation('relu', { dt: 0.01, seed: 11, stateful: true });
  const init = layer.init(random.key(0), [10, 3]);
  let state = init.state;
  const pieces: number[][] = [];
  for (let i = 0; i < 10; i++) {
    const r = layer.apply(init.params, chunk, { training: false }, state);
    t.ok(r.state.voltage !== null, 'voltage kept');
    state = r.state;
    pieces.push(vals(r.y));
  }
  // reassemble (batch, time, unit)
  const joined: number[] = [];
  for (let b = 0; b < 2; b++) for (let i = 0; i < 10; i++) joined.push(...pieces[i].slice(b * 30, (b + 1) * 30));
  t.same(joined, whole, 'threaded state reproduces the long run');
});
