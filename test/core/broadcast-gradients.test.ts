/**
 * Gradients through values that are broadcasts (broadcast sinking inside grad): when an op takes
 * the compact data of a differentiable broadcast (`broadcastSourceOf` on a gradient tracer, as
 * matmul does for a time-tiled operand), the gradient must be the one of the full computation.
 * Two cases: the broadcast is a broadcast_to of a tracer (the compact tracer is that one), and an
 * elementwise op of a broadcast (sunk in the primal; the compact tracer spreads its cotangent
 * over the copies). Checked against central finite differences in float64 and against the same
 * function with the broadcast materialized (multiplied by a contiguous array of ones, which stops
 * the sinking), and the traced program is checked to multiply the compact rows only.
 */
import t from 'tap';
import {
  broadcastSourceOf,
  broadcastTo,
  expandDims,
  fromTyped,
  grad,
  jit,
  makeJaxpr,
  matmul,
  mul,
  sigmoid,
  sum,
  tanh,
  valueAndGrad,
  type NDArray,
  type Tensor,
} from '../../core/index.js';

function lcg(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  return Float64Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}
const f64 = (v: Float64Array, shape: number[]): NDArray => fromTyped(v, shape, 'float64');
const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);

const x = f64(lcg(2 * 3, 1), [2, 3]);
const W = f64(lcg(3 * 5, 2), [3, 5]);
const weights = f64(lcg(2 * 4 * 5, 3), [2, 4, 5]); // varies over time: the cotangent is no broadcast
const ones = f64(new Float64Array(2 * 4 * 3).fill(1), [2, 4, 3]);

/** sum(weights * matmul(g(broadcast(tanh(x * w))), W)), g the identity or sigmoid; `full` materializes. */
function loss(elementwise: boolean, full: boolean) {
  return (w: Tensor): Tensor => {
    let b = broadcastTo(expandDims(tanh(mul(x, w)), 1), [2, 4, 3]);
    if (full) b = mul(b, ones);
    if (elementwise) b = sigmoid(b);
    return sum(mul(weights, matmul(b, W)));
  };
}

for (const elementwise of [false, true]) {
  const what = elementwise ? 'sigmoid of a broadcast (spread cotangent)' : 'broadcast_to of a tracer (the tracer itself)';
  t.test(`grad through a compact matmul operand: ${what}`, (t) => {
    const w0 = f64(lcg(3, 4), [3]);
    for (const run of [(f: (w: Tensor) => Tensor) => grad(f), (f: (w: Tensor) => Tensor) => jit(grad(f))]) {
      const g = vals(run(loss(elementwise, false))(w0) as Tensor);
      const gFull = vals(run(loss(elementwise, true))(w0) as Tensor);
      const h = 1e-6;
      const fd = [0, 1, 2].map((i) => {
        const at = (d: number): number => {
          const w = Float64Array.from(w0.toTyped() as Float64Array);
          w[i] += d;
          return loss(elementwise, true)(f64(w, [3])).item();
        };
        return (at(h) - at(-h)) / (2 * h);
      });
      g.forEach((v, i) => {
        t.ok(Math.abs(v - gFull[i]) <= 1e-13 * (1 + Math.abs(gFull[i])), `component ${i}: ${v} vs materialized ${gFull[i]}`);
        t.ok(Math.abs(v - fd[i]) <= 1e-7 * (1 + Math.abs(fd[i])), `component ${i}: ${v} vs finite differences ${fd[i]}`);
      });
    }
    // The product runs on the 2 compact rows, not 2 x 4, in the traced value and gradient.
    const jaxpr = makeJaxpr(valueAndGrad(loss(elementwise, false)))(f64(lcg(3, 4), [3]));
    const matmuls = jaxpr.jaxpr.eqns.filter((e) => e.prim === 'matmul');
    t.ok(matmuls.length >= 1);
    t.ok(
      matmuls.every((e) => e.inputs.every((a) => !a.aval.shape.includes(8))),
      `every matmul on compact rows (${matmuls.map((e) => e.inputs.map((a) => `[${a.aval.shape.join(',')}]`).join('x')).join(' ')})`,
    );
    t.end();
  });
}

t.test('broadcastSourceOf inside a traced grad: the compact value, the broadcast axes', (t) => {
  // Traced: broadcast sinking happens as a trace records ops (eager ops compute every copy).
  makeJaxpr(
    grad((w: Tensor) => {
      const b = sigmoid(broadcastTo(expandDims(mul(x, w), 1), [2, 4, 3]));
      const found = broadcastSourceOf(b);
      t.ok(found !== null, 'found through the gradient tracer');
      t.same(found!.axes, [1]);
      t.same(found!.source.shape, [2, 1, 3]);
      t.same(broadcastSourceOf(mul(b, ones)), null, 'a materialized product is no broadcast');
      return sum(found!.source);
    }),
  )(f64(lcg(3, 5), [3]));
  t.end();
});

t.test('second order: grad of grad through the compact operand equals the materialized one', (t) => {
  // d/dw of (d/dw loss) . v: a Hessian-vector product through both cases of compact tracers.
  const v = f64(lcg(3, 6), [3]);
  for (const elementwise of [false, true]) {
    const hvp = (full: boolean) => jit(grad((w: Tensor) => sum(mul(grad(loss(elementwise, full))(w), v))));
    const w0 = f64(lcg(3, 7), [3]);
    const a = vals(hvp(false)(w0) as Tensor);
    const b = vals(hvp(true)(w0) as Tensor);
    t.ok(
      a.every((x, i) => Math.abs(x - b[i]) <= 1e-12 * (1 + Math.abs(b[i]))),
      `${elementwise ? 'sigmoid of a broadcast' : 'broadcast_to'}: [${a.join(', ')}] vs [${b.join(', ')}]`,
    );
  }
  t.end();
});
