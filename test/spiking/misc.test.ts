/** Regularizers, constraints, default dt, dtScheduler, energy. */
import t from 'tap';
import { array, random, type NDArray, type Tensor } from '../../core/index.js';
import { dense, globalAveragePooling1d, meanSquaredError, sequential, sgd } from '../../nn/index.js';
import { fit } from '../../nn/index.js';
import {
  constraints,
  dtScheduler,
  getDefaultDt,
  modelEnergy,
  readDt,
  registerDevice,
  registerLayerRule,
  regularizers,
  setDefaultDt,
  spikingActivation,
} from '../../spiking/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>, Number);
const close = (a: number, b: number, rel = 1e-5) => Math.abs(a - b) <= rel * (1 + Math.abs(b));

t.test('l1, l2, l1l2 formulas', async (t) => {
  const xs = [0.5, -2, 3.25, 7, 0, 12];
  const x = array(xs, { shape: [2, 3] });
  const err = (v: number, tg: number | [number, number]) =>
    typeof tg === 'number' ? v - tg : Math.max(0, tg[0] - v) + Math.max(0, v - tg[1]);
  for (const tg of [0, 2, [1, 5]] as (number | [number, number])[]) {
    let s1 = 0,
      s2 = 0;
    for (const v of xs) {
      const e = err(v, tg);
      s1 += Math.abs(e);
      s2 += e * e;
    }
    t.ok(close(regularizers.l1({ l1: 0.3, target: tg })(x).item(), 0.3 * s1), `l1 target ${tg}`);
    t.ok(close(regularizers.l2({ l2: 0.2, target: tg })(x).item(), 0.2 * s2), `l2 target ${tg}`);
    t.ok(close(regularizers.l1l2({ l1: 0.3, l2: 0.2, target: tg })(x).item(), 0.3 * s1 + 0.2 * s2), `l1l2 target ${tg}`);
  }
  t.ok(close(regularizers.l1()(x).item(), 0.01 * xs.reduce((a, v) => a + Math.abs(v), 0)), 'l1 default 0.01');
});

function npPercentile(col: number[], p: number): number {
  const s = [...col].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos),
    hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

t.test('percentile against a numpy-linear reference', async (t) => {
  const rows = 7,
    cols = 3;
  const data = Array.from({ length: rows * cols }, (_, i) => ((i * 37) % 23) - 11 + 0.25 * i);
  const x = array(data, { shape: [rows, cols] });
  for (const p of [0, 10, 33.3, 50, 90, 100]) {
    let want = 0;
    for (let c = 0; c < cols; c++) {
      const col = Array.from({ length: rows }, (_, r) => data[r * cols + c]);
      const q = p === 100 ? Math.max(...col) : npPercentile(col, p);
      want += Math.abs(q - 1);
    }
    t.ok(close(regularizers.percentile({ percentile: p, l1: 1, target: 1 })(x).item(), want, 1e-4), `percentile ${p}`);
  }
  t.same(
    vals(regularizers.percentileOf(x, 100)),
    Array.from({ length: cols }, (_, c) => Math.max(...Array.from({ length: rows }, (_, r) => Math.fround(data[r * cols + c])))),
    'percentile 100 = max',
  );
  t.throws(() => regularizers.l1({ target: [5, 1] }), RangeError, 'lo > hi');
  t.throws(() => regularizers.l1({ target: [1, 2, 3] as unknown as [number, number] }), RangeError, 'wrong length');
  t.throws(() => regularizers.percentile({ percentile: 101, l1: 1 }), RangeError, 'percentile > 100');
  t.throws(() => regularizers.percentile({ percentile: -1, l1: 1 }), RangeError, 'percentile < 0');
});

t.test('constraints', async (t) => {
  t.same(
    vals(
      constraints.mean()(
        array([
          [1, 2, 6],
          [0, 0, 3],
        ]),
      ),
    ),
    [3, 3, 3, 1, 1, 1],
  );
  t.same(vals(constraints.nonNeg()(array([-1, 0, 2.5]))), [0, 0, 2.5]);
});

t.test('setDefaultDt affects only layers created afterwards', async (t) => {
  const before = getDefaultDt();
  t.teardown(() => setDefaultDt(before));
  const a = spikingActivation('relu');
  setDefaultDt(0.05);
  const b = spikingActivation('relu');
  t.equal(a.config.dt, before);
  t.equal(b.config.dt, 0.05);
  t.ok(close(b.init(random.key(0), [3, 2]).state.dt.item(), 0.05));
  t.ok(close(a.init(random.key(0), [3, 2]).state.dt.item(), before));
});

t.test('dtScheduler over 2 epochs of 3 batches', async (t) => {
  const model = sequential([spikingActivation('relu', { dt: 0.01, seed: 1 }), globalAveragePooling1d(), dense(1)]);
  const init = model.init(random.key(0), [5, 2]);
  const x = random.uniform(random.key(1), [6, 5, 2]) as NDArray;
  const y = random.uniform(random.key(2), [6, 1]) as NDArray;
  const sched = dtScheduler((s) => 0.01 * (s + 1));
  const r = fit(model, init, x, y, {
    optimizer: sgd(0.01),
    loss: meanSquaredError(),
    epochs: 2,
    batchSize: 2,
    shuffle: false,
    verbose: 0,
    callbacks: [sched],
  });
  t.same(
    sched.values.map((v) => +v.toFixed(10)),
    [0.01, 0.02, 0.03, 0.04, 0.05, 0.06],
  );
  t.ok(close(readDt(model, r.state)!, 0.06), `final dt ${readDt(model, r.state)}`);
});

t.test('energy', async (t) => {
  const model = sequential([dense(128, { activation: 'relu' })]);
  const vars = model.init(random.key(0), [784]);
  const rep = modelEnergy(model, vars, [784]);
  t.equal(rep.layers[0].connections, 100352);
  t.equal(rep.layers[0].neurons, 128);
  t.ok(close(rep.energy('cpu').total, 8.6e-9 * (100352 + 128), 1e-12), `cpu ${rep.energy('cpu').total}`);
  t.ok(close(rep.energy('cpu').total, 8.64e-4, 1e-3));
  registerDevice('testdev', { energyPerSynop: 1e-9, energyPerNeuron: 2e-9, spiking: false });
  t.ok(close(rep.energy('testdev').total, 1e-9 * 100352 + 2e-9 * 128, 1e-12));
  t.throws(() => rep.energy('loihi'), /example data/, 'spiking device needs example data');
  const ex = array(new Float32Array(2 * 784).fill(0.5), { shape: [2, 784] });
  const rep2 = modelEnergy(model, vars, [784], ex);
  t.ok(close(rep2.energy('loihi').total, 27.1e-12 * 100352 * 0.5 * 0.001 + 81e-12 * 128, 1e-6));
  registerLayerRule('MyLayer', () => ({ connections: 10, neurons: 3, spiking: false }));
  const custom = { ...dense(4), kind: 'MyLayer', name: 'mine' };
  const m2 = sequential([custom as never]);
  const rep3 = modelEnergy(m2, m2.init(random.key(0), [5]), [5]);
  t.equal(rep3.layers[0].connections, 10);
  t.ok(close(rep3.energy('cpu').total, 8.6e-9 * 13, 1e-12));
});
