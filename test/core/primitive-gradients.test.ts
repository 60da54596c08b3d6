/**
 * Every primitive has a gradient check or says why it has none. The case table is typed over
 * `Primitive` (a new primitive does not compile until it gets an entry) and the test also walks
 * `Object.keys(shapeRules)` at run time. Each gradient case binds the primitive itself (no op
 * wrapper in between) on float64 inputs away from kinks and compares `grad` of a random weighted
 * sum of its output against central finite differences (fixtures/helpers.ts checkVjp).
 */
import t from 'tap';
import { bind } from '../../core/trace.js';
import { shapeRules, type Primitive } from '../../core/primitives.js';
import { cond, customVjp, fromTyped, greater, mul, scan, sum, type NDArray, type Tensor } from '../../core/index.js';
import { checkVjp, f64 } from './fixtures/helpers.js';

/** A gradient case: f over float64 inputs, the inputs, and an optional tolerance. */
interface GradientCase {
  readonly f: (...xs: Tensor[]) => Tensor;
  readonly inputs: () => NDArray[];
  readonly rtol?: number;
}
/** A primitive without a gradient, and why. */
interface NoGradient {
  readonly noGradient: string;
}

const one =
  <P extends Primitive>(prim: P, params: Parameters<typeof bind<P>>[2]) =>
  (...xs: Tensor[]): Tensor =>
    bind(prim, xs, params)[0];
const vec = (values: number[], shape: number[] = [values.length]): NDArray => f64(values, shape);
const POSITIVE = [0.3, 0.7, 1.2, 1.9, 2.6, 0.45];
const MIXED = [-1.3, 0.4, 2.1, -0.6, 0.9, -2.2];
const OTHER = [0.8, -1.7, 0.35, 1.4, -0.25, 1.1];
const NOT_INTEGER = [-1.3, 0.4, 2.1, -0.6, 0.9, -2.2];
const unaryCase = (prim: Primitive, values: number[]): GradientCase => ({ f: one(prim, {}), inputs: () => [vec(values, [2, 3])] });
const binaryCase = (prim: Primitive, a: number[], b: number[]): GradientCase => ({
  f: one(prim, {}),
  inputs: () => [vec(a, [2, 3]), vec(b, [2, 3])],
});
const comparison = 'its output is bool: comparisons carry no gradient';
const integerOutput = 'its output is int32: integer outputs carry no gradient';
const keyInput = 'its only input is a uint32 PRNG key: samples are not differentiable in the key';
const mask = fromTyped(Uint8Array.from([1, 0, 0, 1, 1, 0]), [2, 3], 'bool');
const indices = fromTyped(Int32Array.from([2, 0, 1, 1, 2, 0]), [2, 3], 'int32');

const CASES: { [P in Primitive]: GradientCase | NoGradient } = {
  neg: unaryCase('neg', MIXED),
  exp: unaryCase('exp', MIXED),
  log: unaryCase('log', POSITIVE),
  log1p: unaryCase('log1p', POSITIVE),
  sqrt: unaryCase('sqrt', POSITIVE),
  tanh: unaryCase('tanh', MIXED),
  logistic: unaryCase('logistic', MIXED),
  abs: unaryCase('abs', MIXED),
  sign: unaryCase('sign', MIXED),
  floor: unaryCase('floor', NOT_INTEGER),
  add: binaryCase('add', MIXED, OTHER),
  sub: binaryCase('sub', MIXED, OTHER),
  mul: binaryCase('mul', MIXED, OTHER),
  div: binaryCase('div', MIXED, OTHER),
  max: binaryCase('max', MIXED, OTHER),
  min: binaryCase('min', MIXED, OTHER),
  pow: binaryCase('pow', POSITIVE, OTHER),
  lt: { noGradient: comparison },
  le: { noGradient: comparison },
  gt: { noGradient: comparison },
  ge: { noGradient: comparison },
  eq: { noGradient: comparison },
  ne: { noGradient: comparison },
  where: { f: (x, y) => bind('where', [mask, x, y], {})[0], inputs: () => [vec(MIXED, [2, 3]), vec(OTHER, [2, 3])] },
  cast: { f: one('cast', { dtype: 'float64' }), inputs: () => [vec(MIXED, [2, 3])] },
  stop_gradient: {
    noGradient:
      'its gradient is zero by definition, which finite differences (seeing the identity) cannot check; vjp.test.ts checks it is zero',
  },
  reduce_sum: { f: one('reduce_sum', { axes: [1] }), inputs: () => [vec(MIXED, [2, 3])] },
  reduce_max: { f: one('reduce_max', { axes: [0] }), inputs: () => [vec(MIXED, [2, 3])] },
  reduce_min: { f: one('reduce_min', { axes: [0, 1] }), inputs: () => [vec(MIXED, [2, 3])] },
  argmax: { noGradient: integerOutput },
  reshape: { f: one('reshape', { shape: [3, 2] }), inputs: () => [vec(MIXED, [2, 3])] },
  transpose: { f: one('transpose', { perm: [1, 0] }), inputs: () => [vec(MIXED, [2, 3])] },
  broadcast_to: { f: one('broadcast_to', { shape: [2, 4, 3] }), inputs: () => [vec(MIXED, [2, 1, 3])] },
  slice: { f: one('slice', { starts: [0, 1], limits: [2, 3] }), inputs: () => [vec(MIXED, [2, 3])] },
  pad: { f: one('pad', { low: [1, 0], high: [0, 2] }), inputs: () => [vec(MIXED, [2, 3])] },
  concatenate: { f: one('concatenate', { axis: 1 }), inputs: () => [vec(MIXED, [2, 3]), vec(OTHER.slice(0, 4), [2, 2])] },
  matmul: { f: one('matmul', {}), inputs: () => [vec(MIXED, [2, 3]), vec(OTHER, [3, 2])] },
  conv: {
    f: one('conv', { strides: [2], padLow: [1], padHigh: [0], lhsDilation: [1], rhsDilation: [1], featureGroupCount: 2 }),
    inputs: () => [vec([...MIXED, ...OTHER], [1, 3, 4]), vec([...OTHER, ...MIXED].slice(0, 8), [2, 2, 2])],
  },
  take_along_axis: { f: (x) => bind('take_along_axis', [x, indices], { axis: 1 })[0], inputs: () => [vec(MIXED, [2, 3])] },
  scatter_add_along_axis: {
    f: (u) => bind('scatter_add_along_axis', [u, indices], { axis: 1, shape: [2, 4] })[0],
    inputs: () => [vec(MIXED, [2, 3])],
  },
  argsort: { noGradient: integerOutput },
  random_bits: { noGradient: keyInput },
  random_split: { noGradient: keyInput },
  random_fold_in: { noGradient: keyInput },
  random_uniform: { noGradient: keyInput },
  random_normal: { noGradient: keyInput },
  random_randint: { noGradient: keyInput },
  random_permutation: { noGradient: keyInput },
  // A carry multiplied by each x_t and shifted by the constant c: the gradient flows through the
  // carry, the xs and a closed-over constant.
  scan: {
    f: (c0, xs, c) => {
      const [carry, ys] = scan(
        (h: Tensor, x: Tensor): [Tensor, Tensor] => {
          const next = bind('add', [mul(h, x), c], {})[0];
          return [next, mul(next, next)];
        },
        c0,
        xs,
      );
      return bind('concatenate', [bind('reshape', [carry], { shape: [1, 2] })[0], ys], { axis: 0 })[0];
    },
    inputs: () => [vec([0.5, -0.3]), vec(MIXED, [3, 2]), vec([0.2, -0.4])],
  },
  // x^3 with a hand-written backward 3 x^2 ct: finite differences confirm the custom rule.
  custom_vjp_call: {
    f: customVjp(
      (x: Tensor) => mul(mul(x, x), x),
      (x: Tensor): [Tensor, Tensor] => [mul(mul(x, x), x), x],
      (x: Tensor, ct: Tensor) => [mul(mul(mul(x, x), 3), ct)],
    ),
    inputs: () => [vec(MIXED, [2, 3])],
  },
  cond: {
    // Predicate from the data (sum(x) > 0 for MIXED); the taken branch closes over y.
    f: (x, y) =>
      cond(
        greater(sum(x), 0),
        (a: Tensor) => mul(mul(a, a), y),
        (a: Tensor) => mul(a, y),
        x,
      ),
    inputs: () => [vec(POSITIVE, [2, 3]), vec(OTHER, [2, 3])],
  },
  while_loop: { noGradient: 'its trip count is only known at run time: reverse mode is refused (use foriLoop with number bounds or scan)' },
};

t.test('the case table names every primitive of the shape-rule table', async (t) => {
  t.same(Object.keys(CASES).sort(), Object.keys(shapeRules).sort());
});

t.test('every primitive: grad matches finite differences, or it has no gradient for a stated reason', async (t) => {
  const weights = [0.7, -1.3, 0.4, 1.1, -0.2, 0.9, -0.6];
  for (const prim of Object.keys(shapeRules) as Primitive[]) {
    const c = CASES[prim];
    if ('noGradient' in c) {
      t.ok(c.noGradient.length > 10, `${prim}: no gradient, because ${c.noGradient}`);
      continue;
    }
    t.doesNotThrow(() => checkVjp(prim, c.f, c.inputs(), weights, { rtol: c.rtol }), `${prim}: grad matches finite differences`);
  }
});
