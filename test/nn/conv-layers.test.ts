/**
 * The convolution, pooling, dropout and normalization layers against hand computations written
 * here (float64 loops from Keras's definitions): conv2d/conv1d layers with bias and activation,
 * under timeDistributed, pooling and global pooling layers, dropout in training and inference,
 * batch normalization's output and moving statistics, layer normalization; summary rows,
 * safetensors round trips, energy rules, and fit with batch norm and dropout.
 */
import t from 'tap';
import { broadcastTo, expandDims, fromTyped, makeJaxpr, random, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import {
  averagePooling2d,
  batchNormalization,
  conv1d,
  conv2d,
  dense,
  dropout,
  fit,
  flatten,
  globalAveragePooling2d,
  globalMaxPooling2d,
  layerNormalization,
  maxPooling2d,
  resetLayerNames,
  sequential,
  sparseCategoricalCrossentropy,
  adam,
  summary,
  tensorsFromBytes,
  tensorsToBytes,
  timeDistributed,
} from '../../nn/index.js';
import { modelEnergy } from '../../spiking/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);
const f64 = (v: readonly number[], shape: readonly number[]): NDArray => fromTyped(Float64Array.from(v), shape, 'float64');
function lcg(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}
const close = (a: readonly number[], b: readonly number[], tol = 1e-12): boolean =>
  a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= tol * (1 + Math.abs(b[i])));

/** Hand 2-D convolution, 'valid', strides (sh, sw), NHWC x HWIO + bias, then act. */
function handConv2d(
  x: number[],
  [n, h, w, c]: number[],
  k: number[],
  [kh, kw, , f]: number[],
  bias: number[],
  [sh, sw]: number[],
  act = (v: number) => v,
): number[] {
  const oh = Math.floor((h - kh) / sh) + 1;
  const ow = Math.floor((w - kw) / sw) + 1;
  const out: number[] = [];
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        for (let o = 0; o < f; o++) {
          let s = bias[o];
          for (let di = 0; di < kh; di++)
            for (let dj = 0; dj < kw; dj++)
              for (let ci = 0; ci < c; ci++)
                s += x[((b * h + i * sh + di) * w + j * sw + dj) * c + ci] * k[((di * kw + dj) * c + ci) * f + o];
          out.push(act(s));
        }
      }
    }
  }
  return out;
}

t.test('conv2d layer: shapes, values against the hand loop, timeDistributed', (t) => {
  resetLayerNames();
  const layer = conv2d(3, [2, 3], { strides: [1, 2], activation: 'relu' });
  const init = layer.init(random.key(0), [5, 7, 2]);
  t.same(init.outputShape, [4, 3, 3]);
  t.same((init.params as { kernel: Tensor }).kernel.shape, [2, 3, 2, 3]);
  t.same(
    conv2d(4, 3, { padding: 'same', strides: 2 }).init(random.key(0), [7, 8, 1]).outputShape,
    [4, 4, 4],
    "'same': ceil(size / stride)",
  );
  const kv = lcg(2 * 3 * 2 * 3, 1);
  const bv = lcg(3, 2);
  const xv = lcg(2 * 5 * 7 * 2, 3);
  const params = { kernel: f64(kv, [2, 3, 2, 3]), bias: f64(bv, [3]) };
  const y = layer.apply(params, f64(xv, [2, 5, 7, 2]), { training: false }, {}).y;
  t.ok(
    close(
      vals(y),
      handConv2d(xv, [2, 5, 7, 2], kv, [2, 3, 2, 3], bv, [1, 2], (v) => Math.max(v, 0)),
    ),
    'relu(conv + bias)',
  );
  // timeDistributed: (batch, time, ...) convolved step by step.
  const td = timeDistributed(layer);
  t.same(td.init(random.key(0), [4, 5, 7, 2]).outputShape, [4, 4, 3, 3]);
  const xs = lcg(2 * 4 * 5 * 7 * 2, 4);
  const ys = td.apply(params, f64(xs, [2, 4, 5, 7, 2]), { training: false }, {}).y;
  t.same(ys.shape, [2, 4, 4, 3, 3]);
  t.ok(
    close(
      vals(ys),
      handConv2d(xs, [8, 5, 7, 2], kv, [2, 3, 2, 3], bv, [1, 2], (v) => Math.max(v, 0)),
    ),
    'every step convolved',
  );
  // A time-tiled input reaches the conv compact.
  const img = f64(xv, [2, 5, 7, 2]);
  const jaxpr = makeJaxpr(
    (p: Tree, im: Tensor) => td.apply(p as typeof params, broadcastTo(expandDims(im, 1), [2, 6, 5, 7, 2]), { training: false }, {}).y,
  )(params, img);
  const convs = jaxpr.jaxpr.eqns.filter((e) => e.prim === 'conv');
  t.same(
    convs.map((e) => e.inputs[0].aval.shape[0]),
    [2],
    'one conv over the 2 images, not 12 steps',
  );
  t.throws(
    () => layer.apply(params, f64(lcg(2 * 5 * 7 * 3, 5), [2, 5, 7, 3]), { training: false }, {}),
    /conv2d 'conv2d': expected input \[batch, \.\.\.2 spatial, 2 channels\], got shape \[2, 5, 7, 3\]/,
  );
  t.throws(() => layer.init(random.key(0), [5, 7]), /conv2d 'conv2d': expected input shape \[\.\.\.2 spatial, channels\]/);
  t.end();
});

t.test('conv1d layer with causal padding equals the hand loop over a left-padded input', (t) => {
  const layer = conv1d(2, 3, { padding: 'causal', useBias: false });
  const kv = lcg(3 * 2 * 2, 6);
  const xv = lcg(1 * 5 * 2, 7);
  const y = layer.apply({ kernel: f64(kv, [3, 2, 2]) }, f64(xv, [1, 5, 2]), { training: false }, {}).y;
  const padded = [0, 0, 0, 0, ...xv];
  const want = handConv2d(padded, [1, 7, 1, 2], kv, [3, 1, 2, 2], [0, 0], [1, 1]);
  t.ok(close(vals(y), want));
  t.same(layer.init(random.key(0), [5, 2]).outputShape, [5, 2]);
  t.end();
});

t.test('pooling layers and global pools against hand values', (t) => {
  const xv = lcg(1 * 4 * 5 * 2, 8);
  const x = f64(xv, [1, 4, 5, 2]);
  const at = (i: number, j: number, c: number): number => xv[(i * 5 + j) * 2 + c];
  const mp = maxPooling2d(2);
  t.same(mp.init(random.key(0), [4, 5, 2]).outputShape, [2, 2, 2]);
  const want: number[] = [];
  const wantAvg: number[] = [];
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 2; j++) {
      for (let c = 0; c < 2; c++) {
        const w = [at(2 * i, 2 * j, c), at(2 * i, 2 * j + 1, c), at(2 * i + 1, 2 * j, c), at(2 * i + 1, 2 * j + 1, c)];
        want.push(Math.max(...w));
        wantAvg.push(w.reduce((a, b) => a + b, 0) / 4);
      }
    }
  }
  t.ok(close(vals(mp.apply({}, x, { training: false }, {}).y), want), 'max pooling');
  t.ok(close(vals(averagePooling2d(2).apply({}, x, { training: false }, {}).y), wantAvg), 'average pooling');
  t.same(averagePooling2d(2, { padding: 'same' }).init(random.key(0), [4, 5, 2]).outputShape, [2, 3, 2]);
  // Same padding: the last column's windows hold 2 entries, and average over those 2.
  const sameAvg = vals(averagePooling2d(2, { padding: 'same' }).apply({}, x, { training: false }, {}).y);
  t.ok(close([sameAvg[2 * 2 + 0]], [(at(0, 4, 0) + at(1, 4, 0)) / 2]), "'same' average counts only the input");
  const ga = vals(globalAveragePooling2d().apply({}, x, { training: false }, {}).y);
  const gm = vals(globalMaxPooling2d().apply({}, x, { training: false }, {}).y);
  for (let c = 0; c < 2; c++) {
    const all = Array.from({ length: 20 }, (_, k) => xv[k * 2 + c]);
    t.ok(close([ga[c], gm[c]], [all.reduce((a, b) => a + b, 0) / 20, Math.max(...all)]), `global pools, channel ${c}`);
  }
  const td = timeDistributed(maxPooling2d(2));
  t.same(td.init(random.key(0), [3, 4, 5, 2]).outputShape, [3, 2, 2, 2]);
  t.end();
});

t.test('dropout: identity at inference; in training zeros or x / (1 - rate), from the context key', (t) => {
  const layer = dropout(0.25);
  const x = fromTyped(
    Float32Array.from({ length: 4000 }, (_, i) => 1 + (i % 7)),
    [40, 100],
  );
  t.equal(layer.apply({}, x, { training: false }, {}).y, x, 'inference: the input itself');
  const key = random.key(3);
  const y = vals(layer.apply({}, x, { training: true, key }, {}).y);
  const xv = vals(x);
  let kept = 0;
  y.forEach((v, i) => {
    if (v !== 0) {
      kept++;
      if (Math.abs(v - xv[i] / 0.75) > 1e-5) t.fail(`element ${i}: ${v} is neither 0 nor ${xv[i] / 0.75}`);
    }
  });
  t.ok(Math.abs(kept / 4000 - 0.75) < 0.03, `kept fraction ${kept / 4000} near 0.75`);
  t.same(vals(layer.apply({}, x, { training: true, key }, {}).y), y, 'same key, same mask');
  t.throws(() => layer.apply({}, x, { training: true }, {}), /dropout 'dropout': training needs a PRNG key/);
  t.throws(() => dropout(1), /rate must be in \[0, 1\)/);
  t.end();
});

t.test('batchNormalization: batch statistics and moving averages in training, moving statistics at inference', (t) => {
  const layer = batchNormalization({ momentum: 0.9, epsilon: 1e-3 });
  const init = layer.init(random.key(0), [3, 2]);
  t.same(init.state.movingMean.shape, [2]);
  const xv = lcg(4 * 3 * 2, 9);
  const gamma = [1.5, -0.5];
  const beta = [0.25, 2];
  const params = { gamma: f64(gamma, [2]), beta: f64(beta, [2]) };
  const state = { movingMean: f64([0.1, -0.2], [2]), movingVariance: f64([1.2, 0.8], [2]) };
  const r = layer.apply(params, f64(xv, [4, 3, 2]), { training: true }, state);
  const want: number[] = new Array<number>(xv.length);
  const means: number[] = [];
  const vars: number[] = [];
  for (let c = 0; c < 2; c++) {
    const col = xv.filter((_, i) => i % 2 === c);
    const m = col.reduce((a, b) => a + b, 0) / col.length;
    const v = col.reduce((a, b) => a + (b - m) ** 2, 0) / col.length;
    means.push(m);
    vars.push(v);
    xv.forEach((e, i) => {
      if (i % 2 === c) want[i] = ((e - m) / Math.sqrt(v + 1e-3)) * gamma[c] + beta[c];
    });
  }
  t.ok(close(vals(r.y), want), 'normalized with the batch statistics over every axis but the last');
  t.ok(close(vals(r.state.movingMean), [0.9 * 0.1 + 0.1 * means[0], 0.9 * -0.2 + 0.1 * means[1]]), 'moving mean');
  t.ok(close(vals(r.state.movingVariance), [0.9 * 1.2 + 0.1 * vars[0], 0.9 * 0.8 + 0.1 * vars[1]]), 'moving variance');
  const inf = layer.apply(params, f64(xv, [4, 3, 2]), { training: false }, state);
  t.ok(
    close(
      vals(inf.y),
      xv.map((e, i) => ((e - [0.1, -0.2][i % 2]) / Math.sqrt([1.2, 0.8][i % 2] + 1e-3)) * gamma[i % 2] + beta[i % 2]),
    ),
    'inference',
  );
  t.equal(inf.state, state, 'inference leaves the state alone');
  t.end();
});

t.test('layerNormalization normalizes each example over its features', (t) => {
  const layer = layerNormalization({ epsilon: 1e-5 });
  const xv = lcg(3 * 4, 10);
  const gamma = lcg(4, 11);
  const beta = lcg(4, 12);
  const y = vals(layer.apply({ gamma: f64(gamma, [4]), beta: f64(beta, [4]) }, f64(xv, [3, 4]), { training: false }, {}).y);
  const want: number[] = [];
  for (let r = 0; r < 3; r++) {
    const row = xv.slice(r * 4, r * 4 + 4);
    const m = row.reduce((a, b) => a + b, 0) / 4;
    const v = row.reduce((a, b) => a + (b - m) ** 2, 0) / 4;
    row.forEach((e, j) => want.push(((e - m) / Math.sqrt(v + 1e-5)) * gamma[j] + beta[j]));
  }
  t.ok(close(y, want));
  t.end();
});

t.test('summary rows, safetensors round trip, energy rule, fit with batch norm and dropout', (t) => {
  resetLayerNames();
  const model = sequential([
    conv2d(8, 3, { activation: 'relu' }),
    batchNormalization(),
    maxPooling2d(2),
    dropout(0.1),
    flatten(),
    dense(10),
  ]);
  const text = summary(model, [10, 10, 1]);
  t.match(text, /conv2d \(Conv2D\)\s+\(None, 8, 8, 8\)\s+80/);
  t.match(text, /batch_normalization \(BatchNormalization\)\s+\(None, 8, 8, 8\)\s+16/);
  t.match(text, /max_pooling2d \(MaxPooling2D\)\s+\(None, 4, 4, 8\)\s+0/);
  const vars = model.init(random.key(1), [10, 10, 1]);
  const x = fromTyped(Float32Array.from(lcg(16 * 100, 13).map((v) => v * 0.5 + 0.5)), [16, 10, 10, 1]);
  const labels = fromTyped(
    Int32Array.from({ length: 16 }, (_, i) => i % 10),
    [16],
    'int32',
  );
  const trained = fit(model, vars, x, labels, {
    optimizer: adam(0.01),
    loss: sparseCategoricalCrossentropy({ fromLogits: true }),
    epochs: 2,
    batchSize: 8,
    verbose: 0,
    key: random.key(2),
  });
  const bnState = (trained.state as Record<string, { movingMean: Tensor }>).batch_normalization.movingMean;
  t.ok(
    vals(bnState).some((v) => v !== 0),
    'fit moved the moving mean',
  );
  const bytes = tensorsToBytes({ params: trained.params, state: trained.state });
  const back = tensorsFromBytes(bytes) as { params: Tree; state: Tree };
  const before = model.apply(trained.params as never, x, { training: false }, trained.state as never).y;
  const after = model.apply(back.params as never, x, { training: false }, back.state as never).y;
  t.same(vals(after), vals(before), 'safetensors round trip: same outputs');
  const spikingLike = sequential([timeDistributed(conv2d(4, 3, { name: 'c' })), timeDistributed(averagePooling2d(2))]);
  const v2 = spikingLike.init(random.key(0), [null, 6, 6, 2]);
  const report = modelEnergy(spikingLike, v2, [null, 6, 6, 2]);
  t.equal(report.layers[0].connections, 4 * 4 * 4 * 3 * 3 * 2, 'conv synops: outputs x window x input channels');
  t.equal(report.layers[0].neurons, 0, 'a linear conv has no neurons');
  t.equal(report.layers[1].connections, 2 * 2 * 4 * 4, 'average pooling: one synop per tap');
  t.end();
});
