/**
 * Transformations: grad of grad against closed forms, jvp against finite differences, vjp over
 * pytrees, valueAndGrad with argnums arrays and hasAux, gradients of broadcast operands; and
 * customVjp (second part of the file).
 */
import fc from 'fast-check';
import t from 'tap';
import {
  abs,
  add,
  array,
  customVjp,
  div,
  exp,
  floor,
  grad,
  indexAxis,
  jit,
  jvp,
  matmul,
  mul,
  NDArray,
  pow,
  scan,
  sigmoid,
  stack,
  sub,
  sum,
  tanh,
  TreeStructureError,
  valueAndGrad,
  vjp,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import { expectClose, expectExact, expectShape, f64, prop, shapeArb, sizeOfShape, thrown, valuesArb } from './fixtures/helpers.js';

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
      expectClose(
        g2.toTyped(),
        xv.map((x) => -2 * Math.tanh(x) * (1 - Math.tanh(x) ** 2)),
        1e-12,
        1e-15,
        'second derivative',
      );
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
    .record({
      m: fc.integer({ min: 1, max: 3 }),
      k: fc.integer({ min: 1, max: 3 }),
      n: fc.integer({ min: 1, max: 3 }),
      pool: valuesArb(60, -1.5, 1.5),
    })
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

t.test('vjp over pytrees', async (t) => {
  // f({w, b}, x) = {y: w * x + b, s: sum(x * x)}; with cotangents {y: cy, s: cs}:
  // d/dw = cy * x, d/db = cy, d/dx = cy * w + 2 cs x.
  const f = (p: { w: Tensor; b: Tensor }, x: Tensor) => ({ y: add(mul(p.w, x), p.b), s: sum(mul(x, x)) });
  const p = { w: f64([2, -1], [2]), b: f64([0.5, 0.25], [2]) };
  const x = f64([3, 4], [2]);
  const [out, back] = vjp(f as unknown as (...a: Tree[]) => Tree, p, x);
  const o = out as { y: Tensor; s: Tensor };
  t.same(o.y.toNested(), [6.5, -3.75]);
  t.equal(o.s.item(), 25);
  const [gp, gx] = back({ y: f64([1, 10], [2]), s: f64([0.5], []) }) as [{ w: Tensor; b: Tensor }, Tensor];
  t.same(gp.w.toNested(), [3, 40]);
  t.same(gp.b.toNested(), [1, 10]);
  t.same(gx.toNested(), [2 + 3, -10 + 4]);
});

t.test('valueAndGrad with argnums arrays and hasAux', async (t) => {
  // f(a, b, c) = sum(a * b) + sum(c^2), aux = {s: a + b, tag: 'x'}: grads wrt a is b, wrt c is 2c.
  const f = (a: Tensor, b: Tensor, c: Tensor) =>
    [add(sum(mul(a, b)), sum(mul(c, c))), { s: add(a, b), tag: 'x' }] as [Tensor, { s: Tensor; tag: string }];
  prop(
    t,
    'value, aux and grads for argnums [0, 2]',
    [shapeArb(0, 2, 3).chain((s) => fc.tuple(fc.constant(s), valuesArb(sizeOfShape(s) * 3, -2, 2)))],
    ([s, pool]) => {
      const n = sizeOfShape(s);
      const av = pool.slice(0, n);
      const bv = pool.slice(n, 2 * n);
      const cv = pool.slice(2 * n);
      const [[value, aux], grads] = valueAndGrad(f, { argnums: [0, 2], hasAux: true })(f64(av, s), f64(bv, s), f64(cv, s)) as [
        [Tensor, { s: Tensor; tag: string }],
        Tensor[],
      ];
      const expected = av.reduce((acc, a, i) => acc + a * bv[i], 0) + cv.reduce((acc, c) => acc + c * c, 0);
      expectClose([value.item()], [expected], 1e-12, 1e-12, 'value');
      if (!Array.isArray(grads) || grads.length !== 2) throw new Error('expected two gradients for argnums [0, 2]');
      expectShape(grads[0], s, 'grad a');
      expectClose(grads[0].toTyped(), bv, 0, 0, 'grad a');
      expectClose(
        grads[1].toTyped(),
        cv.map((c) => 2 * c),
        0,
        0,
        'grad c',
      );
      expectClose(
        aux.s.toTyped(),
        av.map((a, i) => a + bv[i]),
        0,
        0,
        'aux.s',
      );
      if (aux.tag !== 'x') throw new Error(`aux.tag ${aux.tag}`);
      // The aux comes back as an ordinary array, usable in later computations.
      expectClose(
        add(aux.s, 1).toTyped(),
        av.map((a, i) => a + bv[i] + 1),
        0,
        0,
        'aux.s + 1',
      );
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
      const colSums = (a: ArrayLike<number>) =>
        Array.from({ length: n }, (_, j) => Array.from({ length: m }, (_, i) => a[i * n + j]).reduce((x, y) => x + y, 0));
      const rowSums = (a: ArrayLike<number>) =>
        Array.from({ length: m }, (_, i) => Array.from({ length: n }, (_, j) => a[i * n + j]).reduce((x, y) => x + y, 0));
      const [gv, gs] = grad((vv: Tensor, ss: Tensor) => sum(mul(W, add(add(M, vv), ss))), { argnums: [0, 1] })(v, s) as Tensor[];
      expectShape(gv, [n], 'grad v');
      expectShape(gs, [], 'grad scalar');
      expectClose(gv.toTyped(), colSums(wv), 1e-12, 1e-12, 'grad of the [n] vector = column sums of w');
      expectClose([gs.item()], [Array.from(wv).reduce((a, b) => a + b, 0)], 1e-12, 1e-12, 'grad of the scalar = total sum of w');
      const gc = grad((cc: Tensor) => sum(mul(W, mul(M, cc))))(c) as Tensor;
      expectShape(gc, [m, 1], 'grad c');
      expectClose(
        gc.toTyped(),
        rowSums(Array.from(wv, (x, i) => x * mv[i])),
        1e-12,
        1e-12,
        'grad of the [m, 1] column = row sums of w * M',
      );
    },
    30,
  );
  t.test('the issue example: a [3]-vector added to a [4, 3] matrix', async (t) => {
    const M = array(
      [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
        [10, 11, 12],
      ],
      { dtype: 'float64' },
    );
    const w = array(
      [
        [1, 0, 2],
        [0, 1, 0],
        [3, 0, 0],
        [1, 1, 1],
      ],
      { dtype: 'float64' },
    );
    const gv = grad((v: Tensor) => sum(mul(w, add(M, v))))(array([0.5, -0.5, 2], { dtype: 'float64' })) as Tensor;
    t.same(gv.toNested(), [5, 2, 3], 'column sums of w');
    const gs = grad((s: Tensor) => sum(mul(w, add(M, s))))(array(1.5, { dtype: 'float64' })) as Tensor;
    t.same(gs.shape, []);
    t.equal(gs.item(), 10, 'total sum of w');
  });
});

// =============================================================================================
// customVjp

t.test('customVjp', async (t) => {
  /*
   * customVjp: the forward is f, the gradient is exactly what bwd returns: eagerly, inside scan,
   * under jit, and with pytree arguments.
   */
  /** floor forward; backward ct / (1 + |x|) (a made-up surrogate, so it cannot be confused with any real derivative). */
  const spike = customVjp(
    (x: Tensor) => floor(x),
    (x: Tensor) => [floor(x), x] as [Tensor, Tensor],
    (x: Tensor, ct: Tensor) => [div(ct, add(abs(x), 1))],
  );

  const surrogate = (x: number, w: number) => w / (1 + Math.abs(x));

  const vecArb = fc.integer({ min: 1, max: 6 }).chain((n) => fc.tuple(valuesArb(n, -3, 3), valuesArb(n, -2, 2)));

  t.test('forward is f, gradient is exactly bwd', async (t) => {
    prop(
      t,
      'floor forward, surrogate backward',
      [vecArb],
      ([xv, wv]) => {
        const x = f64(xv, [xv.length]);
        const w = f64(wv, [wv.length]);
        expectExact(spike(x).toTyped(), xv.map(Math.floor), 'forward');
        const g = grad((a: Tensor) => sum(mul(w, spike(a))))(x) as Tensor;
        expectExact(
          g.toTyped(),
          xv.map((v, i) => surrogate(v, wv[i])),
          'gradient',
        );
      },
      30,
    );
    t.test('a bwd that ignores the forward entirely is still what grad returns', async (t) => {
      const constant = customVjp(
        (x: Tensor) => mul(x, x),
        (x: Tensor) => [mul(x, x), null] as [Tensor, null],
        (_r: null, ct: Tensor) => [mul(ct, 7)],
      );
      const x = f64([1, -2, 3], [3]);
      t.same(constant(x).toNested(), [1, 4, 9]);
      t.same((grad((a: Tensor) => sum(constant(a)))(x) as Tensor).toNested(), [7, 7, 7], 'not 2x: the custom rule wins');
    });
  });

  t.test('pytree arguments and outputs', async (t) => {
    // f({a, b}, c) = {p: floor(a) * b, q: c}; bwd gives a: ct_p * 2, b: ct_p * 3, c: null (no gradient).
    const f = customVjp(
      (ab: { a: Tensor; b: Tensor }, c: Tensor) => ({ p: mul(floor(ab.a), ab.b), q: mul(c, c) }),
      (ab: { a: Tensor; b: Tensor }, c: Tensor) => [{ p: mul(floor(ab.a), ab.b), q: mul(c, c) }, null] as [{ p: Tensor; q: Tensor }, null],
      (_r: null, ct: { p: Tensor; q: Tensor }) => [{ a: mul(ct.p, 2), b: mul(ct.p, 3) }, null],
    );
    prop(
      t,
      'each leaf gets the cotangent bwd assigns to it',
      [vecArb],
      ([xv, wv]) => {
        const n = xv.length;
        const a = f64(xv, [n]);
        const b = f64(wv, [n]);
        const c = f64(
          wv.map((v) => v + 1),
          [n],
        );
        const out = f({ a, b }, c);
        expectExact(
          out.p.toTyped(),
          xv.map((v, i) => Math.floor(v) * wv[i]),
          'forward p',
        );
        const w = f64(
          wv.map((v) => v - 0.5),
          [n],
        );
        const loss = (ab: { a: Tensor; b: Tensor }, cc: Tensor) => {
          const o = f(ab, cc);
          return add(sum(mul(w, o.p)), sum(o.q));
        };
        const [gab, gc] = grad(loss, { argnums: [0, 1] })({ a, b }, c) as [{ a: Tensor; b: Tensor }, Tensor];
        const wvals = Array.from(w.toTyped());
        expectExact(
          gab.a.toTyped(),
          wvals.map((v) => v * 2),
          'grad a',
        );
        expectExact(
          gab.b.toTyped(),
          wvals.map((v) => v * 3),
          'grad b',
        );
        expectExact(gc.toTyped(), new Array(n).fill(0), 'grad c (bwd returned null)');
      },
      20,
    );
  });

  t.test('inside scan', async (t) => {
    // Integrate-and-fire-like loop: v <- v * x_t + x_t, spike s_t = spike(v) is the output.
    const run = (v0: Tensor, xs: Tensor): [Tensor, Tensor] =>
      scan(
        (v: Tensor, x: Tensor) => {
          const v2 = add(mul(v, x), x);
          return [v2, spike(v2)];
        },
        v0,
        xs,
      ) as [Tensor, Tensor];
    const unrolled = (v0: Tensor, xs: Tensor): [Tensor, Tensor] => {
      let v = v0;
      const ys: Tensor[] = [];
      for (let i = 0; i < xs.shape[0]; i++) {
        const x = indexAxis(xs, 0, i);
        v = add(mul(v, x), x);
        ys.push(spike(v));
      }
      return [v, stack(ys)];
    };
    const problem = fc
      .record({ T: fc.integer({ min: 1, max: 4 }), d: fc.integer({ min: 1, max: 3 }), pool: valuesArb(40, -1.5, 1.5) })
      .map(({ T, d, pool }) => ({
        v0: f64(pool.slice(0, d), [d]),
        xs: f64(pool.slice(3, 3 + T * d), [T, d]),
        w: f64(pool.slice(20, 20 + T * d), [T, d]),
      }));
    prop(
      t,
      'ys are spikes; gradients equal those of the unrolled loop',
      [problem],
      ({ v0, xs, w }) => {
        const [, ys] = run(v0, xs);
        const [, ysU] = unrolled(v0, xs);
        expectExact(ys.toTyped(), ysU.toTyped(), 'forward spikes');
        const loss = (runner: typeof run) => (a: Tensor, b: Tensor) => sum(mul(w, runner(a, b)[1]));
        const g1 = grad(loss(run), { argnums: [0, 1] })(v0, xs) as Tensor[];
        const g2 = grad(loss(unrolled), { argnums: [0, 1] })(v0, xs) as Tensor[];
        g1.forEach((g, i) => expectClose(g.toTyped(), g2[i].toTyped(), 1e-12, 1e-14, `argument ${i}`));
      },
      20,
    );
    t.test('one step: the gradient wrt xs is bwd of the spike exactly', async (t) => {
      // ys_t = spike(x_t) (carry unused): d/dx_t sum(w * ys) = w_t / (1 + |x_t|).
      const xs = f64([0.3, -1.7, 2.2, -0.4], [4]);
      const w = f64([1.5, -2, 0.25, 3], [4]);
      const g = grad((x: Tensor) => sum(mul(w, scan((c: Tensor, xi: Tensor) => [c, spike(xi)], f64([0], []), x)[1] as Tensor)))(
        xs,
      ) as Tensor;
      t.same(
        Array.from(g.toTyped()),
        [0.3, -1.7, 2.2, -0.4].map((v, i) => surrogate(v, [1.5, -2, 0.25, 3][i])),
      );
    });
  });

  t.test('a customVjp built inside a scan body, closing over the carry', async (t) => {
    // Adaptive threshold: spike = floor(x - c) with c the carry; bwd is ct * 0.5 (c gets no
    // gradient through the custom rule, as documented for closed-over values).
    const body = (c: Tensor, x: Tensor): [Tensor, Tensor] => {
      const spk = customVjp(
        (v: Tensor) => floor(sub(v, c)),
        (v: Tensor) => [floor(sub(v, c)), null] as [Tensor, null],
        (_r: null, ct: Tensor) => [mul(ct, 0.5)],
      );
      const s = spk(x);
      return [add(c, s), s];
    };
    const viaScan = (xs: Tensor) => sum(scan(body, f64([0.25], []), xs)[1] as Tensor);
    const unrolledLoop = (xs: Tensor) => {
      let c: Tensor = f64([0.25], []);
      let total: Tensor = f64([0], []);
      for (let i = 0; i < xs.shape[0]; i++) {
        const [c2, s] = body(c, indexAxis(xs, 0, i));
        c = c2;
        total = add(total, s);
      }
      return total;
    };
    const xs = f64([1.5, 2.5, -0.5], [3]);
    // c: 0.25 -> 1.25 -> 2.25 -> -0.75; spikes floor(1.25) = 1, floor(1.25) = 1, floor(-2.75) = -3.
    t.equal(viaScan(xs).item(), -1, 'forward');
    t.same((grad(unrolledLoop)(xs) as Tensor).toNested(), [0.5, 0.5, 0.5], 'unrolled loop: the gradient is bwd');
    let g: Tensor | undefined;
    t.doesNotThrow(() => {
      g = grad(viaScan)(xs) as Tensor;
    }, 'grad through the scan');
    if (g) t.same(g.toNested(), [0.5, 0.5, 0.5], 'scan: the gradient is bwd, as in the unrolled loop');
    // bwd may close over the carry too: ct / (1 + |c|) with c the carry entering each step.
    const body2 = (c: Tensor, x: Tensor): [Tensor, Tensor] => {
      const spk = customVjp(
        (v: Tensor) => floor(sub(v, c)),
        (v: Tensor) => [floor(sub(v, c)), null] as [Tensor, null],
        (_r: null, ct: Tensor) => [div(ct, add(abs(c), 1))],
      );
      const s = spk(x);
      return [add(c, s), s];
    };
    let g2: Tensor | undefined;
    t.doesNotThrow(() => {
      g2 = grad((v: Tensor) => sum(scan(body2, f64([0.25], []), v)[1] as Tensor))(xs) as Tensor;
    }, 'grad through the scan, bwd closing over the carry');
    if (g2) t.same(g2.toNested(), [1 / 1.25, 1 / 2.25, 1 / 3.25], 'bwd sees the carry of its own step');
    const g3 = jit((v: Tensor) => grad((u: Tensor) => sum(scan(body2, f64([0.25], []), u)[1] as Tensor))(v) as Tensor)(xs);
    t.same(g3.toNested(), [1 / 1.25, 1 / 2.25, 1 / 3.25], 'the same under jit');
  });

  t.test('under jit', async (t) => {
    const x = f64([0.3, -1.7, 2.2, -0.4, 5], [5]);
    const w = f64([1.5, -2, 0.25, 3, -1], [5]);
    t.same(jit(spike)(x).toNested(), [0, -2, 2, -1, 5], 'forward under jit');
    const g = jit((a: Tensor) => grad((z: Tensor) => sum(mul(w, spike(z))))(a) as Tensor)(x);
    t.same(
      Array.from(g.toTyped()),
      [0.3, -1.7, 2.2, -0.4, 5].map((v, i) => surrogate(v, [1.5, -2, 0.25, 3, -1][i])),
      'jit(grad) is bwd exactly',
    );
    const g2 = grad((z: Tensor) => sum(mul(w, jit(spike)(z))))(x) as Tensor;
    t.same(Array.from(g2.toTyped()), Array.from(g.toTyped()), 'grad(jit(f)) is bwd exactly');
    // Inside a scan, under jit: ys_t = spike(x_t), so the gradient wrt xs is bwd applied to w.
    const viaScan = (a: Tensor) => sum(mul(w, scan((c: Tensor, xi: Tensor) => [c, spike(xi)], f64([0], []), a)[1] as Tensor));
    const g3 = jit((a: Tensor) => grad(viaScan)(a) as Tensor)(x);
    t.same(Array.from(g3.toTyped()), Array.from(g.toTyped()), 'jit(grad(scan(spike))) is bwd exactly');
    t.same(jit(viaScan)(x).item(), 1.5 * 0 + -2 * -2 + 0.25 * 2 + 3 * -1 + -1 * 5, 'jit(scan(spike)) forward');
  });

  t.test('bwd returning the wrong structure or shape is reported', async (t) => {
    const x = f64([1, 2], [2]);
    const wrongCount = customVjp(
      (a: Tensor) => mul(a, 2),
      (a: Tensor) => [mul(a, 2), null] as [Tensor, null],
      (_r: null, ct: Tensor) => [ct, ct],
    );
    const e1 = thrown(() => grad((a: Tensor) => sum(wrongCount(a)))(x));
    t.ok(e1 instanceof TreeStructureError, `two cotangents for one argument: ${e1}`);
    t.match(e1?.message, /customVjp/);
    const wrongTree = customVjp(
      (p: { a: Tensor }) => mul(p.a, 2),
      (p: { a: Tensor }) => [mul(p.a, 2), null] as [Tensor, null],
      (_r: null, ct: Tensor) => [{ b: ct }],
    );
    const e2 = thrown(() => grad((a: Tensor) => sum(wrongTree({ a })))(x));
    t.ok(e2 instanceof TreeStructureError, `cotangent tree {b} for argument {a}: ${e2}`);
    t.match(e2?.message, /customVjp/);
    const wrongShape = customVjp(
      (a: Tensor) => mul(a, 2),
      (a: Tensor) => [mul(a, 2), null] as [Tensor, null],
      (_r: null, ct: Tensor) => [sum(ct)],
    );
    const e3 = thrown(() => grad((a: Tensor) => sum(wrongShape(a)))(x as NDArray));
    t.match(e3?.message, /customVjp.*\[\].*\[2\]/, `scalar cotangent for a [2] argument: ${e3}`);
  });
});
