/**
 * Layers against hand computations: dense on rank-3 input, timeDistributed, reshape with -1 and a
 * free time axis, flatten, globalAveragePooling1d, summary(), mapLayers, activity and kernel
 * regularizers, and the input errors.
 */
import t from 'tap';
import { array, fromTyped, indexAxis, random, stack, sum, square, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import {
  activation,
  dense,
  flatten,
  globalAveragePooling1d,
  lambda,
  mapLayers,
  reshape,
  resetLayerNames,
  selectLayers,
  sequential,
  summary,
  timeDistributed,
  type Layer,
} from '../../nn/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);
const f64 = (v: readonly number[], shape: readonly number[]): NDArray => fromTyped(Float64Array.from(v), shape, 'float64');
const ctx = { training: false };
const maxAbsDiff = (a: readonly number[], b: readonly number[]): number =>
  a.length !== b.length ? Infinity : Math.max(0, ...a.map((x, i) => Math.abs(x - b[i])));
/** Deterministic pseudo-random doubles in [-1, 1) (a plain LCG, independent of the library). */
function lcg(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** Hand-written dense on the last axis: rows of length `din` times a [din, dout] kernel + bias. */
function handDense(
  x: readonly number[],
  din: number,
  kernel: readonly number[],
  bias: readonly number[],
  act: (v: number) => number = (v) => v,
): number[] {
  const dout = bias.length;
  const out: number[] = [];
  for (let r = 0; r < x.length / din; r++) {
    for (let j = 0; j < dout; j++) {
      let s = bias[j];
      for (let k = 0; k < din; k++) s += x[r * din + k] * kernel[k * dout + j];
      out.push(act(s));
    }
  }
  return out;
}

t.test('dense on rank-3 input equals per-timestep application and the hand product', async (t) => {
  resetLayerNames();
  const [b, steps, din, dout] = [2, 3, 4, 5];
  const layer = dense(dout, { activation: 'tanh' });
  const init = layer.init(random.key(0), [null, din]);
  t.same(init.outputShape, [null, dout], 'a free time axis passes through');
  const kernel = lcg(din * dout, 1);
  const bias = lcg(dout, 2);
  const params = { kernel: f64(kernel, [din, dout]), bias: f64(bias, [dout]) };
  const xv = lcg(b * steps * din, 3);
  const x = f64(xv, [b, steps, din]);
  const y = layer.apply(params, x, ctx, {}).y;
  t.same(y.shape, [b, steps, dout]);
  t.ok(maxAbsDiff(vals(y), handDense(xv, din, kernel, bias, Math.tanh)) < 1e-14, 'equals the hand product row by row');
  const perStep = stack(
    Array.from({ length: steps }, (_, s) => layer.apply(params, indexAxis(x, 1, s), ctx, {}).y),
    1,
  );
  t.ok(maxAbsDiff(vals(y), vals(perStep)) < 1e-14, 'equals dense applied to each time step');
});

t.test('timeDistributed(dense) equals dense per time step; other inner layers via reshape', async (t) => {
  resetLayerNames();
  const [b, steps, din, dout] = [3, 4, 2, 3];
  const td = timeDistributed(dense(dout, { activation: 'relu' }));
  const init = td.init(random.key(1), [steps, din]);
  t.same(init.outputShape, [steps, dout]);
  const p = init.params as { kernel: Tensor; bias: Tensor };
  const xv = lcg(b * steps * din, 4);
  const x = array(xv, { shape: [b, steps, din] });
  const y = td.apply(init.params, x, ctx, {}).y;
  t.same(y.shape, [b, steps, dout]);
  // Per step, with the inner layer's own apply.
  const inner = td.children![0];
  for (let s = 0; s < steps; s++) {
    const ys = inner.apply(init.params, indexAxis(x, 1, s), ctx, {}).y;
    t.ok(maxAbsDiff(vals(indexAxis(y, 1, s)), vals(ys)) < 1e-6, `time step ${s}`);
  }
  // And against the hand product (float32 tolerance).
  t.ok(
    maxAbsDiff(
      vals(y),
      handDense(vals(x), din, vals(p.kernel), vals(p.bias), (v) => Math.max(0, v)),
    ) < 1e-6,
    'hand product',
  );

  // A non-dense inner layer (a sequential of dense + flatten of a [2, 2] frame) takes the reshape path.
  const frame = sequential([flatten({ name: 'f' }), dense(2, { name: 'd' })]);
  const td2 = timeDistributed(frame);
  const i2 = td2.init(random.key(2), [null, 2, 2]);
  t.same(i2.outputShape, [null, 2]);
  const x2 = array(lcg(2 * 5 * 4, 5), { shape: [2, 5, 2, 2] });
  const y2 = td2.apply(i2.params, x2, ctx, i2.state).y;
  t.same(y2.shape, [2, 5, 2]);
  for (let s = 0; s < 5; s++) {
    const ys = frame.apply(i2.params as Record<string, Tree>, indexAxis(x2, 1, s), ctx, i2.state as Record<string, Tree>).y;
    t.ok(maxAbsDiff(vals(indexAxis(y2, 1, s)), vals(ys)) < 1e-6, `sequential inner, step ${s}`);
  }
  t.throws(
    () => td.init(random.key(0), [din]),
    /timeDistributed '.*': expected \(batch, time, \.\.\.\), got \(None, 2\)/,
    'rank too small',
  );
});

t.test('reshape: -1 with a free time axis, known shapes, errors', async (t) => {
  resetLayerNames();
  const r = reshape([-1, 784]);
  t.same(r.init(random.key(0), [null, 28, 28]).outputShape, [null, 784], '[null, 28, 28] -> [null, 784]');
  t.same(r.init(random.key(0), [5, 28, 28]).outputShape, [5, 784], 'known time axis is inferred');
  const xv = lcg(2 * 3 * 28 * 28, 6);
  const x = array(xv, { shape: [2, 3, 28, 28] });
  const y = r.apply({}, x, ctx, {}).y;
  t.same(y.shape, [2, 3, 784]);
  t.ok(maxAbsDiff(vals(y), vals(x)) === 0, 'row-major order kept');
  // Per example: element (b, s, i*28 + j) = x(b, s, i, j).
  t.equal(vals(y)[1 * 3 * 784 + 2 * 784 + 5 * 28 + 7], Math.fround(xv[((1 * 3 + 2) * 28 + 5) * 28 + 7]), 'y[1, 2, 5*28+7] = x[1, 2, 5, 7]');

  t.same(reshape([4, -1]).init(random.key(0), [2, 6]).outputShape, [4, 3]);
  t.same(reshape([3, 4]).init(random.key(0), [12]).outputShape, [3, 4]);
  t.throws(
    () => reshape([5, -1], { name: 'rs' }).init(random.key(0), [2, 6]),
    /reshape 'rs': cannot reshape \(None, 2, 6\) to \(None, 5, -1\)/,
  );
  t.throws(() => reshape([5, 3], { name: 'rs2' }).init(random.key(0), [2, 6]), /reshape 'rs2'/);
  t.throws(() => reshape([-1, -1], { name: 'rs3' }).init(random.key(0), [2, 6]), /reshape 'rs3': at most one -1/);
  t.throws(
    () => reshape([-1, 784], { name: 'rs4' }).apply({}, array(lcg(2 * 3 * 10, 1), { shape: [2, 3, 10] }), ctx, {}),
    /reshape 'rs4': cannot reshape input of shape \[2, 3, 10\] to \[batch, -1, 784\]/,
  );
});

t.test('flatten', async (t) => {
  resetLayerNames();
  const f = flatten();
  t.same(f.init(random.key(0), [3, 4, 2]).outputShape, [24]);
  const xv = lcg(2 * 24, 7);
  const y = f.apply({}, array(xv, { shape: [2, 3, 4, 2] }), ctx, {}).y;
  t.same(y.shape, [2, 24]);
  t.ok(maxAbsDiff(vals(y), xv) < 1e-7, 'values in row-major order');
  t.throws(() => flatten({ name: 'fl' }).init(random.key(0), [null, 4]), /flatten 'fl': all input axes must be known/);
});

t.test('globalAveragePooling1d is the mean over axis 1', async (t) => {
  resetLayerNames();
  const g = globalAveragePooling1d();
  t.same(g.init(random.key(0), [null, 5]).outputShape, [5]);
  const [b, steps, c] = [2, 7, 5];
  const xv = lcg(b * steps * c, 8);
  const y = g.apply({}, f64(xv, [b, steps, c]), ctx, {}).y;
  t.same(y.shape, [b, c]);
  const want: number[] = [];
  for (let i = 0; i < b; i++)
    for (let k = 0; k < c; k++) {
      let s = 0;
      for (let j = 0; j < steps; j++) s += xv[(i * steps + j) * c + k];
      want.push(s / steps);
    }
  t.ok(maxAbsDiff(vals(y), want) < 1e-15, 'mean over time');
  t.throws(() => g.init(random.key(0), [5]), /globalAveragePooling1d '.*': expected \(batch, time, features\)/);
});

t.test('summary prints names, kinds, output shapes and parameter counts', async (t) => {
  resetLayerNames();
  const model = sequential([flatten({ name: 'flat' }), dense(128, { activation: 'relu', name: 'hidden' }), dense(10, { name: 'logits' })], {
    name: 'mlp',
  });
  const s = summary(model, [28, 28]);
  t.match(s, /Model: "mlp"/);
  const line = (name: string): string => s.split('\n').find((l) => l.startsWith(name)) ?? '';
  t.match(line('flat'), /^flat \(Flatten\)\s+\(None, 784\)\s+0\s*$/);
  t.match(line('hidden'), /^hidden \(Dense\)\s+\(None, 128\)\s+100480\s*$/, 'dense 784->128 has 784*128 + 128 = 100480 params');
  t.equal(784 * 128 + 128, 100480);
  t.match(line('logits'), /^logits \(Dense\)\s+\(None, 10\)\s+1290\s*$/);
  t.match(s, /Total params: 101,770/, 'total = 100480 + 1290');
  t.ok(s.indexOf('flat (') < s.indexOf('hidden (') && s.indexOf('hidden (') < s.indexOf('logits ('), 'layers in order');

  // Free time axis and TimeDistributed.
  resetLayerNames();
  const seq = sequential([
    reshape([-1, 784], { name: 'rs' }),
    timeDistributed(dense(128), { name: 'td' }),
    globalAveragePooling1d({ name: 'gap' }),
  ]);
  const s2 = summary(seq, [null, 28, 28]);
  t.match(s2, /rs \(Reshape\)\s+\(None, None, 784\)\s+0/);
  t.match(s2, /td \(TimeDistributed\(Dense\)\)\s+\(None, None, 128\)\s+100480/);
  t.match(s2, /gap \(GlobalAveragePooling1D\)\s+\(None, 128\)\s+0/);
  t.match(s2, /Total params: 100,480/);
});

t.test('mapLayers drops and replaces layers, keeping names so old params apply', async (t) => {
  resetLayerNames();
  const model = sequential([dense(3, { name: 'h' }), activation('tanh', { name: 'act' }), dense(2, { name: 'out' })], { name: 'net' });
  const init = model.init(random.key(3), [4]);
  const p = init.params as Record<string, { kernel: Tensor; bias: Tensor }>;
  const xv = lcg(5 * 4, 9);
  const x = array(xv, { shape: [5, 4] });
  const hk = vals(p.h.kernel);
  const hb = vals(p.h.bias);
  const ok = vals(p.out.kernel);
  const ob = vals(p.out.bias);
  const full = handDense(handDense(xv, 4, hk, hb, Math.tanh), 3, ok, ob);
  t.ok(maxAbsDiff(vals(model.apply(init.params, x, ctx, init.state).y), full) < 1e-6, 'original model = hand');

  const dropped = mapLayers(model, (l) => (l.name === 'act' ? null : l));
  t.same(
    dropped.children!.map((l) => l.name),
    ['h', 'out'],
    'names kept, act dropped',
  );
  t.equal(dropped.name, 'net');
  const noAct = handDense(handDense(xv, 4, hk, hb), 3, ok, ob);
  t.ok(
    maxAbsDiff(vals(dropped.apply(init.params, x, ctx, init.state).y), noAct) < 1e-6,
    'old params apply to the model without the activation',
  );
  const sel = selectLayers(dropped, init.params) as Record<string, unknown>;
  t.same(Object.keys(sel), ['h', 'out'], 'selectLayers keeps the remaining layers');
  t.equal(sel.h, init.params.h, 'and their params unchanged');

  const replaced = mapLayers(model, (l) =>
    l.name === 'h' ? l.with({ activation: 'relu' }) : l.name === 'act' ? l.with({ activation: 'sigmoid' }) : l,
  );
  t.same(
    replaced.children!.map((l) => l.name),
    ['h', 'act', 'out'],
  );
  const sig = (v: number): number => 1 / (1 + Math.exp(-v));
  const want = handDense(
    handDense(xv, 4, hk, hb, (v) => sig(Math.max(0, v))),
    3,
    ok,
    ob,
  );
  t.ok(
    maxAbsDiff(vals(replaced.apply(init.params, x, ctx, init.state).y), want) < 1e-6,
    'replaced layers (relu, sigmoid) use the old params',
  );
  t.equal(replaced.children![0].config.activation, 'relu');
  t.equal(model.children![0].config.activation, 'linear', 'the original model is unchanged');
});

t.test('activity regularizer penalties are divided by the batch size', async (t) => {
  resetLayerNames();
  const l1 = 0.01;
  const reg = (y: Tensor): Tensor => sum(square(y)).mul(l1);
  const layer = dense(3, { activityRegularizer: reg, activation: 'tanh' });
  const kernel = lcg(2 * 3, 11);
  const bias = lcg(3, 12);
  const params = { kernel: f64(kernel, [2, 3]), bias: f64(bias, [3]) };
  const batch = 4;
  const xv = lcg(batch * 2, 13);
  const r = layer.apply(params, f64(xv, [batch, 2]), ctx, {});
  const y = handDense(xv, 2, kernel, bias, Math.tanh);
  const want = (l1 * y.reduce((a, v) => a + v * v, 0)) / batch;
  t.equal(r.losses.length, 1);
  t.ok(Math.abs(r.losses[0].item() - want) < 1e-15, `penalty ${r.losses[0].item()} = l1 * sum(y^2) / batch = ${want}`);

  // An activation layer's regularizer, inside a sequential: losses are collected from all layers.
  const act = activation('relu', { activityRegularizer: (v) => sum(v).mul(0.5) });
  const model = sequential([layer, act]);
  const init = model.init(random.key(0), [2]);
  const mp = { ...init.params, [layer.name]: params };
  const out = model.apply(mp, f64(xv, [batch, 2]), ctx, init.state);
  t.equal(out.losses.length, 2, 'one penalty per regularized layer');
  const wantAct = (0.5 * y.reduce((a, v) => a + Math.max(0, v), 0)) / batch;
  t.ok(Math.abs(out.losses[1].item() - wantAct) < 1e-15, `activation penalty ${out.losses[1].item()} = ${wantAct}`);
  // Doubling the batch with a copy of the same rows leaves the (per-example) penalty unchanged.
  const r2 = layer.apply(params, f64([...xv, ...xv], [2 * batch, 2]), ctx, {});
  t.ok(Math.abs(r2.losses[0].item() - want) < 1e-15, 'per-example: duplicated batch gives the same penalty');
});

t.test('kernelRegularizer appears in paramLosses (also through sequential and timeDistributed)', async (t) => {
  resetLayerNames();
  const reg = (k: Tensor): Tensor => sum(square(k)).mul(0.5);
  const layer = dense(3, { kernelRegularizer: reg, name: 'reg' });
  const kernel = lcg(4 * 3, 21);
  const params = { kernel: f64(kernel, [4, 3]), bias: f64([1, 2, 3], [3]) };
  const want = 0.5 * kernel.reduce((a, v) => a + v * v, 0);
  t.ok(layer.paramLosses, 'dense with a kernel regularizer has paramLosses');
  const pl = layer.paramLosses!(params);
  t.equal(pl.length, 1);
  t.ok(Math.abs(pl[0].item() - want) < 1e-14, `penalty ${pl[0].item()} = 0.5 * sum(k^2) = ${want} (bias not included)`);
  t.equal(dense(3).paramLosses, undefined, 'no regularizer -> no paramLosses');
  const model = sequential([layer, dense(2, { name: 'plain' })]);
  const init = model.init(random.key(0), [4]);
  const mp = { ...init.params, reg: params };
  const spl = model.paramLosses!(mp);
  t.equal(spl.length, 1);
  t.ok(Math.abs(spl[0].item() - want) < 1e-14, 'sequential collects it');
  const td = timeDistributed(dense(3, { kernelRegularizer: reg }));
  t.ok(Math.abs(td.paramLosses!(params)[0].item() - want) < 1e-14, 'timeDistributed forwards it');
});

t.test('bad input errors name the layer and the shapes', async (t) => {
  resetLayerNames();
  const layer = dense(3, { name: 'probe' });
  const init = layer.init(random.key(0), [4]);
  t.throws(
    () => layer.apply(init.params, array(lcg(2 * 5, 1), { shape: [2, 5] }), ctx, {}),
    /dense 'probe': expected input with last axis 4, got shape \[2, 5\]/,
  );
  const model = sequential([dense(8, { name: 'first' }), dense(2, { name: 'second' })]);
  const mi = model.init(random.key(0), [4]);
  t.throws(
    () => model.apply(mi.params, array(lcg(3 * 6, 1), { shape: [3, 6] }), ctx, mi.state),
    /dense 'first': expected input with last axis 4, got shape \[3, 6\]/,
    'inside a sequential',
  );
  t.throws(() => dense(3, { name: 'nolast' }).init(random.key(0), [4, null]), /dense 'nolast': the last input axis must be known/);
  t.throws(() => dense(0), /dense: units must be a positive integer, got 0/);
  t.throws(
    () => sequential([dense(2, { name: 'twin' }), dense(2, { name: 'twin' })], { name: 'dup' }),
    /sequential 'dup': two layers are named 'twin'/,
  );
  t.throws(() => dense(2, { activation: 'nope' as 'relu', name: 'act' }), /dense 'act': unknown activation 'nope'/);
  // Missing parameters for a layer name.
  t.throws(
    () => model.apply({ first: mi.params.first }, array(lcg(3 * 4, 1), { shape: [3, 4] }), ctx, mi.state),
    /no parameters for layer 'second'/,
  );
});

t.test('automatic names are Keras-style and unique', async (t) => {
  resetLayerNames();
  const names = [dense(1), dense(1), flatten(), dense(1)].map((l: Layer) => l.name);
  t.same(names, ['dense', 'dense_1', 'flatten', 'dense_2']);
  const lam = lambda((x) => x.mul(2), { outputShape: (s) => s });
  t.equal(lam.name, 'lambda');
  t.same(vals(lam.apply({}, array([1, 2]), ctx, {}).y), [2, 4]);
});

t.test('timeDistributed divides an inner activity penalty by batch x time, for dense as for any layer', async (t) => {
  const [b, steps, din] = [3, 4, 5];
  const x = fromTyped(
    Float32Array.from({ length: b * steps * din }, (_, i) => Math.sin(i)),
    [b, steps, din],
  );
  const penalty = (y: Tensor): Tensor => sum(y.mul(y));
  const td = timeDistributed(dense(2, { activityRegularizer: penalty }));
  const vars = td.init(random.key(0), [steps, din]);
  const r = td.apply(vars.params, x, { training: true }, vars.state);
  const y = r.y as NDArray;
  const expected = Array.from(y.toTyped()).reduce((s, v) => s + v * v, 0) / (b * steps);
  t.ok(
    Math.abs((r.losses[0] as NDArray).item() - expected) < 1e-5 * expected,
    `dense fast path: ${(r.losses[0] as NDArray).item()} vs ${expected}`,
  );
  // The same dense inside a sequential takes the reshape path: the same penalty.
  const viaReshape = timeDistributed(sequential([dense(2, { activityRegularizer: penalty, name: 'inner_dense' })]));
  const v2 = viaReshape.init(random.key(0), [steps, din]);
  const params2 = { inner_dense: vars.params as Record<string, unknown> } as unknown as typeof v2.params;
  const r2 = viaReshape.apply(params2, x, { training: true }, v2.state);
  t.ok(Math.abs((r2.losses[0] as NDArray).item() - expected) < 1e-5 * expected, 'reshape path gives the same');
});
