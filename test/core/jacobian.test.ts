/**
 * jacfwd, jacrev, hessian and jvp over pytrees: Jacobians against closed forms and against
 * central finite differences of the function, the Hessian of a cubic against its closed form.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  add,
  exp,
  hessian,
  jacfwd,
  jacrev,
  jvp,
  matmul,
  mul,
  sub,
  sum,
  tanh,
  fromTyped,
  type NDArray,
  type Tensor,
} from '../../core/index.js';
import { arrArb, expectClose, f64, prop, thrown } from './fixtures/helpers.js';

/** Central differences of a tensor function, one column per element of x: shape [...y, ...x] flattened. */
function fdJacobian(f: (x: NDArray) => Tensor, x: NDArray, h = 1e-6): Float64Array {
  const base = Float64Array.from(x.toTyped() as Float64Array);
  const ySize = f(x).size;
  const out = new Float64Array(ySize * base.length);
  for (let j = 0; j < base.length; j++) {
    const at = (d: number): Float64Array => {
      const v = Float64Array.from(base);
      v[j] += d;
      return Float64Array.from(f(fromTyped(v, x.shape, 'float64')).toTyped() as Float64Array);
    };
    const plus = at(h);
    const minus = at(-h);
    for (let i = 0; i < ySize; i++) out[i * base.length + j] = (plus[i] - minus[i]) / (2 * h);
  }
  return out;
}

const problem = fc
  .record({ m: fc.integer({ min: 1, max: 3 }), n: fc.integer({ min: 1, max: 3 }), r: fc.integer({ min: 1, max: 2 }) })
  .chain(({ m, n, r }) => fc.record({ W: arrArb([n, m], -1, 1), x: arrArb([r, n], -1, 1) }));

t.test('jacfwd and jacrev of tanh(x @ W) match the closed form and finite differences', async (t) => {
  prop(
    t,
    'd tanh(xW)_{ij} / dx_{kl} = [i = k] (1 - tanh^2) W_{lj}',
    [problem],
    ({ W, x }) => {
      const f = (v: Tensor): Tensor => tanh(matmul(v, W));
      const y = f(x).toTyped();
      const [r, n] = x.shape;
      const m = W.shape[1];
      const closed = new Float64Array(r * m * r * n);
      for (let i = 0; i < r; i++)
        for (let j = 0; j < m; j++)
          for (let l = 0; l < n; l++) closed[((i * m + j) * r + i) * n + l] = (1 - y[i * m + j] ** 2) * W.toTyped()[l * m + j];
      for (const [name, jac] of [
        ['jacfwd', jacfwd(f)],
        ['jacrev', jacrev(f)],
      ] as const) {
        const J = jac(x);
        if (J.shape.join() !== [r, m, r, n].join()) throw new Error(`${name}: shape [${J.shape}]`);
        expectClose(J.toTyped(), closed, 1e-12, 1e-14, `${name} vs closed form`);
        expectClose(J.toTyped(), fdJacobian(f, x), 1e-6, 1e-8, `${name} vs finite differences`);
      }
    },
    20,
  );
});

t.test('jacobians with respect to a later argument', async (t) => {
  const a = f64([0.3, -0.2, 0.5], [3]);
  const b = f64([1.5, 0.25, -1], [3]);
  const f = (u: Tensor, v: Tensor): Tensor => mul(exp(u), tanh(v));
  // d/dv exp(u) tanh(v) = diag(exp(u) (1 - tanh^2 v))
  const diag = a.toTyped().map((u, i) => Math.exp(u) * (1 - Math.tanh(b.toTyped()[i]) ** 2));
  const expected = [0, 1, 2].flatMap((i) => [0, 1, 2].map((j) => (i === j ? diag[i] : 0)));
  expectClose(jacrev(f, { argnums: 1 })(a, b).toTyped(), expected, 1e-14, 1e-15, 'jacrev argnums 1');
  expectClose(jacfwd(f, { argnums: 1 })(a, b).toTyped(), expected, 1e-14, 1e-15, 'jacfwd argnums 1');
  t.match(thrown(() => jacrev(f, { argnums: 2 })(a, b))?.message, /jacrev: argnums 2 out of range for 2 argument/);
  t.match(
    thrown(() => jacfwd((x: Tensor) => sum(x))(fromTyped(Int32Array.from([1]), [1], 'int32')))?.message,
    /jacfwd: can only differentiate float arguments/,
  );
});

t.test('hessian of a cubic matches its closed form', async (t) => {
  prop(
    t,
    'H of sum(x^3) + (a . x)^2 = diag(6x) + 2 a a^T',
    [fc.integer({ min: 1, max: 4 }).chain((n) => fc.tuple(arrArb([n]), arrArb([n])))],
    ([x, a]) => {
      const f = (v: Tensor): Tensor => add(sum(mul(v, mul(v, v))), mul(sum(mul(a, v)), sum(mul(a, v))));
      const n = x.shape[0];
      const H = hessian(f)(x);
      const xv = x.toTyped();
      const av = a.toTyped();
      const closed = Array.from({ length: n * n }, (_, k) => {
        const i = Math.floor(k / n);
        const j = k % n;
        return (i === j ? 6 * xv[i] : 0) + 2 * av[i] * av[j];
      });
      if (H.shape.join() !== [n, n].join()) throw new Error(`hessian shape [${H.shape}]`);
      expectClose(H.toTyped(), closed, 1e-12, 1e-12, 'hessian');
    },
    20,
  );
});

t.test('jvp over pytrees', async (t) => {
  type P = { w: Tensor; b: [Tensor, number] };
  const f = (p: P, x: Tensor) => ({ y: tanh(add(mul(p.w, x), p.b[0])), s: sum(mul(x, x)) });
  prop(
    t,
    'output tangents equal central differences along the tangent',
    [fc.integer({ min: 1, max: 3 }).chain((n) => fc.tuple(...[0, 1, 2, 3, 4, 5].map(() => arrArb([n], -1, 1))))],
    ([w, b, x, tw, tb, tx]) => {
      const [out, tan] = jvp(f, [{ w, b: [b, 7] }, x], [{ w: tw, b: [tb, 7] }, tx]);
      const h = 1e-6;
      const shifted = (s: number) => f({ w: add(w, mul(tw, s)), b: [add(b, mul(tb, s)), 7] }, add(x, mul(tx, s)));
      const plus = shifted(h);
      const minus = shifted(-h);
      expectClose(out.y.toTyped(), f({ w, b: [b, 7] }, x).y.toTyped(), 0, 0, 'primal y');
      expectClose(
        tan.y.toTyped(),
        Array.from(sub(plus.y, minus.y).toTyped(), (d) => d / (2 * h)),
        1e-6,
        1e-8,
        'tangent y',
      );
      expectClose(
        tan.s.toTyped(),
        Array.from(sub(plus.s, minus.s).toTyped(), (d) => d / (2 * h)),
        1e-6,
        1e-8,
        'tangent s',
      );
    },
    15,
  );
  t.match(
    thrown(() =>
      jvp(f, [{ w: f64([1], [1]), b: [f64([1], [1]), 7] }, f64([1], [1])], [{ w: f64([1], [1]), b: [f64([1], [1]), 8] }, f64([1], [1])]),
    )?.message,
    /jvp: tangents have structure/,
  );
});
