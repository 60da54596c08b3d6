/**
 * scan: forward values and gradients equal those of the unrolled JS loop running the same body,
 * for pytree carries, xs, closed-over constants, reverse scans and under jit; grad of grad
 * through a scan against closed forms and finite differences.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  add,
  array,
  cast,
  greater,
  grad,
  indexAxis,
  jit,
  matmul,
  mul,
  scalar,
  scan,
  stack,
  sum,
  tanh,
  type NDArray,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import { expectClose, f64, fdGrad, prop, valuesArb } from './fixtures/helpers.js';

const RTOL = 1e-10;
const ATOL = 1e-12;

/** Compares two pytrees of arrays leaf by leaf; throws with the path of the first mismatch. */
function expectTreeClose(actual: Tree, expected: Tree, rtol: number, atol: number, path = ''): void {
  if (expected !== null && typeof expected === 'object' && 'shape' in expected) {
    const a = actual as Tensor;
    const e = expected as Tensor;
    if (a.shape.join() !== e.shape.join()) throw new Error(`${path}: shape [${a.shape}] vs [${e.shape}]`);
    expectClose(a.toTyped(), e.toTyped(), rtol, atol, path || 'value');
    return;
  }
  if (Array.isArray(expected)) {
    expected.forEach((e, i) => expectTreeClose((actual as Tree[])[i], e, rtol, atol, `${path}[${i}]`));
    return;
  }
  if (expected !== null && typeof expected === 'object') {
    for (const k of Object.keys(expected))
      expectTreeClose((actual as Record<string, Tree>)[k], (expected as Record<string, Tree>)[k], rtol, atol, `${path}.${k}`);
    return;
  }
  if (actual !== expected) throw new Error(`${path}: ${String(actual)} vs ${String(expected)}`);
}

// ----------------------------------------------------------------------------- a pytree-carry body

type Carry = { h: Tensor; s: Tensor };
type Xs = { a: Tensor; b: Tensor };

/** One step: h <- tanh(h * a + b), s <- s + sum(h * h); ys = {p: h * s, q: [s]}. No constants are closed over. */
type Ys = { p: Tensor; q: Tensor[] };
function step(c: Carry, x: Xs): [Carry, Ys] {
  const h = tanh(add(mul(c.h, x.a), x.b));
  const s = add(c.s, sum(mul(h, h)));
  return [
    { h, s },
    { p: mul(h, s), q: [s] },
  ];
}

/** The same loop unrolled in JS; ys stacked in xs order. */
function unrolled(init: Carry, xs: Xs, reverse = false): [Carry, Ys] {
  const T = xs.a.shape[0];
  let c = init;
  const ps: Tensor[] = new Array(T);
  const qs: Tensor[] = new Array(T);
  for (let i = 0; i < T; i++) {
    const k = reverse ? T - 1 - i : i;
    const [c2, y] = step(c, { a: indexAxis(xs.a, 0, k), b: indexAxis(xs.b, 0, k) });
    c = c2;
    ps[k] = y.p;
    qs[k] = y.q[0];
  }
  return [c, { p: stack(ps, 0), q: [stack(qs, 0)] }];
}

const scanned = (init: Carry, xs: Xs, reverse = false): [Carry, Ys] => scan(step, init, xs, { reverse }) as [Carry, Ys];

/** A scalar loss of the carry and the ys, weighted so every element matters. */
function lossOf(run: (init: Carry, xs: Xs) => [Carry, Ys], wh: Tensor, wy: Tensor) {
  return (init: Carry, xs: Xs): Tensor => {
    const [c, ys] = run(init, xs);
    return add(add(sum(mul(wh, c.h)), c.s), add(sum(mul(wy, ys.p)), sum(mul(ys.q[0], ys.q[0]))));
  };
}

const problemArb = fc
  .record({ T: fc.integer({ min: 1, max: 4 }), d: fc.integer({ min: 1, max: 3 }), pool: valuesArb(64, -1.5, 1.5) })
  .map(({ T, d, pool }) => {
    let k = 0;
    const take = (n: number) => pool.slice(k, (k += n));
    return {
      T,
      d,
      init: { h: f64(take(d), [d]), s: f64(take(1), []) },
      xs: { a: f64(take(T * d), [T, d]), b: f64(take(T), [T]) },
      wh: f64(take(d), [d]),
      wy: f64(
        take(T * d).map((v, i) => v + (pool[(i * 7) % 64] ?? 0)),
        [T, d],
      ),
    };
  });

t.test('scan forward equals the unrolled loop (pytree carry, xs and ys)', async (t) => {
  prop(
    t,
    'forward values',
    [problemArb, fc.boolean()],
    ({ init, xs }, reverse) => {
      const [c1, y1] = scanned(init, xs, reverse);
      const [c2, y2] = unrolled(init, xs, reverse);
      expectTreeClose({ c: c1, y: y1 }, { c: c2, y: y2 }, RTOL, ATOL);
    },
    30,
  );
});

t.test('grad through scan equals grad of the unrolled loop', async (t) => {
  prop(
    t,
    'pytree carry and pytree xs, forward order',
    [problemArb],
    ({ init, xs, wh, wy }) => {
      const g1 = grad(
        lossOf((i, x) => scanned(i, x), wh, wy),
        { argnums: [0, 1] },
      )(init, xs);
      const g2 = grad(
        lossOf((i, x) => unrolled(i, x), wh, wy),
        { argnums: [0, 1] },
      )(init, xs);
      expectTreeClose(g1, g2, RTOL, ATOL, 'grads');
    },
    25,
  );
  prop(
    t,
    'reverse: true',
    [problemArb],
    ({ init, xs, wh, wy }) => {
      const g1 = grad(
        lossOf((i, x) => scanned(i, x, true), wh, wy),
        { argnums: [0, 1] },
      )(init, xs);
      const g2 = grad(
        lossOf((i, x) => unrolled(i, x, true), wh, wy),
        { argnums: [0, 1] },
      )(init, xs);
      expectTreeClose(g1, g2, RTOL, ATOL, 'grads');
    },
    25,
  );
  prop(
    t,
    'under jit: jit(grad(f)) with a scan equals grad of the unrolled loop',
    [problemArb],
    ({ init, xs, wh, wy }) => {
      const g1 = jit((i: Carry, x: Xs) =>
        grad(
          lossOf((a, b) => scanned(a, b), wh, wy),
          { argnums: [0, 1] },
        )(i, x),
      )(init, xs);
      const g2 = grad(
        lossOf((i, x) => unrolled(i, x), wh, wy),
        { argnums: [0, 1] },
      )(init, xs);
      expectTreeClose(g1, g2, 1e-9, 1e-12, 'grads');
    },
    15,
  );
  prop(
    t,
    'gradients also match finite differences',
    [problemArb],
    ({ init, xs, wh, wy }) => {
      const loss = lossOf((i, x) => scanned(i, x), wh, wy);
      const [gh, gs, ga, gb] = (() => {
        const g = grad(loss, { argnums: [0, 1] })(init, xs) as [Carry, Xs];
        return [g[0].h, g[0].s, g[1].a, g[1].b];
      })();
      const F = (h: NDArray, s: NDArray, a: NDArray, b: NDArray) => loss({ h, s }, { a, b }).item();
      const fd = fdGrad(F as (...x: NDArray[]) => number, [init.h as NDArray, init.s as NDArray, xs.a as NDArray, xs.b as NDArray]);
      [gh, gs, ga, gb].forEach((g, i) => expectClose(g.toTyped(), fd[i], 1e-5, 1e-6, `argument ${i}`));
    },
    15,
  );
});

t.test('scan without xs (length given) and with zero steps', async (t) => {
  // c <- c * c, y = c: after 3 steps c0^8; ys = [c0, c0^2, c0^4].
  const f = (c0: Tensor) => scan((c: Tensor, _x: null) => [mul(c, c), c], c0, null, { length: 3 }) as [Tensor, Tensor];
  const [c, ys] = f(f64([1.1], []));
  expectClose([c.item()], [1.1 ** 8], 1e-15, 0, 'carry');
  t.same(ys.shape, [3]);
  expectClose(ys.toTyped(), [1.1, 1.1 ** 2, 1.1 ** 4], 1e-15, 0, 'ys');
  const g = grad((c0: Tensor) => add(f(c0)[0], sum(f(c0)[1])))(f64([1.1], [])) as Tensor;
  expectClose([g.item()], [8 * 1.1 ** 7 + 1 + 2 * 1.1 + 4 * 1.1 ** 3], 1e-12, 0, 'd/dc0 (c0^8 + c0 + c0^2 + c0^4)');
  const empty = f64([], [0, 2]);
  const [c2, ys2] = scan((cc: Tensor, x: Tensor) => [add(tanh(cc), x), x], f64([1, 2], [2]), empty) as [Tensor, Tensor];
  t.same(c2.toNested(), [1, 2], 'zero steps: the carry is the init');
  t.same(ys2.shape, [0, 2]);
  const g2 = grad((h: Tensor) => sum(scan((cc: Tensor, x: Tensor) => [add(tanh(cc), x), x], h, empty)[0] as Tensor))(
    f64([1, 2], [2]),
  ) as Tensor;
  t.same(g2.toNested(), [1, 1], 'zero steps: identity gradient');
});

// ----------------------------------------------------------------------------- closed-over constants

/** h <- tanh(h @ W + x): the body closes over W (a scan constant). */
function rnnScan(W: Tensor, h0: Tensor, xs: Tensor): Tensor {
  const [h, ys] = scan(
    (h: Tensor, x: Tensor) => {
      const n = tanh(add(matmul(h, W), x));
      return [n, n];
    },
    h0,
    xs,
  ) as [Tensor, Tensor];
  return add(sum(h), sum(mul(ys, ys)));
}
function rnnUnrolled(W: Tensor, h0: Tensor, xs: Tensor): Tensor {
  let h = h0;
  let acc: Tensor = scalar(0, 'float64');
  for (let i = 0; i < xs.shape[0]; i++) {
    h = tanh(add(matmul(h, W), indexAxis(xs, 0, i)));
    acc = add(acc, sum(mul(h, h)));
  }
  return add(sum(h), acc);
}

t.test('grad through scan with constants closed over by the body', async (t) => {
  const W = array(
    [
      [0.5, -0.2],
      [0.3, 0.1],
    ],
    { dtype: 'float64' },
  );
  const h0 = array([0.1, -0.3], { dtype: 'float64' });
  const xs = array(
    [
      [1, 2],
      [3, 4],
      [0.5, -1],
    ],
    { dtype: 'float64' },
  );
  t.equal(rnnScan(W, h0, xs).item(), rnnUnrolled(W, h0, xs).item(), 'forward values agree');
  const expected = grad(rnnUnrolled, { argnums: [0, 1, 2] })(W, h0, xs) as Tensor[];
  let got: Tensor[] | undefined;
  t.doesNotThrow(() => {
    got = grad(rnnScan, { argnums: [0, 1, 2] })(W, h0, xs) as Tensor[];
  }, 'grad of a scan whose body closes over W (a traced constant)');
  if (got) t.doesNotThrow(() => expectTreeClose(got as Tree, expected, RTOL, ATOL, 'grads'), 'equals the unrolled gradient');
  // The same with W a concrete constant (not differentiated): the body still has a constant.
  let gotH: Tensor | undefined;
  t.doesNotThrow(() => {
    gotH = grad((h: Tensor) => rnnScan(W, h, xs))(h0) as Tensor;
  }, 'grad of a scan whose body closes over a concrete array');
  if (gotH) t.doesNotThrow(() => expectClose(gotH!.toTyped(), expected[1].toTyped(), RTOL, ATOL, 'grad h0'));
  // A JS number broadcast against a vector carry becomes a closed-over constant too.
  const decay = (v: Tensor) => sum(scan((c: Tensor, x: Tensor) => [add(mul(c, 0.5), x), null], v, xs)[0] as Tensor);
  let gd: Tensor | undefined;
  t.doesNotThrow(() => {
    gd = grad(decay)(h0) as Tensor;
  }, 'grad of a scan whose body multiplies a vector carry by a JS number');
  if (gd) t.same(gd.toNested(), [0.125, 0.125], 'd/dh0 of sum(0.5^3 h0 + ...) = 0.125');
  // Under jit, the constant is an outer tracer (W is a jit argument).
  const jitted = jit((w: Tensor, h: Tensor, x: Tensor) => grad(rnnScan, { argnums: [0, 1, 2] })(w, h, x) as Tensor[]);
  let gj: Tensor[] | undefined;
  t.doesNotThrow(() => {
    gj = jitted(W, h0, xs);
  }, 'jit(grad(f)) with a scan that closes over a jit argument');
  if (gj) t.doesNotThrow(() => expectTreeClose(gj as Tree, expected, 1e-9, 1e-12, 'grads'));
  prop(
    t,
    'random W, h0, xs: grads of the scan wrt the closed-over W, h0 and xs equal the unrolled ones',
    [fc.record({ T: fc.integer({ min: 1, max: 4 }), d: fc.integer({ min: 1, max: 3 }), pool: valuesArb(40, -1, 1) })],
    ({ T, d, pool }) => {
      const w = f64(pool.slice(0, d * d), [d, d]);
      const h = f64(pool.slice(9, 9 + d), [d]);
      const x = f64(pool.slice(12, 12 + T * d), [T, d]);
      const g1 = grad(rnnScan, { argnums: [0, 1, 2] })(w, h, x) as Tensor[];
      const g2 = grad(rnnUnrolled, { argnums: [0, 1, 2] })(w, h, x) as Tensor[];
      expectTreeClose(g1, g2, RTOL, ATOL, 'grads');
    },
    20,
  );
  // The forward scan under jit with a closed-over argument works.
  t.doesNotThrow(() => expectClose(jit(rnnScan)(W, h0, xs).toTyped(), [rnnUnrolled(W, h0, xs).item()], 1e-12, 0, 'jit forward'));
});

// ----------------------------------------------------------------------------- grad of grad

t.test('grad of grad through a scan', async (t) => {
  // h <- h * h * x_t over two steps: h2 = h0^4 x0^2 x1, so d2 h2 / dh0^2 = 12 h0^2 x0^2 x1.
  prop(
    t,
    'closed form for a polynomial body (scalar carry)',
    [
      fc.double({ min: -1.5, max: 1.5, noNaN: true }),
      fc.double({ min: -1.5, max: 1.5, noNaN: true }),
      fc.double({ min: -1.5, max: 1.5, noNaN: true }),
    ],
    (h, x0, x1) => {
      const xs = f64([x0, x1], [2]);
      const f = (h0: Tensor) => scan((c: Tensor, x: Tensor) => [mul(mul(c, c), x), null], h0, xs)[0] as Tensor;
      const d1 = grad(f)(f64([h], [])) as Tensor;
      const d2 = grad((h0: Tensor) => grad(f)(h0) as Tensor)(f64([h], [])) as Tensor;
      expectClose([d1.item()], [4 * h ** 3 * x0 * x0 * x1], 1e-12, 1e-12, 'first derivative');
      expectClose([d2.item()], [12 * h * h * x0 * x0 * x1], 1e-12, 1e-12, 'second derivative');
    },
    25,
  );
  prop(
    t,
    'finite differences of the gradient for a tanh body (scalar carry and xs)',
    [valuesArb(5, -1.2, 1.2)],
    ([h, ...xv]) => {
      const xs = f64(xv, [4]);
      const f = (h0: Tensor, x: Tensor) => {
        const [c, ys] = scan(
          (c: Tensor, xi: Tensor) => {
            const n = tanh(add(mul(c, xi), xi));
            return [n, mul(n, n)];
          },
          h0,
          x,
        ) as [Tensor, Tensor];
        return add(c, sum(ys));
      };
      const g = (h0: Tensor, x: Tensor) => grad(f, { argnums: [0, 1] })(h0, x) as Tensor[];
      // Hessian-vector style check: grad of (sum of the gradient) vs finite differences of it.
      const G = (h0: Tensor, x: Tensor) => {
        const [gh, gx] = g(h0, x);
        return add(gh, sum(gx));
      };
      const analytic = grad(G, { argnums: [0, 1] })(f64([h], []), xs) as Tensor[];
      const fd = fdGrad((a, b) => G(a, b).item(), [f64([h], []), xs]);
      analytic.forEach((a, i) => expectClose(a.toTyped(), fd[i], 1e-5, 1e-6, `second derivative wrt argument ${i}`));
    },
    15,
  );
  t.test('vector carry with a closed-over weight: grad of grad vs finite differences', async (t) => {
    const W = array(
      [
        [0.5, -0.2],
        [0.3, 0.1],
      ],
      { dtype: 'float64' },
    );
    const xs = array(
      [
        [1, 2],
        [3, 4],
        [0.5, -1],
      ],
      { dtype: 'float64' },
    );
    const G = (h0: Tensor) => sum(mul(grad((h: Tensor) => rnnScan(W, h, xs))(h0) as Tensor, h0));
    const h0 = f64([0.1, -0.3], [2]);
    let analytic: Tensor | undefined;
    t.doesNotThrow(() => {
      analytic = grad(G)(h0) as Tensor;
    });
    if (analytic) {
      const fd = fdGrad((h) => G(h).item(), [h0])[0];
      t.doesNotThrow(() => expectClose(analytic!.toTyped(), fd, 1e-5, 1e-6, 'grad of grad'));
    }
  });
});

t.test('nested scans and mixed-dtype carries under grad', async (t) => {
  const W = f64([0.5, -0.2, 0.3, 0.1], [2, 2]);
  const xs = f64([1, 2, 0.5, 0.1, -1, 0.3, 0.2, 0.4, 0.1, 0.1, -0.3, 0.9], [3, 2, 2]);
  // The inner body closes over W and over the outer body's carry h.
  const nested = (w: Tensor, h0: Tensor) =>
    sum(
      scan(
        (h: Tensor, xrow: Tensor) => {
          const [h2] = scan((g: Tensor, x: Tensor) => [tanh(add(matmul(g, w), mul(x, h))), null], h, xrow) as [Tensor, null];
          return [h2, null];
        },
        h0,
        xs,
      )[0] as Tensor,
    );
  const unrolledNested = (w: Tensor, h0: Tensor) => {
    let h = h0;
    for (let i = 0; i < 3; i++) {
      let g = h;
      for (let j = 0; j < 2; j++) g = tanh(add(matmul(g, w), mul(indexAxis(indexAxis(xs, 0, i), 0, j), h)));
      h = g;
    }
    return sum(h);
  };
  const h0 = f64([0.1, -0.3], [2]);
  t.doesNotThrow(() => expectClose([nested(W, h0).item()], [unrolledNested(W, h0).item()], 1e-14, 0, 'forward'));
  const want = grad(unrolledNested, { argnums: [0, 1] })(W, h0) as Tensor[];
  t.doesNotThrow(
    () => expectTreeClose(grad(nested, { argnums: [0, 1] })(W, h0) as Tensor[], want, RTOL, ATOL, 'grad'),
    'grad of nested scans',
  );
  t.doesNotThrow(
    () =>
      expectTreeClose(
        jit((w: Tensor, h: Tensor) => grad(nested, { argnums: [0, 1] })(w, h) as Tensor[])(W, h0),
        want,
        RTOL,
        ATOL,
        'jit grad',
      ),
    'jit(grad) of nested scans',
  );
  const gg = (f: typeof nested) => grad((h: Tensor) => sum(grad(f, { argnums: 1 })(W, h) as Tensor))(h0) as Tensor;
  t.doesNotThrow(
    () => expectClose(gg(nested).toTyped(), gg(unrolledNested).toTyped(), RTOL, ATOL, 'grad of grad'),
    'grad of grad of nested scans',
  );

  // Carry [count: int32, total: float64]; ys = the running total entering each step.
  const x3 = f64([1, 2, 3], [3]);
  const mixed = (x: Tensor) => {
    const [[n, tot], ys] = scan(
      (c: Tensor[], xi: Tensor) => [[add(c[0], cast(greater(xi, 1.5), 'int32')), add(c[1], mul(xi, xi))], c[1]],
      [array(0, { dtype: 'int32' }), f64([0], [])],
      x,
    ) as [Tensor[], Tensor];
    return { n, tot, ys };
  };
  const r = mixed(x3);
  t.equal(r.n.item(), 2, 'int32 count');
  t.equal(r.n.dtype, 'int32');
  t.same(r.ys.toNested(), [0, 1, 5]);
  // d/dx [sum x^2 + (x0^2) + (x0^2 + x1^2)] = [2x0 + 4x0, 2x1 + 2x1, 2x2].
  const g = grad((x: Tensor) => add(mixed(x).tot, sum(mixed(x).ys)))(x3) as Tensor;
  t.same(g.toNested(), [6, 8, 6], 'the int32 carry gets no cotangent, the float one does');
});
