/**
 * cpu/gpujs parity for every primitive. The case table is typed over `Primitive` (a new primitive
 * does not compile until it gets a case) and the test walks `Object.keys(shapeRules)` at run time.
 * Each case binds the primitive itself, jit'd once for each backend on the same inputs; float
 * results agree within float32 tolerances (looser for the GPU's exp/log/tanh/pow, which are a few
 * ulp off), integer and bool results exactly. Primitives the gpujs backend runs on the CPU
 * (gathers, random, integer ops) are included: their parity covers the readback and fallback.
 *
 * Needs the native 'gl' package and an X display (`xvfb-run -a`); skips otherwise, unless
 * SPIKETRACE_REQUIRE_GPU=1.
 */
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { gpuBackendOrSkip } from './fixtures/gpu.js';
import { bind } from '../../core/trace.js';
import { shapeRules, type Primitive, type PrimParams } from '../../core/primitives.js';
import {
  cond,
  customVjp,
  dispose,
  fromTyped,
  greater,
  jit,
  less,
  mul,
  random,
  scan,
  sum,
  toDevice,
  whileLoop,
  type DType,
  type NDArray,
  type Tensor,
} from '../../core/index.js';
import { gpuTransferStats } from '../../core/backend/gpu/index.js';

const enabled = gpuBackendOrSkip();

interface ParityCase {
  readonly f: (...xs: Tensor[]) => Tensor;
  readonly inputs: () => NDArray[];
  /** Relative tolerance for float outputs (absolute tolerance is a tenth of it). */
  readonly rtol?: number;
}

const TIGHT = 2e-5;
const LOOSE = 2e-4;

function rand(shape: number[], seed: number, lo = -1, hi = 1): NDArray {
  const next = rng(seed);
  const n = shape.reduce((a, c) => a * c, 1);
  return fromTyped(
    Float32Array.from({ length: n }, () => lo + (hi - lo) * next()),
    shape,
  );
}
/** Values in [-2, 2) on a grid of quarters, so equal pairs (eq, ne) and exact ties occur. */
function grid(shape: number[], seed: number): NDArray {
  const next = rng(seed);
  const n = shape.reduce((a, c) => a * c, 1);
  return fromTyped(
    Float32Array.from({ length: n }, () => Math.floor(next() * 16) / 4 - 2),
    shape,
  );
}
const ints = (values: number[], shape: number[]): NDArray => fromTyped(Int32Array.from(values), shape, 'int32');
const one =
  <P extends Primitive>(prim: P, params: PrimParams[P]) =>
  (...xs: Tensor[]): Tensor =>
    bind(prim, xs, params)[0];
const S = [5, 7];
const unary = (prim: Primitive, lo: number, hi: number, rtol = TIGHT): ParityCase => ({
  f: one(prim, {}),
  inputs: () => [rand(S, 1, lo, hi)],
  rtol,
});
const binary = (prim: Primitive, rtol = TIGHT, lo = -2, hi = 2): ParityCase => ({
  f: one(prim, {}),
  inputs: () => [rand(S, 2, lo, hi), rand(S, 3, 0.5, 2)],
  rtol,
});
const compare = (prim: Primitive): ParityCase => ({ f: one(prim, {}), inputs: () => [grid(S, 4), grid(S, 5)] });
const key = (): NDArray => random.key(7) as NDArray;
const idx = ints([2, 0, 1, 1, 2, 0, 0, 2, 1, 2, 1, 0], [4, 3]);

const CASES: { [P in Primitive]: ParityCase } = {
  neg: unary('neg', -2, 2),
  exp: unary('exp', -3, 3, LOOSE),
  log: unary('log', 0.1, 5, LOOSE),
  log1p: unary('log1p', -0.9, 5, LOOSE),
  sqrt: unary('sqrt', 0, 5),
  tanh: unary('tanh', -3, 3, LOOSE),
  logistic: unary('logistic', -5, 5, LOOSE),
  abs: unary('abs', -2, 2),
  sign: { f: one('sign', {}), inputs: () => [grid(S, 6)] },
  floor: unary('floor', -3.9, 3.9),
  add: binary('add'),
  sub: binary('sub'),
  mul: binary('mul'),
  div: binary('div'),
  max: binary('max'),
  min: binary('min'),
  pow: binary('pow', LOOSE, 0.1, 3),
  lt: compare('lt'),
  le: compare('le'),
  gt: compare('gt'),
  ge: compare('ge'),
  eq: compare('eq'),
  ne: compare('ne'),
  where: { f: (a, b, c) => bind('where', [bind('gt', [a, b], {})[0], b, c], {})[0], inputs: () => [grid(S, 7), grid(S, 8), rand(S, 9)] },
  cast: { f: (x) => bind('cast', [bind('cast', [x], { dtype: 'bool' })[0]], { dtype: 'float32' })[0], inputs: () => [grid(S, 10)] },
  stop_gradient: unary('stop_gradient', -2, 2),
  reduce_sum: { f: one('reduce_sum', { axes: [1] }), inputs: () => [rand([6, 9, 4], 11)] },
  reduce_max: { f: one('reduce_max', { axes: [0, 2] }), inputs: () => [rand([6, 9, 4], 12)] },
  reduce_min: { f: one('reduce_min', { axes: [2] }), inputs: () => [rand([6, 9, 4], 13)] },
  argmax: { f: one('argmax', { axis: 1 }), inputs: () => [rand([6, 9], 14)] },
  reshape: { f: (x) => bind('exp', [bind('reshape', [x], { shape: [7, 5] })[0]], {})[0], inputs: () => [rand(S, 15)], rtol: LOOSE },
  transpose: { f: (x) => bind('neg', [bind('transpose', [x], { perm: [1, 0] })[0]], {})[0], inputs: () => [rand(S, 16)] },
  broadcast_to: {
    f: (x, y) => bind('mul', [bind('broadcast_to', [x], { shape: [5, 7] })[0], y], {})[0],
    inputs: () => [rand([1, 7], 17), rand(S, 18)],
  },
  slice: { f: (x) => bind('abs', [bind('slice', [x], { starts: [1, 2], limits: [4, 7] })[0]], {})[0], inputs: () => [rand(S, 19)] },
  pad: { f: one('pad', { low: [1, 0], high: [2, 3] }), inputs: () => [rand(S, 20)] },
  concatenate: { f: one('concatenate', { axis: 1 }), inputs: () => [rand(S, 21), rand([5, 3], 22)] },
  matmul: { f: one('matmul', {}), inputs: () => [rand([2, 9, 13], 23), rand([2, 13, 6], 24)] },
  conv: {
    f: one('conv', { strides: [1, 2], padLow: [1, 0], padHigh: [1, 1], lhsDilation: [1, 2], rhsDilation: [2, 1], featureGroupCount: 2 }),
    inputs: () => [rand([2, 6, 5, 4], 40), rand([2, 3, 2, 6], 41)],
  },
  take_along_axis: { f: (x) => bind('take_along_axis', [x, idx], { axis: 1 })[0], inputs: () => [rand([4, 3], 25)] },
  scatter_add_along_axis: {
    f: (u) => bind('scatter_add_along_axis', [u, idx], { axis: 1, shape: [4, 5] })[0],
    inputs: () => [rand([4, 3], 26)],
  },
  argsort: { f: one('argsort', { axis: 1 }), inputs: () => [rand([4, 9], 27)] },
  random_bits: { f: one('random_bits', { shape: [3, 4] }), inputs: () => [key()] },
  random_split: { f: one('random_split', { n: 3 }), inputs: () => [key()] },
  random_fold_in: { f: one('random_fold_in', { data: 42 }), inputs: () => [key()] },
  random_uniform: { f: one('random_uniform', { shape: [4, 5], dtype: 'float32', minval: -1, maxval: 2 }), inputs: () => [key()] },
  random_normal: { f: one('random_normal', { shape: [4, 5], dtype: 'float32' }), inputs: () => [key()] },
  random_randint: { f: one('random_randint', { shape: [4, 5], minval: -3, maxval: 9 }), inputs: () => [key()] },
  random_permutation: { f: one('random_permutation', { n: 11 }), inputs: () => [key()] },
  scan: {
    f: (h0, xs) =>
      scan(
        (h: Tensor, x: Tensor): [Tensor, Tensor] => {
          const next = bind('tanh', [bind('add', [mul(h, 0.5), x], {})[0]], {})[0];
          return [next, next];
        },
        h0,
        xs,
      )[1],
    inputs: () => [rand([7], 28), rand([6, 7], 29)],
    rtol: LOOSE,
  },
  custom_vjp_call: {
    f: customVjp(
      (x: Tensor) => mul(mul(x, x), x),
      (x: Tensor): [Tensor, Tensor] => [mul(mul(x, x), x), x],
      (x: Tensor, ct: Tensor) => [mul(mul(mul(x, x), 3), ct)],
    ),
    inputs: () => [rand(S, 30)],
  },
  cond: {
    f: (x, y) =>
      cond(
        greater(sum(x), sum(y)),
        (a: Tensor, b: Tensor) => mul(a, b),
        (a: Tensor, b: Tensor) => bind('sub', [a, b], {})[0],
        x,
        y,
      ),
    inputs: () => [rand(S, 31), rand(S, 32)],
  },
  while_loop: {
    f: (x) =>
      whileLoop(
        (v: Tensor) => less(sum(v), 50),
        (v: Tensor) => bind('add', [mul(v, 2), v], {})[0],
        x,
      ),
    inputs: () => [rand(S, 33, 0.1, 1)],
  },
};

const isFloatDtype = (d: DType): boolean => d === 'float32' || d === 'float64';

/** An empty string when the two results agree, else the first difference. */
function difference(cpu: NDArray, gpu: NDArray, rtol: number): string {
  if (cpu.dtype !== gpu.dtype) return `dtype ${cpu.dtype} vs ${gpu.dtype}`;
  if (cpu.shape.join(',') !== gpu.shape.join(',')) return `shape [${cpu.shape}] vs [${gpu.shape}]`;
  const a = cpu.toTyped();
  const b = gpu.toTyped();
  const exact = !isFloatDtype(cpu.dtype);
  for (let i = 0; i < a.length; i++) {
    const ok = exact ? a[i] === b[i] : Math.abs(a[i] - b[i]) <= rtol / 10 + rtol * Math.abs(a[i]);
    if (!ok) return `element ${i}: cpu ${a[i]}, gpujs ${b[i]}`;
  }
  return '';
}

if (enabled) {
  t.test('the case table names every primitive of the shape-rule table', async (t) => {
    t.same(Object.keys(CASES).sort(), Object.keys(shapeRules).sort());
  });

  t.test('every primitive: gpujs agrees with cpu', async (t) => {
    for (const prim of Object.keys(shapeRules) as Primitive[]) {
      const c = CASES[prim];
      const inputs = c.inputs();
      const cpu = jit(c.f, { backend: 'cpu' })(...inputs) as NDArray;
      const gpu = jit(c.f, { backend: 'gpujs' })(...inputs) as NDArray;
      t.equal(difference(cpu, gpu, c.rtol ?? TIGHT), '', prim);
    }
  });
}

if (enabled) {
  t.test('gpujs device memory: toDevice uploads once, a jit program reads the texture in place, read() returns the values', async (t) => {
    const x = rand([64, 33], 31, -3, 3);
    const uploads0 = gpuTransferStats().uploads;
    const dev = toDevice(x, 'gpujs');
    t.equal(dev.device, 'gpujs');
    t.equal(gpuTransferStats().uploads, uploads0 + 1, 'one upload');
    const f = jit((a: Tensor) => bind('tanh', [a], {})[0], { backend: 'gpujs' });
    const onDevice = f(dev) as NDArray;
    t.equal(gpuTransferStats().uploads, uploads0 + 1, 'the program read the device array without another upload');
    const reference = f(x) as NDArray;
    t.equal(difference(reference, onDevice, 0), '', 'same result as from the host array');
    const back = await dev.toTypedAsync();
    t.same(Array.from(back), Array.from(x.toTyped()), 'read() gives the uploaded values exactly');
    // dispose: the texture is freed (the backend's release hook) and the array deleted; results
    // of gpujs programs (host arrays) can be disposed like any other.
    dispose([dev, onDevice]);
    t.throws(() => f(dev), /jit\(anonymous\) argument 0: this float32\[64, 33\] array was disposed/, 'a disposed device array is deleted');
    const again = f(toDevice(x, 'gpujs')) as NDArray;
    t.equal(difference(reference, again, 0), '', 'a new device array computes the same after the dispose');
  });
}
