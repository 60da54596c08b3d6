/**
 * End to end: a small MLP learns two synthetic problems generated from PRNG keys (two moons and
 * noisy XOR) to > 95% accuracy on held-out data, through fit / evaluate / predict.
 */
import t from 'tap';
import { array, random, type NDArray, type Tensor } from '../../core/index.js';
import {
  accuracy,
  adam,
  dense,
  evaluate,
  fit,
  predict,
  resetLayerNames,
  sequential,
  sparseCategoricalCrossentropy,
} from '../../nn/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);

/** Two interleaving half circles (sklearn's make_moons) with Gaussian noise, from one key. */
function twoMoons(key: Tensor, n: number, noise = 0.1): { x: NDArray; y: NDArray } {
  const [kt, kn, kp] = random.split(key, 3);
  const theta = vals(random.uniform(kt, [n], { minval: 0, maxval: Math.PI }));
  const eps = vals(random.normal(kn, [n, 2]));
  const order = vals(random.permutation(kp, n));
  const xs: number[] = [];
  const ys: number[] = [];
  for (let j = 0; j < n; j++) {
    const i = order[j];
    const label = i % 2;
    const th = theta[i];
    const px = label === 0 ? Math.cos(th) : 1 - Math.cos(th);
    const py = label === 0 ? Math.sin(th) : 0.5 - Math.sin(th);
    xs.push(px + noise * eps[2 * i], py + noise * eps[2 * i + 1]);
    ys.push(label);
  }
  return { x: array(xs, { shape: [n, 2] }), y: array(ys, { dtype: 'int32' }) };
}

/** XOR of the signs of two uniform coordinates in [-1, 1], keeping a margin of 0.1 to the axes. */
function xor(key: Tensor, n: number): { x: NDArray; y: NDArray } {
  const u = vals(random.uniform(key, [4 * n, 2], { minval: -1, maxval: 1 }));
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < 4 * n && ys.length < n; i++) {
    const [a, b] = [u[2 * i], u[2 * i + 1]];
    if (Math.abs(a) < 0.1 || Math.abs(b) < 0.1) continue;
    xs.push(a, b);
    ys.push(a > 0 !== b > 0 ? 1 : 0);
  }
  return { x: array(xs, { shape: [ys.length, 2] }), y: array(ys, { dtype: 'int32' }) };
}

const loss = sparseCategoricalCrossentropy({ fromLogits: true });

for (const [name, make] of [
  ['two moons', twoMoons],
  ['xor', xor],
] as const) {
  t.test(`a small MLP learns ${name} to > 95% held-out accuracy`, async (t) => {
    resetLayerNames();
    const [kTrain, kTest, kInit, kFit] = random.split(random.key(2024), 4);
    const train = make(kTrain, 256);
    const test = make(kTest, 256);
    const ones = vals(train.y).filter((v) => v === 1).length;
    t.ok(ones > 80 && ones < 176, `both classes present in the training set (${ones}/256 ones)`);
    const model = sequential([dense(16, { activation: 'tanh' }), dense(16, { activation: 'tanh' }), dense(2)]);
    const vars = model.init(kInit, [2]);
    const before = evaluate(model, vars, test.x, test.y, { loss, metrics: [accuracy], batchSize: 64 });
    const start = Date.now();
    const res = fit(model, vars, train.x, train.y, {
      optimizer: adam(0.02),
      loss,
      metrics: [accuracy],
      epochs: 40,
      batchSize: 32,
      key: kFit,
      verbose: 0,
    });
    const seconds = (Date.now() - start) / 1000;
    const after = evaluate(model, res, test.x, test.y, { loss, metrics: [accuracy], batchSize: 64 });
    t.ok(
      after.accuracy > 0.95,
      `held-out accuracy ${after.accuracy} > 0.95 (before training ${before.accuracy}, fit took ${seconds.toFixed(2)}s)`,
    );
    t.ok(after.loss < before.loss / 3, `held-out loss fell from ${before.loss.toFixed(3)} to ${after.loss.toFixed(3)}`);
    const h = res.history.history.loss;
    t.ok(h[h.length - 1] < h[0], 'training loss decreased over the epochs');
    // The held-out accuracy recomputed from predict's logits by hand.
    const z = vals(predict(model, res, test.x));
    const yv = vals(test.y);
    const correct = yv.filter((label, i) => (z[2 * i + 1] > z[2 * i] ? 1 : 0) === label).length;
    t.ok(Math.abs(correct / yv.length - after.accuracy) < 1e-6, 'evaluate accuracy = argmax of predict');
  });
}
