/**
 * cond, whileLoop and foriLoop: values against plain JS control flow (eager and under jit, where
 * the choice and the trip count are made at run time by one compiled program), gradients against
 * closed forms and central finite differences, and the error messages.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  add,
  cast,
  cond,
  foriLoop,
  grad,
  greater,
  jit,
  less,
  mul,
  neg,
  scalar,
  sub,
  sum,
  tanh,
  whileLoop,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import { arrArb, expectClose, f64, fdGrad, prop, thrown } from './fixtures/helpers.js';

const branchUp = (x: Tensor, w: Tensor): Tensor => mul(tanh(x), w);
const branchDown = (x: Tensor, w: Tensor): Tensor => sub(mul(x, x), w);
/** The reference: JS if on the concrete sum. */
const condRef = (x: Tensor, w: Tensor): Tensor => (sum(x).item() > 0 ? branchUp(x, w) : branchDown(x, w));
const condF = (x: Tensor, w: Tensor): Tensor => cond(greater(sum(x), 0), branchUp, branchDown, x, w);

t.test('cond', async (t) => {
  const pair = fc.integer({ min: 1, max: 4 }).chain((n) => fc.tuple(arrArb([n]), arrArb([n])));
  const jitted = jit(condF);
  prop(
    t,
    'eager and jit equal the JS if',
    [pair],
    ([x, w]) => {
      const want = condRef(x, w).toTyped();
      expectClose(condF(x, w).toTyped(), want, 0, 0, 'eager');
      expectClose(jitted(x, w).toTyped(), want, 1e-15, 0, 'jit');
    },
    30,
  );
  t.ok(jitted.cacheSize <= 4, 'one compiled program per shape serves both branches');
  const loss = (x: Tensor, w: Tensor): Tensor => sum(mul(condF(x, w), condF(x, w)));
  prop(
    t,
    'grad equals finite differences (both branches, both arguments)',
    [pair.filter(([x]) => Math.abs(sum(x).item()) > 1e-3)],
    ([x, w]) => {
      const g = grad(loss, { argnums: [0, 1] })(x, w) as Tensor[];
      const fd = fdGrad((a, b) => loss(a, b).item(), [x, w]);
      expectClose(g[0].toTyped(), fd[0], 1e-6, 1e-8, 'd/dx');
      expectClose(g[1].toTyped(), fd[1], 1e-6, 1e-8, 'd/dw');
      const gj = jit(grad(loss, { argnums: [0, 1] }))(x, w) as Tensor[];
      expectClose(gj[0].toTyped(), g[0].toTyped(), 1e-12, 1e-14, 'jit(grad) d/dx');
    },
    20,
  );
  await t.test('second derivative through cond equals the closed form', async (t) => {
    // d2/dx2 of cond(x > 0, x^3, -x^2) at x = 0.7 is 6x; at x = -0.7 it is -2.
    const f = (x: Tensor): Tensor =>
      cond(
        greater(x, 0),
        (v: Tensor) => mul(v, mul(v, v)),
        (v: Tensor) => neg(mul(v, v)),
        x,
      );
    const d2 = grad((x: Tensor) => grad(f)(x) as Tensor);
    t.ok(Math.abs((d2(f64([0.7], [])) as Tensor).item() - 6 * 0.7) < 1e-14, '6x at 0.7');
    t.ok(Math.abs((d2(f64([-0.7], [])) as Tensor).item() + 2) < 1e-14, '-2 at -0.7');
  });
  await t.test('pytree operands and results; a boolean predicate picks at trace time', async (t) => {
    const r = cond(
      scalar(1, 'int32'),
      (p: { a: Tensor; b: Tensor[] }) => ({ s: add(p.a, p.b[0]) }),
      (p) => ({ s: sub(p.a, p.b[0]) }),
      { a: f64([1, 2], [2]), b: [f64([10, 20], [2])] },
    );
    t.same(r.s.toNested(), [11, 22], 'a nonzero int predicate means true');
    t.same(
      cond(
        false,
        (x: Tensor) => mul(x, 2),
        (x: Tensor) => x,
        f64([3], [1]),
      ).toNested(),
      [3],
    );
  });
  t.match(
    thrown(() =>
      cond(
        greater(f64([1, 2], [2]), 0),
        (x: Tensor) => x,
        (x: Tensor) => x,
        f64([1, 2], [2]),
      ),
    )?.message,
    /cond: the predicate must be a scalar, got shape \[2\]/,
  );
  t.match(
    thrown(() =>
      cond(
        greater(scalar(1), 0),
        (x: Tensor) => x,
        (x: Tensor) => sum(x),
        f64([1, 2], [2]),
      ),
    )?.message,
    /cond: the branches return different shapes or dtypes: float64\[2\] vs float64\[\]/,
  );
  t.match(
    thrown(() =>
      cond(
        greater(scalar(1), 0),
        (x: Tensor) => [x] as Tree,
        (x: Tensor) => ({ x }) as Tree,
        f64([1, 2], [2]),
      ),
    )?.message,
    /cond: the branches return different structures/,
  );
});

t.test('whileLoop', async (t) => {
  // Doubling plus one until the sum passes a bound: the JS loop is the reference.
  const step = (v: Tensor): Tensor => add(mul(v, 2), 1);
  const run = (x: Tensor, bound: Tensor): Tensor => whileLoop((v: Tensor) => less(sum(v), bound), step, x);
  const jitted = jit(run);
  prop(
    t,
    'eager and jit equal the JS while loop',
    [
      fc.tuple(
        fc.integer({ min: 1, max: 3 }).chain((n) => arrArb([n], 0, 2)),
        fc.integer({ min: -5, max: 500 }),
      ),
    ],
    ([x, b]) => {
      let v: Tensor = x;
      while (sum(v).item() < b) v = step(v);
      const bound = f64([b], []);
      expectClose(run(x, bound).toTyped(), v.toTyped(), 0, 0, 'eager');
      expectClose(jitted(x, bound).toTyped(), v.toTyped(), 0, 0, 'jit');
    },
    25,
  );
  await t.test('a pytree carry (counter and value)', async (t) => {
    const [n, v] = jit((x: Tensor) =>
      whileLoop(
        ([, y]: [Tensor, Tensor]) => less(y, 1000),
        ([i, y]: [Tensor, Tensor]): [Tensor, Tensor] => [add(i, 1), mul(y, 3)],
        [scalar(0, 'int32'), x] as [Tensor, Tensor],
      ),
    )(f64([1], []));
    t.equal(n.item(), 7, '3^7 = 2187 is the first power of 3 >= 1000');
    t.equal(v.item(), 2187);
  });
  t.match(
    thrown(() => grad((x: Tensor) => sum(run(x, f64([10], []))))(f64([1], [1])))?.message,
    /whileLoop: reverse-mode differentiation is not supported/,
  );
  t.match(
    thrown(() =>
      whileLoop(
        (v: Tensor) => less(sum(v), 3),
        (v: Tensor) => sum(v),
        f64([1, 2], [2]),
      ),
    )?.message,
    /whileLoop: bodyFn returns carry leaf 0 as float64\[\] but it came in as float64\[2\]/,
  );
  t.match(
    thrown(() =>
      whileLoop(
        (v: Tensor) => less(v, 3),
        (v: Tensor) => v,
        f64([1, 2], [2]),
      ),
    )?.message,
    /whileLoop: the predicate must be a scalar/,
  );
});

t.test('foriLoop', async (t) => {
  // acc <- tanh(acc * w + i): the JS for loop is the reference.
  const body =
    (w: Tensor) =>
    (i: Tensor, acc: Tensor): Tensor =>
      tanh(add(mul(acc, w), cast(i, acc.dtype)));
  const ref = (lo: number, hi: number, w: Tensor, init: Tensor): Tensor => {
    let acc = init;
    for (let i = lo; i < hi; i++) acc = tanh(add(mul(acc, w), i));
    return acc;
  };
  prop(
    t,
    'static bounds (a scan), eager and jit; tensor bounds (a while loop) under jit',
    [fc.tuple(fc.integer({ min: -2, max: 3 }), fc.integer({ min: 0, max: 6 }), arrArb([2], -1, 1), arrArb([2], -1, 1))],
    ([lo, len, w, init]) => {
      const hi = lo + len;
      const want = ref(lo, hi, w, init).toTyped();
      expectClose(foriLoop(lo, hi, body(w), init).toTyped(), want, 1e-15, 1e-15, 'static eager');
      expectClose(jit((w: Tensor, x: Tensor) => foriLoop(lo, hi, body(w), x))(w, init).toTyped(), want, 1e-15, 1e-15, 'static jit');
      const dyn = jit((l: Tensor, h: Tensor, w: Tensor, x: Tensor) => foriLoop(l, h, body(w), x));
      expectClose(dyn(scalar(lo, 'int32'), scalar(hi, 'int32'), w, init).toTyped(), want, 1e-15, 1e-15, 'tensor bounds');
    },
    20,
  );
  prop(
    t,
    'grad with static bounds equals finite differences',
    [fc.tuple(arrArb([2], -1, 1), arrArb([2], -1, 1))],
    ([w, init]) => {
      const loss = (w: Tensor, x: Tensor): Tensor => sum(foriLoop(0, 4, body(w), x));
      const g = grad(loss, { argnums: [0, 1] })(w, init) as Tensor[];
      const fd = fdGrad((a, b) => loss(a, b).item(), [w, init]);
      expectClose(g[0].toTyped(), fd[0], 1e-6, 1e-8, 'd/dw');
      expectClose(g[1].toTyped(), fd[1], 1e-6, 1e-8, 'd/dinit');
    },
    15,
  );
  t.match(thrown(() => foriLoop(0, 2.5, (_i, c: Tensor) => c, scalar(0)))?.message, /foriLoop: bounds must be integers/);
});
