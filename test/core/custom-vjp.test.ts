/**
 * customVjp: the forward is f, the gradient is exactly what bwd returns: eagerly, inside scan,
 * under jit, and with pytree arguments.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  abs,
  add,
  customVjp,
  div,
  floor,
  grad,
  indexAxis,
  jit,
  mul,
  scan,
  stack,
  sum,
  TreeStructureError,
  type NDArray,
  type Tensor,
} from '../../core/index.js';
import { expectClose, expectExact, f64, prop, thrown, valuesArb } from './helpers.js';

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
      expectExact(g.toTyped(), xv.map((v, i) => surrogate(v, wv[i])), 'gradient');
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
      const c = f64(wv.map((v) => v + 1), [n]);
      const out = f({ a, b }, c);
      expectExact(out.p.toTyped(), xv.map((v, i) => Math.floor(v) * wv[i]), 'forward p');
      const w = f64(wv.map((v) => v - 0.5), [n]);
      const loss = (ab: { a: Tensor; b: Tensor }, cc: Tensor) => {
        const o = f(ab, cc);
        return add(sum(mul(w, o.p)), sum(o.q));
      };
      const [gab, gc] = grad(loss, { argnums: [0, 1] })({ a, b }, c) as [{ a: Tensor; b: Tensor }, Tensor];
      const wvals = Array.from(w.toTyped());
      expectExact(gab.a.toTyped(), wvals.map((v) => v * 2), 'grad a');
      expectExact(gab.b.toTyped(), wvals.map((v) => v * 3), 'grad b');
      expectExact(gc.toTyped(), new Array(n).fill(0), 'grad c (bwd returned null)');
    },
    20,
  );
});

t.test('inside scan', async (t) => {
  // Integrate-and-fire-like loop: v <- v * x_t + x_t, spike s_t = spike(v) is the output.
  const run = (v0: Tensor, xs: Tensor): [Tensor, Tensor] =>
    scan((v: Tensor, x: Tensor) => {
      const v2 = add(mul(v, x), x);
      return [v2, spike(v2)];
    }, v0, xs) as [Tensor, Tensor];
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
  const problem = fc.record({ T: fc.integer({ min: 1, max: 4 }), d: fc.integer({ min: 1, max: 3 }), pool: valuesArb(40, -1.5, 1.5) }).map(({ T, d, pool }) => ({
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
    const g = grad((x: Tensor) => sum(mul(w, scan((c: Tensor, xi: Tensor) => [c, spike(xi)], f64([0], []), x)[1] as Tensor)))(xs) as Tensor;
    t.same(Array.from(g.toTyped()), [0.3, -1.7, 2.2, -0.4].map((v, i) => surrogate(v, [1.5, -2, 0.25, 3][i])));
  });
});

t.test('under jit', async (t) => {
  const x = f64([0.3, -1.7, 2.2, -0.4, 5], [5]);
  const w = f64([1.5, -2, 0.25, 3, -1], [5]);
  t.same(jit(spike)(x).toNested(), [0, -2, 2, -1, 5], 'forward under jit');
  const g = jit((a: Tensor) => grad((z: Tensor) => sum(mul(w, spike(z))))(a) as Tensor)(x);
  t.same(Array.from(g.toTyped()), [0.3, -1.7, 2.2, -0.4, 5].map((v, i) => surrogate(v, [1.5, -2, 0.25, 3, -1][i])), 'jit(grad) is bwd exactly');
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
