/**
 * Transformations: grad of grad against closed forms, jvp against finite differences,
 * valueAndGrad with argnums arrays and hasAux, and gradients of broadcast operands.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  add,
  array,
  exp,
  grad,
  jvp,
  matmul,
  mul,
  NDArray,
  pow,
  sigmoid,
  sub,
  sum,
  tanh,
  valueAndGrad,
  type Tensor,
} from '../../core/index.js';
import { expectClose, expectShape, f64, prop, shapeArb, sizeOfShape, valuesArb } from './helpers.js';

const scalarArb = (lo: number, hi: number) => fc.double({ min: lo, max: hi, noNaN: true });

t.test('grad of grad against closed forms', async (t) => {
  prop(
    t,
    "tanh: (1 - tanh^2)' = -2 tanh (1 - tanh^2)",
    [scalarArb(-3, 3)],
    (x) => {
      const d1 = grad((a: Tensor) => tanh(a));
      const d2 = grad((a: Tensor) => d1(a) as Tensor);
      const th = Math.tanh(x);
      expectClose([(d1(f64([x], [])) as Tensor).item()], [1 - th * th], 1e-12, 1e-15, 'first derivative');
      expectClose([(d2(f64([x], [])) as Tensor).item()], [-2 * th * (1 - th * th)], 1e-12, 1e-15, 'second derivative');
    },
    40,
  );
  prop(
    t,
    'tanh elementwise on a vector: grad(sum(grad(sum tanh)))',
    [fc.integer({ min: 1, max: 6 }).chain((n) => valuesArb(n, -3, 3))],
    (xv) => {
      const inner = (a: Tensor) => grad((b: Tensor) => sum(tanh(b)))(a) as Tensor;
      const g2 = grad((a: Tensor) => sum(inner(a)))(f64(xv, [xv.length])) as Tensor;
      expectClose(g2.toTyped(), xv.map((x) => -2 * Math.tanh(x) * (1 - Math.tanh(x) ** 2)), 1e-12, 1e-15, 'second derivative');
    },
    30,
  );
  prop(
    t,
    'x^3 (as x*x*x): first 3x^2, second 6x, third 6',
    [scalarArb(-3, 3)],
    (x) => {
      const f = (a: Tensor) => mul(mul(a, a), a);
      const d1 = grad(f);
      const d2 = grad((a: Tensor) => d1(a) as Tensor);
      const d3 = grad((a: Tensor) => d2(a) as Tensor);
      const at = f64([x], []);
      expectClose([(d1(at) as Tensor).item()], [3 * x * x], 1e-12, 1e-15, 'first');
      expectClose([(d2(at) as Tensor).item()], [6 * x], 1e-12, 1e-15, 'second');
      expectClose([(d3(at) as Tensor).item()], [6], 1e-12, 1e-15, 'third');
    },
    30,
  );
  prop(
    t,
    'x^3 (as pow(x, 3), x > 0): second derivative 6x',
    [scalarArb(0.1, 3)],
    (x) => {
      const d1 = grad((a: Tensor) => pow(a, 3));
      const d2 = grad((a: Tensor) => d1(a) as Tensor);
      expectClose([(d2(f64([x], [])) as Tensor).item()], [6 * x], 1e-12, 1e-15, 'second derivative');
    },
    30,
  );
  t.test('mixed second derivative d2/dxdy of x^2 y^3 = 6 x y^2', async (t) => {
    const f = (x: Tensor, y: Tensor) => mul(mul(x, x), mul(y, mul(y, y)));
    const dfdx = (x: Tensor, y: Tensor) => grad(f, { argnums: 0 })(x, y) as Tensor;
    const d2 = grad(dfdx, { argnums: 1 })(f64([1.5], []), f64([-2], [])) as Tensor;
    t.equal(d2.item(), 6 * 1.5 * 4);
  });
});

t.test('jvp against finite differences', async (t) => {
  const problem = fc
    .record({ m: fc.integer({ min: 1, max: 3 }), k: fc.integer({ min: 1, max: 3 }), n: fc.integer({ min: 1, max: 3 }), pool: valuesArb(60, -1.5, 1.5) })
    .map(({ m, k, n, pool }) => {
      let i = 0;
      const take = (s: number[]) => f64(pool.slice(i, (i += sizeOfShape(s))), s);
      return { x: take([m, k]), W: take([k, n]), tx: take([m, k]), tW: take([k, n]) };
    });
  // Two outputs: y1 = tanh(x @ W), y2 = sum(exp(x) * sigmoid(x)).
  const f = (x: Tensor, W: Tensor): Tensor[] => [tanh(matmul(x, W)), sum(mul(exp(x), sigmoid(x)))];
  prop(
    t,
    'tangent outputs equal (f(x + h t) - f(x - h t)) / 2h',
    [problem],
    ({ x, W, tx, tW }) => {
      const [outs, tans] = jvp(f, [x, W], [tx, tW]);
      const ref = f(x, W);
      outs.forEach((o, i) => expectClose(o.toTyped(), ref[i].toTyped(), 0, 0, `primal output ${i}`));
      const h = 1e-6;
      const plus = f(add(x, mul(tx, h)), add(W, mul(tW, h)));
      const minus = f(sub(x, mul(tx, h)), sub(W, mul(tW, h)));
      tans.forEach((tg, i) => {
        expectShape(tg, ref[i].shape, `tangent ${i}`);
        const fd = Array.from(plus[i].toTyped(), (p, j) => (p - minus[i].toTyped()[j]) / (2 * h));
        expectClose(tg.toTyped(), fd, 1e-5, 1e-7, `tangent ${i}`);
      });
    },
    25,
  );
  t.test('jvp of a linear map is the map applied to the tangent', async (t) => {
    const A = f64([1, 2, 3, 4, 5, 6], [2, 3]);
    const [[y], [ty]] = jvp((x: Tensor) => matmul(A, x), [f64([1, 1, 1], [3])], [f64([1, 0, -1], [3])]);
    t.same(y.toNested(), [6, 15]);
    t.same(ty.toNested(), [-2, -2]);
  });
});

t.test('valueAndGrad with argnums arrays and hasAux', async (t) => {
  // f(a, b, c) = sum(a * b) + sum(c^2), aux = {s: a + b, tag: 'x'}: grads wrt a is b, wrt c is 2c.
  const f = (a: Tensor, b: Tensor, c: Tensor) => [add(sum(mul(a, b)), sum(mul(c, c))), { s: add(a, b), tag: 'x' }] as [Tensor, { s: Tensor; tag: string }];
  prop(
    t,
    'value, aux and grads for argnums [0, 2]',
    [shapeArb(0, 2, 3).chain((s) => fc.tuple(fc.constant(s), valuesArb(sizeOfShape(s) * 3, -2, 2)))],
    ([s, pool]) => {
      const n = sizeOfShape(s);
      const av = pool.slice(0, n);
      const bv = pool.slice(n, 2 * n);
      const cv = pool.slice(2 * n);
      const [[value, aux], grads] = valueAndGrad(f, { argnums: [0, 2], hasAux: true })(f64(av, s), f64(bv, s), f64(cv, s)) as [[Tensor, { s: Tensor; tag: string }], Tensor[]];
      const expected = av.reduce((acc, a, i) => acc + a * bv[i], 0) + cv.reduce((acc, c) => acc + c * c, 0);
      expectClose([value.item()], [expected], 1e-12, 1e-12, 'value');
      if (!Array.isArray(grads) || grads.length !== 2) throw new Error('expected two gradients for argnums [0, 2]');
      expectShape(grads[0], s, 'grad a');
      expectClose(grads[0].toTyped(), bv, 0, 0, 'grad a');
      expectClose(grads[1].toTyped(), cv.map((c) => 2 * c), 0, 0, 'grad c');
      expectClose(aux.s.toTyped(), av.map((a, i) => a + bv[i]), 0, 0, 'aux.s');
      if (aux.tag !== 'x') throw new Error(`aux.tag ${aux.tag}`);
      // The aux comes back as an ordinary array, usable in later computations.
      expectClose(add(aux.s, 1).toTyped(), av.map((a, i) => a + bv[i] + 1), 0, 0, 'aux.s + 1');
    },
    30,
  );
  t.test('argnums forms: number, one-element array, pytree argument', async (t) => {
    const g = (p: { w: Tensor; b: Tensor }, x: Tensor) => sum(mul(add(mul(p.w, x), p.b), x));
    const p = { w: array([1, 2], { dtype: 'float64' }), b: array([0.5, -1], { dtype: 'float64' }) };
    const x = array([3, 4], { dtype: 'float64' });
    const gp = grad(g)(p, x) as { w: Tensor; b: Tensor };
    t.same(gp.w.toNested(), [9, 16], 'd/dw sum((w x + b) x) = x^2');
    t.same(gp.b.toNested(), [3, 4], 'd/db = x');
    const gx = grad(g, { argnums: [1] })(p, x) as Tensor[];
    t.ok(Array.isArray(gx) && gx.length === 1, 'a one-element argnums array gives a one-element list');
    t.same(gx[0].toNested(), [2 * 1 * 3 + 0.5, 2 * 2 * 4 - 1], 'd/dx = 2 w x + b');
    const [v, g1] = valueAndGrad(g, { argnums: 1 })(p, x) as [Tensor, Tensor];
    t.equal(v.item(), (3 + 0.5) * 3 + (8 - 1) * 4);
    t.ok(g1 instanceof NDArray, 'argnums as a number gives the bare gradient');
  });
});

t.test('gradients of broadcast operands sum over the broadcast axes', async (t) => {
  prop(
    t,
    '[m, n] + [n], [m, n] * [m, 1] and + scalar',
    [fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), valuesArb(80, -2, 2)],
    (m, n, pool) => {
      const M = f64(pool.slice(0, m * n), [m, n]);
      const W = f64(pool.slice(25, 25 + m * n), [m, n]);
      const v = f64(pool.slice(50, 50 + n), [n]);
      const c = f64(pool.slice(60, 60 + m), [m, 1]);
      const s = f64([pool[79]], []);
      const wv = W.toTyped();
      const mv = M.toTyped();
      const colSums = (a: ArrayLike<number>) => Array.from({ length: n }, (_, j) => Array.from({ length: m }, (_, i) => a[i * n + j]).reduce((x, y) => x + y, 0));
      const rowSums = (a: ArrayLike<number>) => Array.from({ length: m }, (_, i) => Array.from({ length: n }, (_, j) => a[i * n + j]).reduce((x, y) => x + y, 0));
      const [gv, gs] = grad((vv: Tensor, ss: Tensor) => sum(mul(W, add(add(M, vv), ss))), { argnums: [0, 1] })(v, s) as Tensor[];
      expectShape(gv, [n], 'grad v');
      expectShape(gs, [], 'grad scalar');
      expectClose(gv.toTyped(), colSums(wv), 1e-12, 1e-12, 'grad of the [n] vector = column sums of w');
      expectClose([gs.item()], [Array.from(wv).reduce((a, b) => a + b, 0)], 1e-12, 1e-12, 'grad of the scalar = total sum of w');
      const gc = grad((cc: Tensor) => sum(mul(W, mul(M, cc))))(c) as Tensor;
      expectShape(gc, [m, 1], 'grad c');
      expectClose(gc.toTyped(), rowSums(Array.from(wv, (x, i) => x * mv[i])), 1e-12, 1e-12, 'grad of the [m, 1] column = row sums of w * M');
    },
    30,
  );
  t.test('the issue example: a [3]-vector added to a [4, 3] matrix', async (t) => {
    const M = array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]], { dtype: 'float64' });
    const w = array([[1, 0, 2], [0, 1, 0], [3, 0, 0], [1, 1, 1]], { dtype: 'float64' });
    const gv = grad((v: Tensor) => sum(mul(w, add(M, v))))(array([0.5, -0.5, 2], { dtype: 'float64' })) as Tensor;
    t.same(gv.toNested(), [5, 2, 3], 'column sums of w');
    const gs = grad((s: Tensor) => sum(mul(w, add(M, s))))(array(1.5, { dtype: 'float64' })) as Tensor;
    t.same(gs.shape, []);
    t.equal(gs.item(), 10, 'total sum of w');
  });
});
