/**
 * Second-order property tests: the backward rules are written with ops, so they are themselves
 * differentiable. For each op, G(x) = grad(sum(w1 * f))(x) is checked like a first-order op:
 * grad(sum(w2 * G(x))) against central finite differences of G (float64, random shapes).
 */
import fc from 'fast-check';
import t from 'tap';
import {
  abs,
  array,
  broadcastTo,
  cast,
  concatenate,
  div,
  exp,
  greater,
  grad,
  log,
  logSoftmax,
  logsumexp,
  matmul,
  matrixTranspose,
  max,
  maximum,
  mean,
  min,
  mul,
  pad,
  pow,
  relu,
  reshape,
  sigmoid,
  softmax,
  softplus,
  sort,
  sqrt,
  sum,
  take,
  tanh,
  transpose,
  where,
  type Tensor,
} from '../../core/index.js';
import { awayFromZeroArb, checkVjp, distinctArb, f64, prop, shapeArb, sizeOfShape, valuesArb, weightsArb } from './helpers.js';

const arr = (values: (n: number) => fc.Arbitrary<number[]>) => shapeArb(1, 3, 3).chain((s) => values(sizeOfShape(s)).map((v) => f64(v, s)));
const range = (lo: number, hi: number) => (n: number) => valuesArb(n, lo, hi);
const awayFromZero = (n: number) => awayFromZeroArb(n, 0.1, 2);
const idx = array([0, 0], { dtype: 'int32' });

/** x -> grad of sum(w1 * f(x)) at x. */
const firstDerivative = (f: (x: Tensor) => Tensor, w1: readonly number[]) => (x: Tensor): Tensor => {
  const y = f(x);
  const w = f64(Array.from({ length: y.size }, (_, i) => w1[i % w1.length]), y.shape);
  return grad((z: Tensor) => sum(mul(w, f(z))))(x) as Tensor;
};

const cases: [string, (x: Tensor) => Tensor, (n: number) => fc.Arbitrary<number[]>][] = [
  ['exp', exp, range(-2, 2)],
  ['log', log, range(0.3, 3)],
  ['sqrt', sqrt, range(0.3, 3)],
  ['tanh', tanh, range(-2, 2)],
  ['sigmoid', sigmoid, range(-3, 3)],
  ['abs * x', (x) => mul(abs(x), x), awayFromZero],
  ['relu * x', (x) => mul(relu(x), x), awayFromZero],
  ['softplus', softplus, awayFromZero],
  ['1 / x', (x) => div(1, x), (n) => awayFromZeroArb(n, 0.5, 2)],
  ['x ** x', (x) => pow(x, x), range(0.5, 2)],
  ['max * x', (x) => mul(max(x, -1, { keepdims: true }), x), (n) => distinctArb(n, 0.05)],
  ['min * x', (x) => mul(min(x, 0, { keepdims: true }), x), (n) => distinctArb(n, 0.05)],
  ['maximum(x, x/2) * x', (x) => mul(maximum(x, mul(x, 0.5)), x), awayFromZero],
  ['logsumexp', (x) => logsumexp(x, -1), range(-2, 2)],
  ['softmax', (x) => softmax(x, 0), range(-2, 2)],
  ['logSoftmax', (x) => logSoftmax(x), range(-2, 2)],
  ['mean * mean', (x) => mul(mean(x, 0), mean(x)), range(-2, 2)],
  ['sort * x', (x) => mul(sort(x, -1), x), (n) => distinctArb(n, 0.05)],
  ['take ** 2', (x) => mul(take(x, idx, 0), take(x, idx, 0)), range(-2, 2)],
  ['tanh(m) @ m^T', (x) => { const m = reshape(x, [x.shape[0], -1]); return matmul(tanh(m), matrixTranspose(m)); }, range(-2, 2)],
  ['pad * pad', (x) => mul(pad(x, x.shape.map(() => 1), x.shape.map(() => 0)), pad(x, x.shape.map(() => 0), x.shape.map(() => 1))), range(-2, 2)],
  ['concatenate * concatenate', (x) => mul(concatenate([x, exp(x)], 0), concatenate([x, x], 0)), range(-2, 2)],
  ['broadcastTo * tanh', (x) => mul(broadcastTo(x, [2, ...x.shape]), tanh(x)), range(-2, 2)],
  ['transpose * transpose', (x) => mul(transpose(x), transpose(exp(x))), range(-2, 2)],
  ['where(x > 0, x^2, e^x)', (x) => where(greater(x, 0), mul(x, x), exp(x)), awayFromZero],
  ['cast f64 -> f64 * x', (x) => mul(cast(x, 'float64'), x), range(-2, 2)],
];

t.test('second-order VJPs match finite differences', async (t) => {
  for (const [name, f, values] of cases) {
    prop(t, name, [arr(values), weightsArb, weightsArb], (x, w1, w2) => checkVjp(`d2 ${name}`, firstDerivative(f, w1), [x], w2), 10);
  }
});
