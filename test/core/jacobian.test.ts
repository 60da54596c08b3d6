/**
 * jacfwd, jacrev, hessian and jvp over pytrees: Jacobians against closed forms and against
 * central finite differences of the function, the Hessian of a cubic against its closed form;
 * pytrees in and out (a record argument, a tuple output, argnums lists) against closed forms and
 * float64 central differences, and the Hessian of a scalar function of a record against the
 * analytic one.
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
  reshape,
  square,
  sub,
  sum,
  tanh,
  fromTyped,
  type Jacobian,
  type NDArray,
  type Tensor,
} from '../../core/index.js';
import { arrArb, expectClose, expectShape, f64, prop, thrown } from './fixtures/helpers.js';

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

// ----------------------------------------------------------------------------- pytrees in and out

type Rec = { a: Tensor; b: Tensor };
/** A record in, a tuple out: y0[i, j] = a_i exp(b_j) ([n, m]) and y1 = sum(a^2) (a scalar, free of b). */
const recordToTuple = (p: Rec) => [mul(reshape(p.a, [p.a.shape[0], 1]), exp(p.b)), sum(square(p.a))] as const;

/** Central differences of output `out` of recordToTuple along every element of `leaf`: [...y.shape, ...leaf.shape] flattened. */
function fdRecord(p: { a: NDArray; b: NDArray }, out: 0 | 1, leaf: 'a' | 'b', h = 1e-6): Float64Array {
  return fdJacobian((v) => recordToTuple({ ...p, [leaf]: v })[out], p[leaf], h);
}

const recordArb = fc
  .record({ n: fc.integer({ min: 1, max: 3 }), m: fc.integer({ min: 1, max: 3 }) })
  .chain(({ n, m }) => fc.record({ a: arrArb([n], -1, 1), b: arrArb([m], -1, 1) }));

t.test('jacrev and jacfwd of a record -> tuple function: closed forms and finite differences', async (t) => {
  prop(
    t,
    'dy0[i,j]/da[k] = [i = k] exp(b_j), dy0[i,j]/db[l] = a_i exp(b_j) [j = l], dy1/da = 2a, dy1/db = 0',
    [recordArb],
    (p) => {
      const av = Array.from(p.a.toTyped());
      const bv = Array.from(p.b.toTyped());
      const [n, m] = [av.length, bv.length];
      const closed = {
        y0a: Array.from({ length: n * m * n }, (_, q) => {
          const [i, j, k] = [Math.floor(q / (m * n)), Math.floor(q / n) % m, q % n];
          return i === k ? Math.exp(bv[j]) : 0;
        }),
        y0b: Array.from({ length: n * m * m }, (_, q) => {
          const [i, j, l] = [Math.floor(q / (m * m)), Math.floor(q / m) % m, q % m];
          return j === l ? av[i] * Math.exp(bv[j]) : 0;
        }),
        y1a: av.map((x) => 2 * x),
        y1b: bv.map(() => 0),
      };
      const jacobians: [string, Jacobian<ReturnType<typeof recordToTuple>, Rec>][] = [
        ['jacrev', jacrev(recordToTuple)(p)],
        ['jacfwd', jacfwd(recordToTuple)(p)],
      ];
      for (const [name, J] of jacobians) {
        if (!Array.isArray(J) || J.length !== 2) throw new Error(`${name}: expected a pair, got ${typeof J}`);
        const [J0, J1] = J;
        expectShape(J0.a, [n, m, n], `${name} y0/a`);
        expectShape(J0.b, [n, m, m], `${name} y0/b`);
        expectShape(J1.a, [n], `${name} y1/a`);
        expectShape(J1.b, [m], `${name} y1/b`);
        expectClose(J0.a.toTyped(), closed.y0a, 1e-14, 1e-15, `${name} y0/a closed form`);
        expectClose(J0.b.toTyped(), closed.y0b, 1e-14, 1e-15, `${name} y0/b closed form`);
        expectClose(J1.a.toTyped(), closed.y1a, 1e-14, 1e-15, `${name} y1/a closed form`);
        expectClose(J1.b.toTyped(), closed.y1b, 0, 0, `${name} y1/b closed form`);
        expectClose(J0.a.toTyped(), fdRecord(p, 0, 'a'), 1e-6, 1e-8, `${name} y0/a vs finite differences`);
        expectClose(J0.b.toTyped(), fdRecord(p, 0, 'b'), 1e-6, 1e-8, `${name} y0/b vs finite differences`);
        expectClose(J1.a.toTyped(), fdRecord(p, 1, 'a'), 1e-6, 1e-8, `${name} y1/a vs finite differences`);
        expectClose(J1.b.toTyped(), fdRecord(p, 1, 'b'), 1e-6, 1e-8, `${name} y1/b vs finite differences`);
      }
    },
    15,
  );
});

t.test('argnums: one later pytree argument, or a list of arguments', async (t) => {
  const x = f64([0.5, -1.5], [2]);
  const p = { a: f64([0.3, -0.7], [2]), b: f64([1.1], [1]) };
  // y = x * a + b (b broadcast): dy/dx = diag(a), dy/da = diag(x), dy/db = ones [2, 1].
  const f = (u: Tensor, q: Rec): { y: Tensor } => ({ y: add(mul(u, q.a), q.b) });
  for (const [name, jac] of [
    ['jacrev', jacrev],
    ['jacfwd', jacfwd],
  ] as const) {
    const one = jac(f, { argnums: 1 })(x, p);
    expectClose(one.y.a.toTyped(), [0.5, 0, 0, -1.5], 0, 0, `${name} argnums 1: dy/da`);
    expectClose(one.y.b.toTyped(), [1, 1], 0, 0, `${name} argnums 1: dy/db`);
    expectShape(one.y.b, [2, 1], `${name} argnums 1: dy/db`);
    const both = jac(f, { argnums: [0, 1] })(x, p);
    expectClose(both.y[0].toTyped(), [0.3, 0, 0, -0.7], 0, 0, `${name} argnums [0, 1]: dy/dx`);
    expectClose(both.y[1].a.toTyped(), one.y.a.toTyped(), 0, 0, `${name} argnums [0, 1]: dy/da`);
    expectClose(both.y[1].b.toTyped(), [1, 1], 0, 0, `${name} argnums [0, 1]: dy/db`);
    // A static leaf of the argument stays where it was; the output's static leaves too.
    const withStatic = jac((q: { a: Tensor; k: number }) => [mul(q.a, q.k), 'tag'] as const)({ a: p.a, k: 3 });
    t.equal(withStatic[0].k, 3, `${name}: a static argument leaf is kept`);
    t.equal(withStatic[1], 'tag', `${name}: a static output leaf is kept`);
    expectClose(withStatic[0].a.toTyped(), [3, 0, 0, 3], 0, 0, `${name}: d(3a)/da`);
    t.match(thrown(() => jac(f, { argnums: [1, 1] })(x, p))?.message, new RegExp(`${name}: argnums lists an argument twice`));
    t.match(thrown(() => jac((k: number) => f64([k], [1]))(2))?.message, new RegExp(`${name}: argument\\(s\\) 0 hold no tensors`));
    t.match(
      thrown(() => jac((u: Tensor) => ({ n: fromTyped(Int32Array.from([1]), [1], 'int32'), y: u }))(x))?.message,
      new RegExp(`${name}: f must return float tensors, got int32\\[1\\] at output leaf 0`),
    );
  }
});

t.test('hessian of a scalar function of a record matches the analytic Hessian', async (t) => {
  prop(
    t,
    'g = sum(a^3) + sum(a) sum(b^2) + sum(exp(b)): H_aa = diag(6a), H_ab[i,l] = 2 b_l, H_ba = H_ab^T, H_bb = diag(2 sum(a) + exp(b))',
    [recordArb],
    (p) => {
      const g = (q: Rec): Tensor => add(add(sum(mul(q.a, square(q.a))), mul(sum(q.a), sum(square(q.b)))), sum(exp(q.b)));
      const H = hessian(g)(p);
      const av = Array.from(p.a.toTyped());
      const bv = Array.from(p.b.toTyped());
      const [n, m] = [av.length, bv.length];
      const sa = av.reduce((s, v) => s + v, 0);
      const block = (rows: number, cols: number, at: (i: number, j: number) => number): number[] =>
        Array.from({ length: rows * cols }, (_, q) => at(Math.floor(q / cols), q % cols));
      expectShape(H.a.a, [n, n], 'H_aa');
      expectShape(H.a.b, [n, m], 'H_ab');
      expectShape(H.b.a, [m, n], 'H_ba');
      expectShape(H.b.b, [m, m], 'H_bb');
      expectClose(
        H.a.a.toTyped(),
        block(n, n, (i, k) => (i === k ? 6 * av[i] : 0)),
        1e-14,
        1e-14,
        'H_aa',
      );
      expectClose(
        H.a.b.toTyped(),
        block(n, m, (_i, l) => 2 * bv[l]),
        1e-14,
        1e-14,
        'H_ab',
      );
      expectClose(
        H.b.a.toTyped(),
        block(m, n, (l) => 2 * bv[l]),
        1e-14,
        1e-14,
        'H_ba',
      );
      expectClose(
        H.b.b.toTyped(),
        block(m, m, (l, k) => (l === k ? 2 * sa + Math.exp(bv[l]) : 0)),
        1e-14,
        1e-14,
        'H_bb',
      );
    },
    15,
  );
});

t.test('hessian with a list of argnums: blocks by argument pair', async (t) => {
  // g = sum(x a) + sum(b^2): d2g/dx da = I, d2g/db db = 2 I, every other block zero.
  const g = (x: Tensor, q: Rec): Tensor => add(sum(mul(x, q.a)), sum(square(q.b)));
  const x = f64([0.5, -1.5], [2]);
  const q = { a: f64([0.3, -0.7], [2]), b: f64([1.1], [1]) };
  const H = hessian(g, { argnums: [0, 1] })(x, q);
  const [Hx, Hq] = H;
  expectClose(Hx[0].toTyped(), [0, 0, 0, 0], 0, 0, 'H_xx');
  expectClose(Hx[1].a.toTyped(), [1, 0, 0, 1], 0, 0, 'H_xa');
  expectClose(Hx[1].b.toTyped(), [0, 0], 0, 0, 'H_xb');
  expectClose(Hq.a[0].toTyped(), [1, 0, 0, 1], 0, 0, 'H_ax');
  expectClose(Hq.b[1].b.toTyped(), [2], 0, 0, 'H_bb');
  expectShape(Hq.b[1].a, [1, 2], 'H_ba');
  expectClose(Hq.a[1].b.toTyped(), [0, 0], 0, 0, 'H_ab');
  t.pass('blocks match');
});
