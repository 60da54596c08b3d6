/**
 * NIR convolution and pooling nodes (Conv1d, Conv2d, SumPool2d, AvgPool2d) in the graph scan,
 * against float64 loops of PyTorch's definitions written here: cross-correlation with weight
 * (c_out, c_in / groups, ...k), zero padding, stride, dilation and groups; sum pooling and average
 * pooling that counts padded positions (PyTorch's count_include_pad default). Exported conv and
 * pooling layers come back bit for bit.
 */
import t, { type Test } from 'tap';
import { fromTyped, random, type Tensor } from '../../core/index.js';
import {
  averagePooling2d,
  conv1d,
  conv2d,
  dense,
  flatten,
  resetLayerNames,
  sequential,
  timeDistributed,
  type Layer,
} from '../../nn/index.js';
import { leaky } from '../../spiking/index.js';
import * as nir from '../../spiking/nir/index.js';
import { nirArray, type NirGraph, type NirLeafNode, type NirValue } from '../../spiking/nir/index.js';

const node = (type: NirLeafNode['type'], params: Record<string, NirValue>): NirLeafNode => ({ type, params });
const ints = (v: number[]): NirValue => nirArray(v, [v.length], 'int64');

/** A deterministic pseudo-random sequence in [-1, 1) (no dependence on the library's RNG). */
function sequence(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

function single(op: NirLeafNode, inShape: number[], outShape: number[]): NirGraph {
  return {
    type: 'NIRGraph',
    nodes: { in: node('Input', { shape: ints(inShape) }), op, out: node('Output', { shape: ints(outShape) }) },
    edges: [
      ['in', 'op'],
      ['op', 'out'],
    ],
  };
}

/** PyTorch's convNd over one sample x (c_in, ...spatial) flattened; spatial of rank 1 or 2. */
function convLoop(
  x: number[],
  inShape: number[],
  w: number[],
  wShape: number[],
  bias: number[],
  stride: number[],
  pad: number[],
  dilation: number[],
  groups: number,
): { y: number[]; shape: number[] } {
  const sp = inShape.slice(1);
  const [cout, cpg, ...k] = wShape;
  const h = sp.length === 2 ? sp[0] : 1;
  const wd = sp[sp.length - 1];
  const kh = k.length === 2 ? k[0] : 1;
  const kw = k[k.length - 1];
  const [sh, sw] = sp.length === 2 ? stride : [1, stride[0]];
  const [ph, pw] = sp.length === 2 ? pad : [0, pad[0]];
  const [dh, dw] = sp.length === 2 ? dilation : [1, dilation[0]];
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((wd + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  const outPerGroup = cout / groups;
  // The model's params are float32 (as every importer's): the loop uses the same rounded values.
  const wf = w.map(Math.fround);
  const bf = bias.map(Math.fround);
  const y: number[] = [];
  for (let o = 0; o < cout; o++) {
    const g = Math.floor(o / outPerGroup);
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        let acc = bf[o];
        for (let c = 0; c < cpg; c++)
          for (let a = 0; a < kh; a++)
            for (let b = 0; b < kw; b++) {
              const r = i * sh + a * dh - ph;
              const q = j * sw + b * dw - pw;
              if (r < 0 || r >= h || q < 0 || q >= wd) continue;
              acc += wf[((o * cpg + c) * kh + a) * kw + b] * x[((g * cpg + c) * h + r) * wd + q];
            }
        y.push(acc);
      }
  }
  return { y, shape: sp.length === 2 ? [cout, oh, ow] : [cout, ow] };
}

/** Sum (or PyTorch average, padding counted) pooling of one sample x (c, h, w). */
function poolLoop(
  x: number[],
  [c, h, w]: number[],
  k: number[],
  s: number[],
  p: number[],
  average: boolean,
): { y: number[]; shape: number[] } {
  const oh = Math.floor((h + 2 * p[0] - k[0]) / s[0]) + 1;
  const ow = Math.floor((w + 2 * p[1] - k[1]) / s[1]) + 1;
  const y: number[] = [];
  for (let ch = 0; ch < c; ch++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        let acc = 0;
        for (let a = 0; a < k[0]; a++)
          for (let b = 0; b < k[1]; b++) {
            const r = i * s[0] + a - p[0];
            const q = j * s[1] + b - p[1];
            if (r >= 0 && r < h && q >= 0 && q < w) acc += x[(ch * h + r) * w + q];
          }
        y.push(average ? acc / (k[0] * k[1]) : acc);
      }
  return { y, shape: [c, oh, ow] };
}

/** Runs a one-node graph over (batch 2, time 3) float64 inputs and compares every step with `loop`. */
function check(t: Test, op: NirLeafNode, inShape: number[], loop: (x: number[]) => { y: number[]; shape: number[] }, seed: number): void {
  const size = inShape.reduce((a, b) => a * b, 1);
  const [batch, time] = [2, 3];
  const xs = sequence(batch * time * size, seed);
  const outShape = loop(xs.slice(0, size)).shape;
  const { model, variables } = nir.modelFromGraph(single(op, inShape, outShape), { dt: 1e-3 });
  const x = fromTyped(Float64Array.from(xs), [batch, time, ...inShape], 'float64');
  const y: Tensor = model.apply(variables.params, x, { training: false }, {}).y;
  t.same(y.shape, [batch, time, ...outShape]);
  const got = Array.from(y.toTyped() as Float64Array);
  const want: number[] = [];
  for (let s = 0; s < batch * time; s++) want.push(...loop(xs.slice(s * size, (s + 1) * size)).y);
  const err = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
  t.ok(err < 1e-12, `max |error| ${err}`);
}

t.test('Conv2d: groups, stride, padding, dilation and bias against a float64 loop', async (t) => {
  const wShape = [4, 2, 3, 2];
  const w = sequence(48, 11);
  const bias = sequence(4, 12);
  const op = node('Conv2d', {
    weight: nirArray(w, wShape, 'float64'),
    bias: nirArray(bias, [4], 'float64'),
    stride: ints([2, 1]),
    padding: ints([1, 0]),
    dilation: ints([1, 2]),
    groups: nirArray([2], [], 'int64'),
    input_shape: ints([6, 7]),
  });
  check(t, op, [4, 6, 7], (x) => convLoop(x, [4, 6, 7], w, wShape, bias, [2, 1], [1, 0], [1, 2], 2), 3);
  // Without input_shape the node takes its input shape from the edge.
  const { input_shape: _drop, ...rest } = op.params;
  check(t, node('Conv2d', rest), [4, 5, 6], (x) => convLoop(x, [4, 5, 6], w, wShape, bias, [2, 1], [1, 0], [1, 2], 2), 4);
});

t.test("Conv1d: padding 'same' with dilation, scalar stride and padding", async (t) => {
  const wShape = [3, 2, 3];
  const w = sequence(18, 21);
  const bias = sequence(3, 22);
  const base = { weight: nirArray(w, wShape, 'float64'), bias: nirArray(bias, [3], 'float64'), groups: nirArray([1], [], 'int64') };
  const same = node('Conv1d', { ...base, stride: nirArray([1], [], 'int64'), padding: 'same', dilation: ints([2]) });
  // Kernel 3, dilation 2: 'same' pads 2 on each side.
  check(t, same, [2, 9], (x) => convLoop(x, [2, 9], w, wShape, bias, [1], [2], [2], 1), 5);
  const strided = node('Conv1d', { ...base, stride: ints([2]), padding: nirArray([1], [], 'int64'), dilation: ints([1]) });
  check(t, strided, [2, 8], (x) => convLoop(x, [2, 8], w, wShape, bias, [2], [1], [1], 1), 6);
});

t.test('SumPool2d and AvgPool2d (padding counted) against float64 loops', async (t) => {
  for (const type of ['SumPool2d', 'AvgPool2d'] as const) {
    const average = type === 'AvgPool2d';
    const overlapping = node(type, { kernel_size: ints([3, 2]), stride: ints([2, 1]), padding: ints([1, 1]) });
    check(t, overlapping, [2, 5, 4], (x) => poolLoop(x, [2, 5, 4], [3, 2], [2, 1], [1, 1], average), 7);
    const tiled = node(type, { kernel_size: ints([2, 2]), stride: ints([2, 2]), padding: ints([0, 0]) });
    check(t, tiled, [3, 5, 4], (x) => poolLoop(x, [3, 5, 4], [2, 2], [2, 2], [0, 0], average), 8);
  }
});

t.test('shape errors name the node', async (t) => {
  const conv = node('Conv2d', {
    weight: nirArray(sequence(8, 1), [2, 1, 2, 2]),
    bias: nirArray([0, 0], [2]),
    stride: ints([1, 1]),
    padding: ints([0, 0]),
    dilation: ints([1, 1]),
    groups: nirArray([1], [], 'int64'),
  });
  t.throws(
    () => nir.modelFromGraph(single(conv, [3, 4, 4], [2, 3, 3]), { dt: 1e-3 }),
    /node 'op' \(Conv2d\): expects input \(c_in = 1, height, width\) per step, got \[3, 4, 4\]/,
  );
  t.throws(
    () => nir.modelFromGraph(single(conv, [1, 4, 4], [2, 4, 4]), { dt: 1e-3 }),
    /shape mismatch on the edge 'op' -> 'out': 'op' \(Conv2d\) gives \[2, 3, 3\]/,
  );
  const pool = node('SumPool2d', { kernel_size: ints([5, 5]), stride: ints([1, 1]), padding: ints([0, 0]) });
  t.throws(
    () => nir.modelFromGraph(single(pool, [1, 3, 3], [1, 1, 1]), { dt: 1e-3 }),
    /node 'op' \(SumPool2d\): the window \[5, 5\] does not fit/,
  );
  const badGroups = node('Conv2d', { ...conv.params, groups: nirArray([3], [], 'int64') });
  t.throws(
    () => nir.modelFromGraph(single(badGroups, [1, 4, 4], [2, 3, 3]), { dt: 1e-3 }),
    /node 'op' \(Conv2d\): groups must be a positive divisor of c_out = 2, got 3/,
  );
});

t.test('export: conv2d -> leaky -> averagePooling2d -> flatten -> dense (channelsFirst) -> NIR -> spiketrace, bit for bit', async (t) => {
  resetLayerNames();
  const dt = 1e-3;
  const cf = { dataFormat: 'channelsFirst' as const };
  const model = sequential([
    timeDistributed(conv2d(4, [3, 2], { ...cf, padding: 'same', groups: 2, dilation: [1, 2] })),
    leaky({ tau: 0.01, r: 3, reset: 'zero', dt, discretisation: 'euler' }),
    timeDistributed(averagePooling2d(2, cf)),
    timeDistributed(flatten()),
    dense(3),
  ]);
  const vars = model.init(random.key(3), [null, 2, 6, 5]);
  const x = random.normal(random.key(4), [2, 15, 2, 6, 5]).mul(2);
  const want = Array.from(model.apply(vars.params, x, { training: false }, vars.state).y.toTyped() as Float32Array);
  const graph = nir.graphFromModel(model, vars, { dt, inputShape: [2, 6, 5] });
  t.same(
    Object.values(graph.nodes).map((n) => n.type),
    ['Input', 'Conv2d', 'LIF', 'AvgPool2d', 'Flatten', 'Affine', 'Output'],
  );
  // The NIR weight is the kernel [kh, kw, c_in / g, c_out] transposed to (c_out, c_in / g, kh, kw).
  const kernel = (vars.params as Record<string, Record<string, Tensor>>).time_distributed.kernel;
  const kv = kernel.toTyped() as Float32Array;
  const weight = (graph.nodes.time_distributed as NirLeafNode).params.weight as nir.NirArray;
  t.same(weight.shape, [4, 1, 3, 2]);
  t.equal(weight.values[((3 * 1 + 0) * 3 + 2) * 2 + 1], kv[((2 * 2 + 1) * 1 + 0) * 4 + 3], 'weight[3, 0, 2, 1] = kernel[2, 1, 0, 3]');
  const back = await nir.load(await nir.saveToBytes(model, vars, { dt, inputShape: [2, 6, 5] }), { dt });
  const got = Array.from(back.model.apply(back.variables.params, x, { training: false }, {}).y.toTyped() as Float32Array);
  t.same(got, want, 'same outputs, bit for bit');
  t.ok(new Set(want).size > 10, 'the outputs vary');
});

t.test('export: conv1d (explicit symmetric padding, stride 2, no bias) round trip, bit for bit', async (t) => {
  resetLayerNames();
  const model = sequential([timeDistributed(conv1d(3, 3, { dataFormat: 'channelsFirst', padding: [[1, 1]], strides: 2, useBias: false }))]);
  const vars = model.init(random.key(5), [null, 2, 9]);
  const x = random.normal(random.key(6), [2, 4, 2, 9]);
  const want = Array.from(model.apply(vars.params, x, { training: false }, vars.state).y.toTyped() as Float32Array);
  const back = await nir.load(await nir.saveToBytes(model, vars, { dt: 1e-3, inputShape: [2, 9] }), { dt: 1e-3 });
  t.same(back.graph.nodes.time_distributed.type, 'Conv1d');
  t.same(Array.from(back.model.apply(back.variables.params, x, { training: false }, {}).y.toTyped() as Float32Array), want);
});

t.test('export errors name the layer', async (t) => {
  resetLayerNames();
  const refuse = (layer: Layer, inputShape: number[], pattern: RegExp): void => {
    const model = sequential([timeDistributed(layer)]);
    const vars = model.init(random.key(1), [null, ...inputShape]);
    t.throws(() => nir.graphFromModel(model, vars, { dt: 1e-3, inputShape }), pattern);
  };
  refuse(conv2d(2, 3), [5, 5, 1], /\(TimeDistributed\): NIR's convolutions and pooling take channels-first tensors/);
  refuse(
    conv1d(2, 3, { dataFormat: 'channelsFirst', padding: 'causal' }),
    [1, 8],
    /\(TimeDistributed\): padding 'causal' pads one side only/,
  );
  refuse(conv2d(2, 2, { dataFormat: 'channelsFirst', padding: 'same' }), [1, 4, 4], /its padding \[0, 1\] differs between the two sides/);
  refuse(conv2d(2, 3, { dataFormat: 'channelsFirst', activation: 'relu' }), [1, 4, 4], /its activation 'relu' has no NIR node/);
  refuse(
    averagePooling2d(3, { dataFormat: 'channelsFirst', padding: 'same', strides: 1 }),
    [1, 5, 5],
    /counts the padding; use padding 'valid'/,
  );
});
