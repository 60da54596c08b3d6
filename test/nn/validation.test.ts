/**
 * Input validation and NaN in training (issue 16): bad labels are rejected by fit/evaluate with
 * the first bad label and its index, and make sparseCategoricalCrossentropy NaN (as JAX) instead
 * of contributing 0; every option of fit/evaluate/predict is checked up front, naming the option,
 * the value and what is allowed; empty datasets are refused; a NaN pixel reaches the loss through
 * relu and the spiking layer, so terminateOnNaN fires; PRNG functions say what a key is.
 */
import t from 'tap';
import { array, fromTyped, random, type NDArray, type Tensor } from '../../core/index.js';
import {
  dense,
  evaluate,
  fit,
  predict,
  resetLayerNames,
  sequential,
  sgd,
  sparseCategoricalCrossentropy,
  terminateOnNaN,
} from '../../nn/index.js';
import { spikingActivation } from '../../spiking/index.js';

const silent = { verbose: 0 as const };
const loss = sparseCategoricalCrossentropy({ fromLogits: true });

function problem(n: number): { x: NDArray; y: NDArray } {
  const [kx, ky] = random.split(random.key(3));
  return { x: random.normal(kx, [n, 4]) as NDArray, y: random.randint(ky, [n], 0, 3) as NDArray };
}
function model3() {
  resetLayerNames();
  const model = sequential([dense(5, { activation: 'relu', name: 'h' }), dense(3, { name: 'out' })]);
  return { model, init: model.init(random.key(1), [4]) };
}
/** y with entry `at` replaced by `value` (in the given dtype). */
function withLabel(y: NDArray, at: number, value: number, dtype: 'int32' | 'float32'): NDArray {
  const v = Array.from(y.toTyped() as Int32Array, Number);
  v[at] = value;
  return fromTyped(dtype === 'int32' ? Int32Array.from(v) : Float32Array.from(v), [v.length], dtype);
}

t.test('sparseCategoricalCrossentropy: a label that is not a class index makes the loss NaN (as JAX), never 0', async (t) => {
  const logits = array([
    [1, 2, 3],
    [0.5, -1, 2],
  ]);
  const good = loss(array([2, 0], { dtype: 'int32' }), logits).item();
  const lse = (r: number[]) => Math.log(r.reduce((s, v) => s + Math.exp(v), 0));
  const want = (lse([1, 2, 3]) - 3 + (lse([0.5, -1, 2]) - 0.5)) / 2;
  t.ok(Math.abs(good - want) < 1e-6, `valid labels: ${good} vs ${want}`);
  for (const [label, dtype] of [
    [3, 'int32'],
    [-1, 'int32'],
    [1000, 'int32'],
    [NaN, 'float32'],
    [1.7, 'float32'],
    [-0.5, 'float32'],
  ] as const) {
    const labels = dtype === 'int32' ? array([label, 0], { dtype }) : fromTyped(Float32Array.of(label, 0), [2], dtype);
    t.ok(Number.isNaN(loss(labels, logits).item()), `label ${label} (${dtype}) gives NaN`);
  }
  t.ok(Number.isFinite(loss(fromTyped(Float32Array.of(2, 0), [2], 'float32'), logits).item()), 'integral float labels are fine');
});

t.test('fit and evaluate reject bad labels once, naming the first bad label and its index', async (t) => {
  const { model, init } = model3();
  const { x, y } = problem(30);
  const opts = { optimizer: sgd(0.1), loss, epochs: 1, batchSize: 8, ...silent };
  t.throws(
    () => fit(model, init, x, withLabel(y, 17, 3, 'int32'), opts),
    /fit: label 3 at index 17 of y is outside \[0, 3\); the model has 3 classes/,
  );
  t.throws(() => fit(model, init, x, withLabel(y, 4, -1, 'int32'), opts), /fit: label -1 at index 4 of y is outside \[0, 3\)/);
  t.throws(() => fit(model, init, x, withLabel(y, 9, NaN, 'float32'), opts), /fit: label NaN at index 9 of y is NaN/);
  t.throws(() => fit(model, init, x, withLabel(y, 2, 1.5, 'float32'), opts), /fit: label 1.5 at index 2 of y is not an integer/);
  t.throws(
    () => fit(model, init, x, y, { ...opts, validationData: [x, withLabel(y, 29, 1000, 'int32')] }),
    /fit: label 1000 at index 29 of validationData y is outside \[0, 3\)/,
  );
  t.throws(() => evaluate(model, init, x, withLabel(y, 0, 7, 'int32'), { loss }), /evaluate: label 7 at index 0 of y is outside \[0, 3\)/);
  const ok = fit(model, init, x, withLabel(y, 3, 2, 'float32'), opts);
  t.equal(ok.history.history.loss.length, 1, 'integral float labels train');
});

t.test('fit / evaluate / predict check every option up front: the option, the value and what is allowed', async (t) => {
  const { model, init } = model3();
  const { x, y } = problem(10);
  const base = { optimizer: sgd(0.1), loss, ...silent };
  const fitCases: [Record<string, unknown>, RegExp][] = [
    [{ batchSize: 0 }, /fit: option batchSize must be a positive integer \(1, 2, \.\.\.\), got 0/],
    [{ batchSize: -4 }, /fit: option batchSize must be a positive integer .*, got -4/],
    [{ batchSize: NaN }, /fit: option batchSize must be a positive integer .*, got NaN/],
    [{ batchSize: 2.5 }, /fit: option batchSize must be a positive integer .*, got 2.5/],
    [{ epochs: -1 }, /fit: option epochs must be a positive integer .*, got -1/],
    [{ epochs: NaN }, /fit: option epochs must be a positive integer .*, got NaN/],
    [{ epochs: 1.5 }, /fit: option epochs must be a positive integer .*, got 1.5/],
    [{ epochs: '2' }, /fit: option epochs must be a positive integer .*, got "2"/],
    [{ shuffle: 'yes' }, /fit: option shuffle must be true or false, got "yes"/],
    [{ verbose: 3 }, /fit: option verbose must be 0 \(silent\), 1 \(progress bar\) or 2 \(one line per epoch\), got 3/],
    [{ key: 0 }, /fit: option key must be a PRNG key .*, got 0/],
    [{ key: array([1, 2]) }, /fit: option key must be a PRNG key .*, got a float32\[2\] tensor/],
    [{ metrics: 'accuracy' }, /fit: option metrics must be an array of metric functions/],
    [{ metrics: [() => 0] }, /fit: option metrics\[0\] must be a metric function with a metricName/],
    [{ callbacks: {} }, /fit: option callbacks must be an array of callbacks, got an object/],
    [{ validationData: [x] }, /fit: option validationData must be a pair \[x, y\] of arrays, got an array of 1/],
    [{ write: 'stdout' }, /fit: option write must be a function, got "stdout"/],
    [{ optimizer: undefined }, /fit: option optimizer must be an optimizer .*; it is required, got undefined/],
    [{ loss: 'mse' }, /fit: option loss must be a function \(it is required\), got "mse"/],
    [{ batch_size: 8 }, /fit: unknown option 'batch_size'; the options are optimizer, loss, .*batchSize/],
  ];
  for (const [change, message] of fitCases)
    t.throws(() => fit(model, init, x, y, { ...base, ...change } as never), message, JSON.stringify(change) ?? String(change));
  t.throws(() => evaluate(model, init, x, y, { loss, batchSize: 0 }), /evaluate: option batchSize must be a positive integer .*, got 0/);
  t.throws(
    () => evaluate(model, init, x, y, { loss, key: [1, 2] } as never),
    /evaluate: option key must be a PRNG key .*, got an array of 2/,
  );
  t.throws(() => evaluate(model, init, x, y, {} as never), /evaluate: option loss must be a function \(it is required\), got undefined/);
  t.throws(
    () => predict(model, init, x, { batchSize: 0 }),
    /predict: option batchSize must be a positive integer .*, got 0/,
    'batchSize 0 no longer loops forever',
  );
  t.throws(() => predict(model, init, x, { batchSize: -1 }), /predict: option batchSize must be a positive integer .*, got -1/);
  t.throws(() => predict(model, init, x, { batchSize: 0.5 }), /predict: option batchSize must be a positive integer .*, got 0.5/);
  t.throws(() => predict(model, init, x, { bs: 2 } as never), /predict: unknown option 'bs'; the options are batchSize, key/);
});

t.test('empty datasets are refused instead of returning untrained weights or NaN', async (t) => {
  const { model, init } = model3();
  const x0 = fromTyped(new Float32Array(0), [0, 4], 'float32');
  const y0 = fromTyped(new Int32Array(0), [0], 'int32');
  t.throws(() => fit(model, init, x0, y0, { optimizer: sgd(0.1), loss, ...silent }), /fit: x has no examples \(shape \[0, 4\]\)/);
  t.throws(() => evaluate(model, init, x0, y0, { loss }), /evaluate: x has no examples \(shape \[0, 4\]\)/);
  const { x, y } = problem(6);
  t.throws(
    () => fit(model, init, x, y, { optimizer: sgd(0.1), loss, validationData: [x0, y0], ...silent }),
    /fit: validationData has no examples/,
  );
});

t.test('a NaN pixel reaches the loss through relu, so terminateOnNaN stops training', async (t) => {
  const { model, init } = model3();
  const { x, y } = problem(16);
  const pixels = Float32Array.from(x.toTyped() as Float32Array);
  pixels[4 * 5 + 2] = NaN;
  const poisoned = fromTyped(pixels, [16, 4], 'float32');
  const res = fit(model, init, poisoned, y, {
    optimizer: sgd(0.1),
    loss,
    epochs: 3,
    batchSize: 4,
    shuffle: false,
    callbacks: [terminateOnNaN()],
    ...silent,
  });
  t.match(
    res.history.stopReason ?? '',
    /terminateOnNaN: loss became NaN at epoch 1, batch 2; training stopped/,
    'stops at the batch holding example 5',
  );
});

t.test('spikingActivation propagates a NaN input to that unit only', async (t) => {
  resetLayerNames();
  const layer = spikingActivation('relu', { dt: 0.01, seed: 0 });
  const { params, state } = layer.init(random.key(0), [5, 3]);
  const rates = new Float32Array(2 * 5 * 3).fill(20);
  rates[(0 * 5 + 2) * 3 + 1] = NaN; // batch 0, step 2, unit 1 (stored batch, time, unit)
  const y = layer.apply(params, fromTyped(rates, [2, 5, 3], 'float32'), { training: false }, state).y as Tensor;
  const out = y.toTyped() as Float32Array;
  const at = (b: number, s: number, u: number) => out[(b * 5 + s) * 3 + u];
  t.ok(
    [0, 1, 2, 3, 4].every((s) => Number.isFinite(at(0, s, 0))),
    'unit 0 of batch 0 stays finite',
  );
  t.ok(Number.isFinite(at(0, 1, 1)), 'unit 1 is finite before the NaN step');
  t.ok(Number.isNaN(at(0, 2, 1)), 'the NaN step of unit 1 is NaN');
  t.ok(
    [2, 3, 4].every((s) => Number.isNaN(at(0, s, 1))),
    'and the voltage carries it to the later steps of that unit',
  );
  t.ok(
    [0, 1, 2, 3, 4].every((s) => !Number.isNaN(at(1, s, 1))),
    'batch 1 is untouched',
  );
});

t.test('a PRNG key that is not a key tensor: the error says what a key is', async (t) => {
  t.throws(
    () => random.normal(0 as never, [3]),
    /normal: expected a PRNG key, a uint32\[2\] tensor made by random.key\(seed\).*, got the number 0/,
  );
  const keys = random.split(random.key(0));
  t.throws(
    () => random.uniform(keys as never, [3]),
    /uniform: expected a PRNG key, .*got a JS array of 2 elements \(split returns an array of keys: pass one of them, e.g. keys\[0\]\)/,
  );
  t.throws(() => random.split(undefined as never), /split: expected a PRNG key, .*got the undefined undefined/);
  t.throws(() => random.bernoulli('k' as never, 0.5, [2]), /bernoulli: expected a PRNG key, .*got the string k/);
  t.throws(() => random.normal(array([1, 2]), [3]), /normal: expected a PRNG key \(uint32\[2\] from key\(seed\)\), got float32\[2\]/);
  t.equal(random.normal(keys[0], [3]).shape.join(), '3', 'a real key works');
});
