/**
 * Losses and metrics against plain-JS float64 computations: sparse/categorical cross-entropy
 * (from logits and from probabilities with Keras's clipping), mean squared error, accuracy.
 */
import t from 'tap';
import { array, grad, random, type NDArray, type Tensor } from '../../core/index.js';
import {
  accuracy,
  categoricalAccuracy,
  categoricalCrossentropy,
  meanSquaredError,
  sparseCategoricalAccuracy,
  sparseCategoricalCrossentropy,
} from '../../nn/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);
const rows = (x: Tensor): number[][] => {
  const [n, c] = x.shape;
  const v = vals(x);
  return Array.from({ length: n }, (_, i) => v.slice(i * c, (i + 1) * c));
};
const f64 = (nested: number[][]): NDArray => array(nested, { dtype: 'float64' });
const labels = (v: number[]): NDArray => array(v, { dtype: 'int32' });

/** log(sum(exp(z))) in float64, shifted by the max. */
function lse(z: readonly number[]): number {
  const m = Math.max(...z);
  return m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0));
}
/** Direct (unshifted) -log softmax(z)[y]; fine for small logits. */
function directNll(z: readonly number[], y: number): number {
  const e = z.map(Math.exp);
  return -Math.log(e[y] / e.reduce((a, b) => a + b, 0));
}
const meanOf = (v: readonly number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
const clip = (p: number): number => Math.min(Math.max(p, 1e-7), 1 - 1e-7);

t.test('sparseCategoricalCrossentropy fromLogits: stable for logits of 1e4', async (t) => {
  const z = [
    [1e4, 0, -1e4],
    [1e4, 1e4 - 3, 5],
    [-1e4, -1e4, -1e4 + 2],
  ];
  const y = [1, 1, 0];
  // Closed form in float64: loss_i = logsumexp(z_i) - z_i[y_i].
  const want = meanOf(z.map((r, i) => lse(r) - r[y[i]]));
  t.ok(Math.abs(want - (1e4 + 3.048587351573742 + (2 + Math.log(1 + 2 * Math.exp(-2)))) / 3) < 1e-9, 'hand value is itself right');
  const loss = sparseCategoricalCrossentropy({ fromLogits: true });
  for (const dtype of ['float32', 'float64'] as const) {
    const got = loss(labels(y), array(z, { dtype })).item();
    t.ok(Number.isFinite(got), `${dtype}: finite (${got})`);
    const tol = dtype === 'float32' ? 1e-6 * want : 1e-12 * want;
    t.ok(Math.abs(got - want) <= tol, `${dtype}: ${got} equals the closed form ${want} (tol ${tol})`);
  }
  // The gradient is softmax - onehot, also finite at this scale.
  const g = grad((logits: Tensor) => loss(labels(y), logits))(f64(z)) as Tensor;
  const gv = rows(g);
  const wantG = z.map((r, i) => {
    const l = lse(r);
    return r.map((x, j) => (Math.exp(x - l) - (j === y[i] ? 1 : 0)) / z.length);
  });
  const err = Math.max(...gv.flatMap((r, i) => r.map((x, j) => Math.abs(x - wantG[i][j]))));
  t.ok(err < 1e-12, `gradient (softmax - onehot)/n is finite and exact (err ${err})`);
});

t.test('sparseCategoricalCrossentropy fromLogits: equals -log softmax for small random logits', async (t) => {
  const loss = sparseCategoricalCrossentropy({ fromLogits: true });
  for (let seed = 0; seed < 5; seed++) {
    const [k1, k2] = random.split(random.key(seed));
    const n = 7;
    const c = 5;
    const z = random.normal(k1, [n, c], { dtype: 'float64' }).mul(2);
    const y = random.randint(k2, [n], 0, c);
    const zr = rows(z);
    const yv = vals(y);
    const want = meanOf(zr.map((r, i) => directNll(r, yv[i])));
    const got = loss(y, z).item();
    t.ok(Math.abs(got - want) < 1e-12, `seed ${seed}: float64 ${got} vs ${want}`);
    const z32 = array(zr, { dtype: 'float32' });
    const z32v = rows(z32);
    const want32 = meanOf(z32v.map((r, i) => directNll(r, yv[i])));
    t.ok(Math.abs(loss(y, z32).item() - want32) < 1e-5 * Math.max(1, want32), `seed ${seed}: float32 close`);
    // Labels given as [n, 1] are accepted as well (Keras's sparse label layout).
    const y2 = array(
      yv.map((v) => [v]),
      { dtype: 'int32' },
    );
    t.ok(Math.abs(loss(y2, z).item() - want) < 1e-12, `seed ${seed}: labels of shape [n, 1]`);
  }
});

t.test('sparseCategoricalCrossentropy from probabilities: Keras clipping to [1e-7, 1 - 1e-7]', async (t) => {
  const loss = sparseCategoricalCrossentropy();
  const p = [
    [0.2, 0.3, 0.5],
    [0, 0, 1], // p_y = 0 -> -log(1e-7)
    [0, 1, 0], // p_y = 1 -> -log(1 - 1e-7)
    [0.7, 0.1, 0.2],
  ];
  const y = [2, 0, 1, 0];
  const perExample = p.map((r, i) => -Math.log(clip(r[y[i]])));
  t.ok(Math.abs(perExample[1] - 16.11809565095832) < 1e-12, 'hand value: -log(1e-7)');
  const want = meanOf(perExample);
  const got = loss(labels(y), f64(p)).item();
  t.ok(Number.isFinite(got), 'finite even with a zero probability on the label');
  t.ok(Math.abs(got - want) < 1e-12, `${got} vs ${want}`);
  // Same as fromLogits on log-probabilities when nothing is clipped.
  const q = [
    [0.2, 0.3, 0.5],
    [0.6, 0.3, 0.1],
  ];
  const logits = q.map((r) => r.map(Math.log));
  const a = loss(labels([1, 0]), f64(q)).item();
  const b = sparseCategoricalCrossentropy({ fromLogits: true })(labels([1, 0]), f64(logits)).item();
  t.ok(Math.abs(a - b) < 1e-12 && Math.abs(a - (-Math.log(0.3) - Math.log(0.6)) / 2) < 1e-12, `probabilities ${a} = logits ${b}`);
  t.throws(
    () => loss(labels([0, 1, 2]), f64(q)),
    /sparseCategoricalCrossentropy: labels of shape \[3\] do not match predictions \[2, 3\]/,
    'label count mismatch names both shapes',
  );
});

t.test('categoricalCrossentropy against hand values', async (t) => {
  const target = [
    [0, 1, 0],
    [0.25, 0.25, 0.5], // soft targets
  ];
  const z = [
    [1.5, -0.5, 2],
    [0.1, 0.2, -3],
  ];
  const wantLogits = meanOf(z.map((r, i) => target[i].reduce((a, ti, j) => a - ti * (r[j] - lse(r)), 0)));
  const got = categoricalCrossentropy({ fromLogits: true })(f64(target), f64(z)).item();
  t.ok(Math.abs(got - wantLogits) < 1e-12, `fromLogits: ${got} vs ${wantLogits}`);
  const p = [
    [0.1, 0.6, 0.3],
    [0, 0.5, 0.5],
  ];
  const wantProbs = meanOf(p.map((r, i) => target[i].reduce((a, ti, j) => a - ti * Math.log(clip(r[j])), 0)));
  const gotP = categoricalCrossentropy()(f64(target), f64(p)).item();
  t.ok(Math.abs(gotP - wantProbs) < 1e-12, `probabilities (clipped): ${gotP} vs ${wantProbs}`);
  // Rows that do not sum to one are rescaled first, as Keras does.
  const q = [
    [0.2, 1.2, 0.6],
    [1, 2, 1],
  ];
  const wantScaled = meanOf(
    q.map((r, i) => {
      const z2 = r.reduce((a, c) => a + c, 0);
      return target[i].reduce((a, ti, j) => a - ti * Math.log(clip(r[j] / z2)), 0);
    }),
  );
  const gotQ = categoricalCrossentropy()(f64(target), f64(q)).item();
  t.ok(Math.abs(gotQ - wantScaled) < 1e-12, `unnormalised probabilities: ${gotQ} vs ${wantScaled}`);
  // One-hot targets agree with the sparse version.
  const sparse = sparseCategoricalCrossentropy({ fromLogits: true })(labels([1, 2]), f64(z)).item();
  const dense = categoricalCrossentropy({ fromLogits: true })(
    f64([
      [0, 1, 0],
      [0, 0, 1],
    ]),
    f64(z),
  ).item();
  t.ok(Math.abs(sparse - dense) < 1e-12, 'one-hot categorical = sparse');
  t.throws(
    () => categoricalCrossentropy()(f64([[1, 0]]), f64(p)),
    /categoricalCrossentropy: targets of shape \[1, 2\] do not match predictions \[2, 3\]/,
  );
});

t.test('meanSquaredError against hand values', async (t) => {
  const y = [
    [1, 2, 3],
    [-1, 0, 0.5],
  ];
  const yp = [
    [1.5, 1, 3],
    [0, 0, -2],
  ];
  const want = meanOf(y.flatMap((r, i) => r.map((v, j) => (yp[i][j] - v) ** 2)));
  t.equal(want, (0.25 + 1 + 0 + 1 + 0 + 6.25) / 6);
  t.ok(Math.abs(meanSquaredError()(f64(y), f64(yp)).item() - want) < 1e-15);
  // Integer targets are cast to the prediction dtype.
  const got = meanSquaredError()(array([[1, 2]], { dtype: 'int32' }), f64([[0, 4]])).item();
  t.equal(got, 2.5);
  t.throws(
    () => meanSquaredError()(f64([[1, 2]]), f64([[1, 2, 3]])),
    /meanSquaredError: targets of shape \[1, 2\] do not match predictions \[1, 3\]/,
  );
});

t.test('accuracy metrics', async (t) => {
  t.equal(accuracy.metricName, 'accuracy');
  t.equal(accuracy, sparseCategoricalAccuracy);
  const pred = f64([
    [0.1, 0.9, 0],
    [3, 1, 2],
    [-1, -2, -0.5],
    [0, 0, 1],
    [5, 4, 3],
  ]);
  // argmax: 1, 0, 2, 2, 0
  const y = [1, 0, 0, 2, 1];
  const hand = y.filter((v, i) => v === [1, 0, 2, 2, 0][i]).length / y.length;
  t.equal(hand, 0.6);
  t.ok(Math.abs(accuracy(labels(y), pred).item() - hand) < 1e-7, 'int labels [n]');
  t.ok(
    Math.abs(
      accuracy(
        array(
          y.map((v) => [v]),
          { dtype: 'int32' },
        ),
        pred,
      ).item() - hand,
    ) < 1e-7,
    'labels [n, 1]',
  );
  t.ok(Math.abs(accuracy(array(y, { dtype: 'float32' }), pred).item() - hand) < 1e-7, 'float labels');
  t.equal(categoricalAccuracy.metricName, 'categorical_accuracy');
  const onehot = f64(y.map((v) => [0, 1, 2].map((j) => (j === v ? 1 : 0))));
  t.ok(Math.abs(categoricalAccuracy(onehot, pred).item() - hand) < 1e-7, 'categorical accuracy on one-hot targets');
  // All right / all wrong.
  t.equal(accuracy(labels([1, 0, 2, 2, 0]), pred).item(), 1);
  t.equal(accuracy(labels([0, 1, 1, 0, 2]), pred).item(), 0);
});
