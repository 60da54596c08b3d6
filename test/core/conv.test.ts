/**
 * conv and pooling against an independent float64 reference written here from the definition
 * (direct loops over output positions, window taps and channels; the reference also accumulates
 * the gradients term by term), for random shapes, strides, paddings, dilations and groups;
 * gradients also against central finite differences, second derivatives of conv against finite
 * differences of its gradient; the float32 im2col + gemm kernel against the plain loop.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  avgPool,
  broadcastTo,
  conv1d,
  conv2d,
  convGeneral,
  expandDims,
  fromTyped,
  globalAvgPool,
  globalMaxPool,
  grad,
  jit,
  makeJaxpr,
  maxPool,
  maxPool2d,
  mul,
  sum,
  sumPool,
  tanh,
  transpose,
  type NDArray,
  type Padding,
  type Tensor,
} from '../../core/index.js';
import { convDirect, convIm2col } from '../../core/backend/conv.js';
import type { ConvParams } from '../../core/primitives.js';
import { rng } from '../backend/fixtures/rng.js';
import { expectClose, fdGrad, prop, thrown } from './fixtures/helpers.js';

const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

interface Geometry {
  r: number;
  n: number;
  spatial: number[];
  window: number[];
  groups: number;
  groupIn: number;
  groupOut: number;
  strides: number[];
  dilation: number[];
  lhsDilation: number[];
  padding: 'valid' | 'same' | [number, number][];
}

/** TensorFlow's 'same' padding, written out again for the reference. */
function padsOf(g: Geometry): [number[], number[]] {
  if (g.padding === 'valid') return [g.spatial.map(() => 0), g.spatial.map(() => 0)];
  if (g.padding === 'same') {
    const lo: number[] = [];
    const hi: number[] = [];
    g.spatial.forEach((d, i) => {
      const dl = (d - 1) * g.lhsDilation[i] + 1;
      const kp = (g.window[i] - 1) * g.dilation[i] + 1;
      const out = Math.ceil(dl / g.strides[i]);
      const total = Math.max(0, (out - 1) * g.strides[i] + kp - dl);
      lo.push(Math.floor(total / 2));
      hi.push(total - Math.floor(total / 2));
    });
    return [lo, hi];
  }
  return [g.padding.map((p) => p[0]), g.padding.map((p) => p[1])];
}

function outSpatialOf(g: Geometry): number[] {
  const [lo, hi] = padsOf(g);
  return g.spatial.map(
    (d, i) => Math.floor(((d - 1) * g.lhsDilation[i] + 1 + lo[i] + hi[i] - ((g.window[i] - 1) * g.dilation[i] + 1)) / g.strides[i]) + 1,
  );
}

/** Multi-indices of a shape in row-major order. */
function* indices(shape: readonly number[]): Generator<number[]> {
  const total = size(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let k = 0; k < total; k++) {
    yield idx.slice();
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}
const flatIndex = (idx: readonly number[], shape: readonly number[]): number => idx.reduce((a, i, d) => a * shape[d] + i, 0);

/**
 * The reference: y[n, o, co] = sum over taps k and group channels ci of
 * xDilatedPadded[n, o * s + k * dil, g * Cg + ci] * w[k, ci, co]; with a cotangent `ct`, also
 * the gradients, accumulated one product at a time.
 */
function reference(
  g: Geometry,
  x: Float64Array,
  w: Float64Array,
  ct?: Float64Array,
): { y: Float64Array; gx: Float64Array; gw: Float64Array; outShape: number[] } {
  const [lo] = padsOf(g);
  const outSpatial = outSpatialOf(g);
  const c = g.groups * g.groupIn;
  const o = g.groups * g.groupOut;
  const xShape = [g.n, ...g.spatial, c];
  const wShape = [...g.window, g.groupIn, o];
  const outShape = [g.n, ...outSpatial, o];
  const y = new Float64Array(size(outShape));
  const gx = new Float64Array(x.length);
  const gw = new Float64Array(w.length);
  for (let n = 0; n < g.n; n++) {
    for (const op of indices(outSpatial)) {
      for (let co = 0; co < o; co++) {
        const grp = Math.floor(co / g.groupOut);
        const yi = flatIndex([n, ...op, co], outShape);
        let acc = 0;
        for (const k of indices(g.window)) {
          const at: number[] = [];
          let inside = true;
          for (let d = 0; d < g.r; d++) {
            const pos = op[d] * g.strides[d] + k[d] * g.dilation[d] - lo[d];
            if (pos < 0 || pos % g.lhsDilation[d] !== 0 || pos / g.lhsDilation[d] >= g.spatial[d]) inside = false;
            at.push(pos / g.lhsDilation[d]);
          }
          if (!inside) continue;
          for (let ci = 0; ci < g.groupIn; ci++) {
            const xi = flatIndex([n, ...at, grp * g.groupIn + ci], xShape);
            const wi = flatIndex([...k, ci, co], wShape);
            acc += x[xi] * w[wi];
            if (ct) {
              gx[xi] += ct[yi] * w[wi];
              gw[wi] += ct[yi] * x[xi];
            }
          }
        }
        y[yi] = acc;
      }
    }
  }
  return { y, gx, gw, outShape };
}

const geometryArb = (maxRank = 2, maxSpatial = 6): fc.Arbitrary<Geometry> =>
  fc
    .integer({ min: 1, max: maxRank })
    .chain((r) =>
      fc.record({
        r: fc.constant(r),
        n: fc.integer({ min: 1, max: 2 }),
        spatial: fc.array(fc.integer({ min: 1, max: maxSpatial }), { minLength: r, maxLength: r }),
        window: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: r, maxLength: r }),
        groups: fc.integer({ min: 1, max: 3 }),
        groupIn: fc.integer({ min: 1, max: 2 }),
        groupOut: fc.integer({ min: 1, max: 2 }),
        strides: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: r, maxLength: r }),
        dilation: fc.array(fc.integer({ min: 1, max: 2 }), { minLength: r, maxLength: r }),
        lhsDilation: fc.array(fc.integer({ min: 1, max: 2 }), { minLength: r, maxLength: r }),
        padding: fc.oneof(
          fc.constant<'valid'>('valid'),
          fc.constant<'same'>('same'),
          fc.array(fc.tuple(fc.integer({ min: -1, max: 2 }), fc.integer({ min: -1, max: 2 })), { minLength: r, maxLength: r }),
        ),
      }),
    )
    .filter((g) => outSpatialOf(g).every((d) => d >= 1));

function data(g: Geometry, seed: number): { x: NDArray; w: NDArray; ct: NDArray; xv: Float64Array; wv: Float64Array; ctv: Float64Array } {
  const next = rng(seed);
  const c = g.groups * g.groupIn;
  const o = g.groups * g.groupOut;
  const xShape = [g.n, ...g.spatial, c];
  const wShape = [...g.window, g.groupIn, o];
  const outShape = [g.n, ...outSpatialOf(g), o];
  const gen = (s: number[]) => Float64Array.from({ length: size(s) }, () => next() * 2 - 1);
  const xv = gen(xShape);
  const wv = gen(wShape);
  const ctv = gen(outShape);
  return { x: fromTyped(xv, xShape, 'float64'), w: fromTyped(wv, wShape, 'float64'), ct: fromTyped(ctv, outShape, 'float64'), xv, wv, ctv };
}

const options = (g: Geometry) => ({
  strides: g.strides,
  dilation: g.dilation,
  lhsDilation: g.lhsDilation,
  groups: g.groups,
  padding: g.padding as Padding,
});

t.test('convGeneral matches the float64 reference: forward and both gradients', (t) => {
  prop(
    t,
    'forward, d/dx, d/dw',
    [geometryArb(), fc.integer({ min: 0, max: 1e6 })],
    (g, seed) => {
      const { x, w, ct, xv, wv, ctv } = data(g, seed);
      const ref = reference(g, xv, wv, ctv);
      const y = convGeneral(x, w, options(g));
      t.same(y.shape, ref.outShape);
      expectClose(y.toTyped(), ref.y, 1e-12, 1e-12, `forward ${JSON.stringify(g)}`);
      const [gx, gw] = grad((a: Tensor, b: Tensor) => sum(mul(convGeneral(a, b, options(g)), ct)), { argnums: [0, 1] })(x, w) as Tensor[];
      expectClose(gx.toTyped(), ref.gx, 1e-12, 1e-12, `d/dx ${JSON.stringify(g)}`);
      expectClose(gw.toTyped(), ref.gw, 1e-12, 1e-12, `d/dw ${JSON.stringify(g)}`);
    },
    60,
  );
  prop(
    t,
    '3-D convolutions too',
    [geometryArb(3, 4).filter((g) => g.r === 3), fc.integer({ min: 0, max: 1e6 })],
    (g, seed) => {
      const { x, w, ct, xv, wv, ctv } = data(g, seed);
      const ref = reference(g, xv, wv, ctv);
      expectClose(convGeneral(x, w, options(g)).toTyped(), ref.y, 1e-12, 1e-12, `forward ${JSON.stringify(g)}`);
      const gw = grad((b: Tensor) => sum(mul(convGeneral(x, b, options(g)), ct)))(w) as Tensor;
      expectClose(gw.toTyped(), ref.gw, 1e-12, 1e-12, `d/dw ${JSON.stringify(g)}`);
    },
    10,
  );
  t.end();
});

t.test('conv gradients match central finite differences; second derivatives exist and match too', (t) => {
  prop(
    t,
    'grad of sum(tanh(conv) * ct) vs finite differences',
    [geometryArb(2, 4), fc.integer({ min: 0, max: 1e6 })],
    (g, seed) => {
      const { x, w, ct } = data(g, seed);
      const F = (a: Tensor, b: Tensor): Tensor => sum(mul(tanh(convGeneral(a, b, options(g))), ct));
      const [gx, gw] = grad(F, { argnums: [0, 1] })(x, w) as Tensor[];
      const [nx, nw] = fdGrad((a, b) => F(a, b).item(), [x, w]);
      expectClose(gx.toTyped(), nx, 1e-6, 1e-8, 'd/dx');
      expectClose(gw.toTyped(), nw, 1e-6, 1e-8, 'd/dw');
    },
    12,
  );
  prop(
    t,
    'd/dw of <d/dx F, v> vs finite differences of d/dx F',
    [geometryArb(2, 4), fc.integer({ min: 0, max: 1e6 })],
    (g, seed) => {
      const { x, w, ct } = data(g, seed + 1);
      const v = data(g, seed + 2).x;
      const F = (a: Tensor, b: Tensor): Tensor => sum(mul(tanh(convGeneral(a, b, options(g))), ct));
      const inner = (b: Tensor): Tensor => sum(mul(grad(F, { argnums: 0 })(x, b) as Tensor, v));
      const analytic = grad(inner)(w) as Tensor;
      const [numeric] = fdGrad((b) => inner(b).item(), [w]);
      expectClose(analytic.toTyped(), numeric, 1e-5, 1e-7, 'second derivative');
    },
    8,
  );
  t.end();
});

t.test('conv1d, conv2d, channelsFirst, leading batch axes', (t) => {
  const next = rng(7);
  const arr = (shape: number[]) =>
    fromTyped(
      Float64Array.from({ length: size(shape) }, () => next() - 0.5),
      shape,
      'float64',
    );
  const x = arr([2, 3, 7, 6, 4]);
  const w = arr([3, 2, 4, 5]);
  const y = conv2d(x, w, { padding: 'same', strides: [2, 1] });
  t.same(y.shape, [2, 3, 4, 6, 5], 'leading axes kept, same padding: ceil(7 / 2) x 6');
  const flat = conv2d(x.reshape([6, 7, 6, 4]), w, { padding: 'same', strides: [2, 1] });
  expectClose(y.toTyped(), flat.toTyped(), 0, 0, 'leading axes = flattened batch');
  const first = conv2d(transpose(x, [0, 1, 4, 2, 3]), w, { padding: 'same', strides: [2, 1], dataFormat: 'channelsFirst' });
  t.same(first.shape, [2, 3, 5, 4, 6]);
  expectClose(transpose(first, [0, 1, 3, 4, 2]).toTyped(), y.toTyped(), 0, 0, 'channelsFirst = transposed channelsLast');
  const x1 = arr([2, 9, 3]);
  const w1 = arr([3, 3, 2]);
  const causal = conv1d(x1, w1, { padding: 'causal', dilation: 2 });
  t.same(causal.shape, [2, 9, 2]);
  const explicit = conv1d(x1, w1, { padding: [[4, 0]], dilation: 2 });
  expectClose(causal.toTyped(), explicit.toTyped(), 0, 0, "'causal' pads (k - 1) * dilation before");
  t.end();
});

t.test('a time-tiled input is convolved once per image (broadcast sinking), with the same values', (t) => {
  const next = rng(3);
  const img = fromTyped(
    Float32Array.from({ length: 2 * 6 * 6 * 1 }, () => next()),
    [2, 6, 6, 1],
  );
  const w = fromTyped(
    Float32Array.from({ length: 3 * 3 * 1 * 4 }, () => next() - 0.5),
    [3, 3, 1, 4],
  );
  const f = (im: Tensor, k: Tensor): Tensor => conv2d(broadcastTo(expandDims(im, 1), [2, 5, 6, 6, 1]), k);
  const jaxpr = makeJaxpr(f)(img, w);
  const convs = jaxpr.jaxpr.eqns.filter((e) => e.prim === 'conv');
  t.equal(convs.length, 1);
  t.same(convs[0].inputs[0].aval.shape, [2, 6, 6, 1], 'the conv sees one copy of each image');
  const gradJaxpr = makeJaxpr((k: Tensor) => grad((kk: Tensor) => sum(f(img, kk)))(k))(w);
  for (const e of gradJaxpr.jaxpr.eqns.filter((q) => q.prim === 'conv'))
    t.ok(
      e.inputs.every((a) => a.aval.shape[0] !== 10 && a.aval.shape.at(-2) !== 10),
      'the kernel gradient sums over time first',
    );
  const tiled = jit(f)(img, w);
  const perStep = conv2d(broadcastTo(expandDims(img, 1), [2, 5, 6, 6, 1]).reshape([10, 6, 6, 1]) as Tensor, w);
  expectClose(tiled.toTyped(), perStep.toTyped(), 0, 0, 'same values as convolving every step');
  t.end();
});

t.test('bad input gets errors naming the op and the shapes', (t) => {
  const x = fromTyped(new Float32Array(2 * 5 * 5 * 3), [2, 5, 5, 3]);
  t.match(
    thrown(() => conv2d(x, fromTyped(new Float32Array(3 * 3 * 2 * 4), [3, 3, 2, 4])))?.message,
    /conv2d: the kernel \[3, 3, 2, 4\] takes 2 input channels.*\[2, 5, 5, 3\] has 3 channels/,
  );
  t.match(
    thrown(() => conv2d(x, fromTyped(new Float32Array(3 * 3 * 4), [3, 3, 4])))?.message,
    /conv2d: expected a kernel \[height, width, in, out\], got \[3, 3, 4\]/,
  );
  t.match(
    thrown(() => conv2d(x, fromTyped(new Float32Array(7 * 7 * 3), [7, 7, 3, 1])))?.message,
    /conv2d: input \[2, 5, 5, 3\], kernel \[7, 7, 3, 1\]: the \(dilated\) window \[7, 7\] does not fit/,
  );
  t.match(
    thrown(() => conv2d(x, fromTyped(new Float32Array(9 * 3), [3, 3, 3, 1]), { strides: [1, 0] }))?.message,
    /conv2d: strides must be positive integers/,
  );
  t.match(
    thrown(() => conv2d(x, fromTyped(new Float32Array(9 * 3), [3, 3, 3, 1]), { padding: 'full' as Padding }))?.message,
    /conv2d: unknown padding 'full'/,
  );
  t.match(
    thrown(() => conv1d(x, fromTyped(new Float32Array(6), [3, 2, 1]), { padding: 'causal' }))?.message,
    /conv1d: the kernel \[3, 2, 1\] takes 2 input channels/,
  );
  t.end();
});

t.test('float32 im2col + gemm kernel vs the plain loop and the float64 reference', (t) => {
  const params = (g: Geometry): ConvParams => {
    const [padLow, padHigh] = padsOf(g);
    return { strides: g.strides, padLow, padHigh, lhsDilation: g.lhsDilation, rhsDilation: g.dilation, featureGroupCount: g.groups };
  };
  prop(
    t,
    'random geometries',
    [geometryArb(), fc.integer({ min: 0, max: 1e6 })],
    (g, seed) => {
      const { xv, wv } = data(g, seed);
      const c = g.groups * g.groupIn;
      const x32 = fromTyped(Float32Array.from(xv), [g.n, ...g.spatial, c]);
      const w32 = fromTyped(Float32Array.from(wv), [...g.window, g.groupIn, g.groups * g.groupOut]);
      const fast = convIm2col(x32, w32, params(g)).toTyped();
      const plain = convDirect(x32, w32, params(g)).toTyped();
      const ref = reference(g, Float64Array.from(x32.toTyped()), Float64Array.from(w32.toTyped())).y;
      expectClose(fast, plain, 1e-5, 1e-6, 'im2col vs plain');
      expectClose(fast, ref, 1e-5, 1e-6, 'im2col vs float64 reference');
    },
    40,
  );
  // Large enough for several patch blocks and the SIMD / sparse gemm; a strided (transposed)
  // input view and mostly-zero (spike) input.
  const next = rng(11);
  const g: Geometry = {
    r: 2,
    n: 9,
    spatial: [30, 30],
    window: [3, 3],
    groups: 2,
    groupIn: 8,
    groupOut: 8,
    strides: [1, 1],
    dilation: [1, 1],
    lhsDilation: [1, 1],
    padding: 'same',
  };
  const xs = Float32Array.from({ length: 9 * 30 * 30 * 16 }, () => (next() < 0.15 ? 1 : 0));
  const xT = transpose(fromTyped(xs, [9, 16, 30, 30]), [0, 2, 3, 1]) as NDArray;
  const w = fromTyped(
    Float32Array.from({ length: 9 * 8 * 16 }, () => next() - 0.5),
    [3, 3, 8, 16],
  );
  const fast = convIm2col(xT, w, params(g)).toTyped();
  const plain = convDirect(xT, w, params(g)).toTyped();
  expectClose(fast, plain, 1e-5, 1e-5, 'sparse strided input, 2 groups, several blocks');

  // The batch-contiguous layout (the kernel gradient's operands): the input stored [C, ...S, N]
  // and the kernel [C, ...window, O], both seen through transposed views.
  prop(
    t,
    'batch-contiguous input views',
    [geometryArb().map((g) => ({ ...g, groups: 1 })), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 1e6 })],
    (g0, n, seed) => {
      const g = { ...g0, n };
      const { xv, wv } = data(g, seed);
      const c = g.groupIn;
      const r = g.r;
      const x32 = fromTyped(Float32Array.from(xv), [n, ...g.spatial, c]);
      const w32 = fromTyped(Float32Array.from(wv), [...g.window, c, g.groupOut]);
      const xStored = fromTyped((transpose(x32, [r + 1, ...g.spatial.map((_, i) => i + 1), 0]) as NDArray).toTyped(), [c, ...g.spatial, n]);
      const xView = transpose(xStored, [r + 1, ...g.spatial.map((_, i) => i + 1), 0]) as NDArray;
      const wStored = fromTyped((transpose(w32, [r, ...g.window.map((_, i) => i), r + 1]) as NDArray).toTyped(), [
        c,
        ...g.window,
        g.groupOut,
      ]);
      const wView = transpose(wStored, [...g.window.map((_, i) => i + 1), 0, r + 1]) as NDArray;
      t.equal(xView.strides[0], 1);
      const fast = convIm2col(xView, wView, params(g)).toTyped();
      const ref = reference(g, Float64Array.from(x32.toTyped()), Float64Array.from(w32.toTyped())).y;
      expectClose(fast, ref, 1e-5, 1e-6, 'batch-contiguous im2col vs float64 reference');
    },
    40,
  );
  // A kernel gradient's shapes, large enough for several blocks along the summed axis, with spike
  // (sparse gemm) and dense inputs: lhs = x [64, 30, 30, 8] as [8, 30, 30, 64], rhs = the
  // cotangent [64, 28, 28, 16] as [28, 28, 64, 16], out [8, 3, 3, 16].
  for (const spikes of [true, false]) {
    const xData = Float32Array.from({ length: 64 * 30 * 30 * 8 }, () => (spikes ? (next() < 0.1 ? 1 : 0) : next() - 0.5));
    const ctData = Float32Array.from({ length: 64 * 28 * 28 * 16 }, () => next() - 0.5);
    const lhs = transpose(fromTyped(xData, [64, 30, 30, 8]), [3, 1, 2, 0]) as NDArray;
    const rhs = transpose(fromTyped(ctData, [64, 28, 28, 16]), [1, 2, 0, 3]) as NDArray;
    const p: ConvParams = {
      strides: [1, 1],
      padLow: [0, 0],
      padHigh: [0, 0],
      lhsDilation: [1, 1],
      rhsDilation: [1, 1],
      featureGroupCount: 1,
    };
    const fast = convIm2col(lhs, rhs, p).toTyped();
    const plain = convDirect(lhs, rhs, p).toTyped();
    expectClose(fast, plain, 1e-4, 1e-4, `kernel-gradient shapes, ${spikes ? 'spike' : 'dense'} input, several blocks`);
  }
  // Input-gradient shapes, where the windows read mostly padding or holes: the cotangent
  // [40, 11, 11, 64] padded by 2 on every side (the spiking CNN's second convolution, several
  // patch blocks), and a strided forward convolution's cotangent with holes between its pixels
  // (lhs dilation 2).
  for (const [shape, padLow, padHigh, lhsDilation] of [
    [
      [40, 11, 11, 64],
      [2, 2],
      [2, 2],
      [1, 1],
    ],
    [
      [3, 6, 5, 4],
      [2, 2],
      [3, 2],
      [2, 2],
    ],
  ] as const) {
    const n = shape.reduce((a, c) => a * c, 1);
    const lhs = fromTyped(
      Float32Array.from({ length: n }, () => next() - 0.5),
      [...shape],
    );
    const rhs = fromTyped(
      Float32Array.from({ length: 9 * shape[3] * 8 }, () => next() - 0.5),
      [3, 3, shape[3], 8],
    );
    const p: ConvParams = {
      strides: [1, 1],
      padLow: [...padLow],
      padHigh: [...padHigh],
      lhsDilation: [...lhsDilation],
      rhsDilation: [1, 1],
      featureGroupCount: 1,
    };
    const fast = convIm2col(lhs, rhs, p).toTyped();
    const plain = convDirect(lhs, rhs, p).toTyped();
    expectClose(fast, plain, 1e-4, 1e-5, `input-gradient shapes [${shape.join(', ')}], lhs dilation ${lhsDilation[0]}`);
  }
  t.end();
});

t.test('float32 conv gradients (the VJP convolutions on the im2col kernels) match the float64 reference', (t) => {
  prop(
    t,
    'forward, d/dx, d/dw in float32',
    [geometryArb().map((g) => ({ ...g })), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 1e6 })],
    (g0, n, seed) => {
      const g = { ...g0, n };
      const { xv, wv, ctv } = data(g, seed);
      const x32 = Float32Array.from(xv);
      const w32 = Float32Array.from(wv);
      const ct32 = Float32Array.from(ctv);
      const ref = reference(g, Float64Array.from(x32), Float64Array.from(w32), Float64Array.from(ct32));
      const c = g.groups * g.groupIn;
      const x = fromTyped(x32, [n, ...g.spatial, c]);
      const w = fromTyped(w32, [...g.window, g.groupIn, g.groups * g.groupOut]);
      const ct = fromTyped(ct32, ref.outShape);
      const f = (a: Tensor, b: Tensor) => sum(mul(convGeneral(a, b, options(g)), ct));
      const [gx, gw] = grad(f, { argnums: [0, 1] })(x, w) as Tensor[];
      const [jx, jw] = jit(grad(f, { argnums: [0, 1] }))(x, w) as Tensor[];
      expectClose(gx.toTyped(), ref.gx, 1e-4, 1e-5, `d/dx ${JSON.stringify(g)}`);
      expectClose(gw.toTyped(), ref.gw, 1e-4, 1e-5, `d/dw ${JSON.stringify(g)}`);
      expectClose(jx.toTyped(), ref.gx, 1e-4, 1e-5, `jit d/dx ${JSON.stringify(g)}`);
      expectClose(jw.toTyped(), ref.gw, 1e-4, 1e-5, `jit d/dw ${JSON.stringify(g)}`);
    },
    40,
  );
  t.end();
});

// ----------------------------------------------------------------------------- pooling

interface PoolGeometry {
  r: number;
  n: number;
  c: number;
  spatial: number[];
  window: number[];
  strides: number[];
  dilation: number[];
  padding: 'valid' | 'same';
}

/** Reference pooling: the max (first maximal tap gets the gradient), sum or mean of the taps inside the input. */
function poolReference(
  kind: 'max' | 'sum' | 'avg',
  g: PoolGeometry,
  x: Float64Array,
  ct: Float64Array,
): { y: Float64Array; gx: Float64Array; outShape: number[] } {
  const lo: number[] = [];
  const outSpatial = g.spatial.map((d, i) => {
    const kp = (g.window[i] - 1) * g.dilation[i] + 1;
    if (g.padding === 'valid') {
      lo.push(0);
      return Math.floor((d - kp) / g.strides[i]) + 1;
    }
    const out = Math.ceil(d / g.strides[i]);
    lo.push(Math.floor(Math.max(0, (out - 1) * g.strides[i] + kp - d) / 2));
    return out;
  });
  const xShape = [g.n, ...g.spatial, g.c];
  const outShape = [g.n, ...outSpatial, g.c];
  const y = new Float64Array(size(outShape));
  const gx = new Float64Array(x.length);
  for (let n = 0; n < g.n; n++) {
    for (const op of indices(outSpatial)) {
      for (let ch = 0; ch < g.c; ch++) {
        const yi = flatIndex([n, ...op, ch], outShape);
        const taps: number[] = [];
        for (const k of indices(g.window)) {
          const at = op.map((o, d) => o * g.strides[d] + k[d] * g.dilation[d] - lo[d]);
          if (at.every((a, d) => a >= 0 && a < g.spatial[d])) taps.push(flatIndex([n, ...at, ch], xShape));
        }
        if (kind === 'max' && taps.length === 0) {
          // A window over padding only (dilated 'same' windows): the max's identity.
          y[yi] = -Infinity;
        } else if (kind === 'max') {
          let best = taps[0];
          for (const i of taps) if (x[i] > x[best]) best = i;
          y[yi] = x[best];
          gx[best] += ct[yi];
        } else {
          const scale = kind === 'avg' ? 1 / taps.length : 1;
          y[yi] = taps.reduce((a, i) => a + x[i], 0) * scale;
          for (const i of taps) gx[i] += ct[yi] * scale;
        }
      }
    }
  }
  return { y, gx, outShape };
}

const poolArb = fc
  .integer({ min: 1, max: 2 })
  .chain((r) =>
    fc.record({
      r: fc.constant(r),
      n: fc.integer({ min: 1, max: 2 }),
      c: fc.integer({ min: 1, max: 3 }),
      spatial: fc.array(fc.integer({ min: 1, max: 7 }), { minLength: r, maxLength: r }),
      window: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: r, maxLength: r }),
      strides: fc.oneof(fc.constant([] as number[]), fc.array(fc.integer({ min: 1, max: 3 }), { minLength: r, maxLength: r })),
      dilation: fc.oneof(fc.constant([] as number[]), fc.array(fc.integer({ min: 1, max: 2 }), { minLength: r, maxLength: r })),
      padding: fc.constantFrom<'valid' | 'same'>('valid', 'same'),
    }),
  )
  .map((g) => ({
    ...g,
    strides: g.strides.length ? g.strides : g.window,
    dilation: g.dilation.length ? g.dilation : g.window.map(() => 1),
  }))
  .filter((g) => g.padding === 'same' || g.spatial.every((d, i) => d >= (g.window[i] - 1) * g.dilation[i] + 1));

t.test('max / average / sum pooling match the reference, forward and gradient', (t) => {
  for (const kind of ['max', 'avg', 'sum'] as const) {
    const op = { max: maxPool, avg: avgPool, sum: sumPool }[kind];
    // Small integers make ties common (as spikes do): the max gradient must go to the first.
    prop(
      t,
      `${kind} pooling`,
      [poolArb, fc.integer({ min: 0, max: 1e6 }), fc.boolean()],
      (g, seed, ties) => {
        const next = rng(seed);
        const xShape = [g.n, ...g.spatial, g.c];
        const xv = Float64Array.from({ length: size(xShape) }, () => (ties ? Math.floor(next() * 3) : next() * 2 - 1));
        const x = fromTyped(xv, xShape, 'float64');
        const opts = { strides: g.strides, dilation: g.dilation, padding: g.padding };
        const y = op(x, g.window, opts);
        const ctv = Float64Array.from({ length: y.size }, () => next() * 2 - 1);
        const ref = poolReference(kind, g, xv, ctv);
        t.same(y.shape, ref.outShape);
        expectClose(y.toTyped(), ref.y, 1e-12, 1e-12, `${kind} forward ${JSON.stringify(g)}`);
        const gx = grad((a: Tensor) => sum(mul(op(a, g.window, opts), fromTyped(ctv, y.shape, 'float64'))))(x) as Tensor;
        expectClose(gx.toTyped(), ref.gx, 1e-12, 1e-12, `${kind} gradient ${JSON.stringify(g)}`);
      },
      40,
    );
  }
  t.end();
});

t.test('pooling: NaN propagates, -Infinity is a value, channelsFirst, global pools', (t) => {
  const x = fromTyped(Float32Array.from([1, NaN, 3, 4, -Infinity, -Infinity, -Infinity, -Infinity]), [1, 2, 4, 1]);
  t.same(Array.from(maxPool2d(x, 2).toTyped()), [NaN, 4], 'NaN wins its window');
  t.same(Array.from(maxPool2d(x, [1, 2], { strides: [1, 2] }).toTyped()).slice(2), [-Infinity, -Infinity]);
  const next = rng(5);
  const v = fromTyped(
    Float64Array.from({ length: 2 * 3 * 5 * 4 }, () => next()),
    [2, 3, 5, 4],
    'float64',
  );
  const cf = maxPool2d(transpose(v, [0, 3, 1, 2]), 2, { padding: 'same', dataFormat: 'channelsFirst' });
  expectClose(transpose(cf, [0, 2, 3, 1]).toTyped(), maxPool2d(v, 2, { padding: 'same' }).toTyped(), 0, 0, 'channelsFirst');
  const ga = globalAvgPool(v).toTyped();
  const gm = globalMaxPool(v).toTyped();
  for (let n = 0; n < 2; n++) {
    for (let c = 0; c < 4; c++) {
      let s = 0;
      let m = -Infinity;
      for (let i = 0; i < 15; i++) {
        const e = v.toTyped()[(n * 15 + i) * 4 + c];
        s += e;
        m = Math.max(m, e);
      }
      t.ok(Math.abs(ga[n * 4 + c] - s / 15) < 1e-12 && gm[n * 4 + c] === m, `global pools at ${n}, ${c}`);
    }
  }
  t.match(thrown(() => maxPool2d(v, 2, { strides: [0, 1] }))?.message, /maxPool2d: strides must be positive integers/);
  t.match(
    thrown(() => maxPool2d(fromTyped(new Float32Array(4), [4]), 2))?.message,
    /maxPool2d: expected an input \[batch, \.\.\.2 spatial, channels\]/,
  );
  t.end();
});
