/**
 * jit: compiled results equal eager results for random compositions of elementwise ops,
 * broadcasting, reductions, shape ops and matmul, on contiguous and non-contiguous inputs (this
 * exercises the fusing compiler); the trace cache keys on structure, shapes, dtypes and static
 * leaves; pytree outputs; reading a traced value throws ConcretizationError.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  abs,
  add,
  argmax,
  argsort,
  array,
  broadcastTo,
  cast,
  concatenate,
  ConcretizationError,
  div,
  equal,
  exp,
  expandDims,
  fromTyped,
  grad,
  greater,
  indexAxis,
  jit,
  log,
  logSoftmax,
  makeJaxpr,
  matmul,
  max,
  maximum,
  mean,
  minimum,
  mul,
  neg,
  NDArray,
  getBackend,
  withBackend,
  pad,
  relu,
  reshape,
  scan,
  sigmoid,
  slice,
  softplus,
  sort,
  sqrt,
  sub,
  sum,
  take,
  takeAlongAxis,
  tanh,
  transpose,
  valueAndGrad,
  zeros,
  zerosLike,
  where,
  type Tensor,
} from '../../core/index.js';
import { cpuBackend, registerBackend } from '../../core/internal.js';
import { expectClose, expectShape, firstMismatch, prop, sizeOfShape, thrown, valuesArb } from './fixtures/helpers.js';

interface Env {
  m: number;
  n: number;
  v: Tensor; // [n]
  c: Tensor; // [m, 1]
  P: Tensor; // [n, n]
}

/** Ops from [m, n] values (a, b) to an [m, n] value; `env` holds the broadcast operands. */
const OPS: [string, (a: Tensor, b: Tensor, e: Env) => Tensor][] = [
  ['neg', (a) => neg(a)],
  ['tanh', (a) => tanh(a)],
  ['sigmoid', (a) => sigmoid(a)],
  ['abs', (a) => abs(a)],
  ['exp(tanh)', (a) => exp(tanh(a))],
  ['sqrt(|a|+1)', (a) => sqrt(add(abs(a), 1))],
  ['log(|a|+1)', (a) => log(add(abs(a), 1))],
  ['relu', (a) => relu(a)],
  ['softplus', (a) => softplus(a)],
  ['square', (a) => mul(a, a)],
  ['a + v', (a, _b, e) => add(a, e.v)],
  ['a * c', (a, _b, e) => mul(a, e.c)],
  ['a - 0.5', (a) => sub(a, 0.5)],
  ['0.25 * a', (a) => mul(0.25, a)],
  ['a / (|v|+1)', (a, _b, e) => div(a, add(abs(e.v), 1))],
  ['max(a, v)', (a, _b, e) => maximum(a, e.v)],
  ['where(a > c, a, v)', (a, _b, e) => where(greater(a, e.c), a, e.v)],
  ['a + b', (a, b) => add(a, b)],
  ['a - b', (a, b) => sub(a, b)],
  ['a * b', (a, b) => mul(a, b)],
  ['min(a, b)', (a, b) => minimum(a, b)],
  ['a / (|b|+1)', (a, b) => div(a, add(abs(b), 1))],
  ['where(a > b, a, b)', (a, b) => where(greater(a, b), a, b)],
  ['a * float(a > b)', (a, b) => mul(a, cast(greater(a, b), 'float32'))],
  ['a - mean(a, 1, keepdims)', (a) => sub(a, mean(a, 1, { keepdims: true }))],
  ['a * max(a, 0, keepdims)', (a) => mul(a, max(a, 0, { keepdims: true }))],
  ['a + sum(tanh(b), 1, keepdims)', (a, b) => add(a, sum(tanh(b), 1, { keepdims: true }))],
  ['a / (1 + sum(|a|))', (a) => div(a, add(sum(abs(a)), 1))],
  ['sum(a, 0) broadcast back', (a, _b, e) => broadcastTo(sum(mul(a, a), 0), [e.m, e.n])],
  ['logSoftmax(a, 1)', (a) => logSoftmax(a, 1)],
  ['logSoftmax(a, 0)', (a) => logSoftmax(a, 0)],
  ['tanh(a @ P)', (a, _b, e) => tanh(matmul(a, e.P))],
  ['a @ P^T * b', (a, b, e) => mul(matmul(a, transpose(e.P)), b)],
  ['(a^T)^T via reshape/transpose', (a, _b, e) => transpose(reshape(a, [e.n, e.m]))],
  ['shift right by slice + pad', (a, _b, e) => pad(slice(a, [0, 0], [e.m, e.n - 1]), [0, 1], [0, 0])],
  [
    'concatenate slices of a and b',
    (a, b, e) => concatenate([slice(a, [0, 0], [e.m, 1]), slice(exp(neg(abs(b))), [0, 1], [e.m, e.n - 1])], 1),
  ],
  ['a * b^T-ish: a * reshape(transpose(b))', (a, b, e) => mul(a, reshape(transpose(b), [e.m, e.n]))],
  ['int32 chain: float(int(4a) * 3 + 1) / 8', (a) => div(cast(add(mul(cast(mul(a, 4), 'int32'), 3), 1), 'float32'), 8)],
  ['bool logic: float((a > 0) == (b > 0))', (a, b) => cast(equal(greater(a, 0), greater(b, 0)), 'float32')],
  ['sort(a, 1)', (a) => sort(a, 1)],
  ['columns permuted by argsort(sum(b, 0))', (a, b) => take(a, argsort(sum(b, 0)), 1)],
  [
    'running sum over rows (scan)',
    (a, _b, e) => scan((c: Tensor, row: Tensor) => [add(c, row), mul(add(c, row), e.v)], zerosLike(indexAxis(a, 0, 0)), a)[1] as Tensor,
  ],
  ['takeAlongAxis by argmax', (a, b) => mul(b, takeAlongAxis(a, expandDims(argmax(b, 1), 1), 1))],
];

type Step = [number, number, number];

/** Runs a program: each step applies OPS[op] to two earlier values; returns a pytree of results. */
function runProgram(
  steps: Step[],
  X: Tensor,
  Y: Tensor,
  v: Tensor,
  c: Tensor,
  P: Tensor,
): { out: Tensor; total: Tensor; colMax: Tensor; rows: Tensor[] } {
  const [m, n] = X.shape;
  const env: Env = { m, n, v, c, P };
  const vals: Tensor[] = [X, Y];
  for (const [op, i, j] of steps) vals.push(OPS[op % OPS.length][1](vals[i % vals.length], vals[j % vals.length], env));
  const out = vals[vals.length - 1];
  return { out, total: sum(out), colMax: max(out, 0), rows: [sum(vals[vals.length - 2], 1), mean(out, 1)] };
}

type Layout = 'contiguous' | 'transposed' | 'sliced' | 'broadcast' | 'broadcastCol' | 'broadcastAll';

/** Builds a concrete [r, s] float32 array with the given memory layout from a pool of values. */
function withLayout(pool: number[], shape: [number, number], layout: Layout): NDArray {
  const [r, s] = shape;
  const f32 = (vals: number[], sh: number[]) => fromTyped(Float32Array.from(vals), sh, 'float32');
  let x: Tensor;
  switch (layout) {
    case 'contiguous':
      x = f32(pool.slice(0, r * s), [r, s]);
      break;
    case 'transposed':
      x = transpose(f32(pool.slice(0, r * s), [s, r]));
      break;
    case 'sliced':
      x = slice(f32(pool.slice(0, (r + 1) * (s + 2)), [r + 1, s + 2]), [1, 1], [r, s]);
      break;
    case 'broadcast':
      x = broadcastTo(f32(pool.slice(0, s), [s]), [r, s]);
      break;
    case 'broadcastCol':
      x = broadcastTo(f32(pool.slice(0, r), [r, 1]), [r, s]);
      break;
    case 'broadcastAll':
      x = broadcastTo(f32(pool.slice(0, 1), [1, 1]), [r, s]);
      break;
  }
  if (!(x instanceof NDArray)) throw new Error('expected an eager view');
  return x;
}

const layoutArb = fc.constantFrom<Layout>('contiguous', 'transposed', 'sliced', 'broadcast', 'broadcastCol', 'broadcastAll');

function copyOf(x: Tensor): NDArray {
  return fromTyped(x.toTyped(), x.shape, x.dtype);
}

/** Compares two pytrees of arrays leaf by leaf (shape, dtype, values within rtol/atol). */
function expectTreeClose(actual: unknown, expected: unknown, rtol: number, atol: number, path = 'out'): void {
  if (expected instanceof NDArray || (expected as Tensor)?.shape !== undefined) {
    const a = actual as Tensor;
    const e = expected as Tensor;
    expectShape(a, e.shape, path);
    if (a.dtype !== e.dtype) throw new Error(`${path}: dtype ${a.dtype} vs ${e.dtype}`);
    expectClose(a.toTyped(), e.toTyped(), rtol, atol, path);
    return;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) throw new Error(`${path}: expected an array of ${expected.length}`);
    expected.forEach((e, i) => expectTreeClose(actual[i], e, rtol, atol, `${path}[${i}]`));
    return;
  }
  if (typeof expected === 'object' && expected !== null) {
    const keys = Object.keys(expected).sort();
    const akeys = Object.keys(actual as object).sort();
    if (JSON.stringify(keys) !== JSON.stringify(akeys)) throw new Error(`${path}: keys ${akeys} vs ${keys}`);
    for (const k of keys)
      expectTreeClose((actual as Record<string, unknown>)[k], (expected as Record<string, unknown>)[k], rtol, atol, `${path}.${k}`);
    return;
  }
  if (actual !== expected) throw new Error(`${path}: ${String(actual)} vs ${String(expected)}`);
}

t.test('jit(f)(x) equals f(x) for random compositions', async (t) => {
  const programArb = fc.record({
    m: fc.integer({ min: 1, max: 4 }),
    n: fc.integer({ min: 2, max: 4 }),
    steps: fc.array(fc.tuple(fc.nat(OPS.length - 1), fc.nat(20), fc.nat(20)), { minLength: 1, maxLength: 7 }),
    pool: valuesArb(40, -2, 2),
    layouts: fc.tuple(layoutArb, layoutArb, layoutArb, layoutArb),
  });
  prop(
    t,
    'jit equals eager (float32, rtol 1e-6) on contiguous and strided inputs',
    [programArb],
    ({ m, n, steps, pool, layouts }) => {
      const X = withLayout(pool, [m, n], layouts[0]);
      const Y = withLayout(pool.slice(3), [m, n], layouts[1]);
      const P = withLayout(pool.slice(7), [n, n], layouts[2]);
      const c = withLayout(pool.slice(11), [m, 1], layouts[3] === 'broadcast' || layouts[3] === 'broadcastCol' ? 'contiguous' : layouts[3]);
      const v = slice(fromTyped(Float32Array.from(pool.slice(20, 20 + n + 1)), [n + 1], 'float32'), [1], [n]);
      const f = (a: Tensor, b: Tensor, vv: Tensor, cc: Tensor, pp: Tensor) => runProgram(steps, a, b, vv, cc, pp);
      const eager = f(X, Y, v, c, P);
      // The eager kernels on views must agree with the same program on contiguous copies.
      const onCopies = f(copyOf(X), copyOf(Y), copyOf(v), copyOf(c), copyOf(P));
      expectTreeClose(eager, onCopies, 0, 0, 'eager on views vs eager on copies');
      const jf = jit(f);
      const compiled = jf(X, Y, v, c, P);
      expectTreeClose(compiled, eager, 1e-6, 1e-6, `jit vs eager, program ${steps.map(([o]) => OPS[o % OPS.length][0]).join(' -> ')}`);
      // Second call runs the cached program; the same numbers come back.
      expectTreeClose(jf(X, Y, v, c, P), compiled, 0, 0, 'second jit call');
      if (jf.cacheSize !== 1) throw new Error(`cacheSize ${jf.cacheSize} after two calls with one signature`);
    },
    40,
  );
});

t.test('jit(grad(f)) equals grad(f) for random compositions', async (t) => {
  const programArb = fc.record({
    m: fc.integer({ min: 1, max: 3 }),
    n: fc.integer({ min: 2, max: 3 }),
    steps: fc.array(fc.tuple(fc.nat(OPS.length - 1), fc.nat(20), fc.nat(20)), { minLength: 1, maxLength: 5 }),
    pool: valuesArb(40, -2, 2),
    layouts: fc.tuple(layoutArb, layoutArb, layoutArb),
  });
  prop(
    t,
    'gradients wrt X, Y, v and P: compiled backward pass equals the eager one (float32, rtol 1e-6)',
    [programArb],
    ({ m, n, steps, pool, layouts }) => {
      const X = withLayout(pool, [m, n], layouts[0]);
      const Y = withLayout(pool.slice(3), [m, n], layouts[1]);
      const P = withLayout(pool.slice(7), [n, n], layouts[2]);
      const c = withLayout(pool.slice(11), [m, 1], 'contiguous');
      const v = fromTyped(Float32Array.from(pool.slice(20, 20 + n)), [n], 'float32');
      const loss = (a: Tensor, b: Tensor, vv: Tensor, pp: Tensor) => {
        const r = runProgram(steps, a, b, vv, c, pp);
        return add(sum(mul(r.out, r.out)), r.total);
      };
      const g = (a: Tensor, b: Tensor, vv: Tensor, pp: Tensor) => grad(loss, { argnums: [0, 1, 2, 3] })(a, b, vv, pp) as Tensor[];
      const eager = g(X, Y, v, P);
      const compiled = jit(g)(X, Y, v, P);
      expectTreeClose(compiled, eager, 1e-6, 1e-6, `jit(grad) vs grad, program ${steps.map(([o]) => OPS[o % OPS.length][0]).join(' -> ')}`);
    },
    25,
  );
});

t.test('time-tiled (stride-0) inputs through matmul, reshape, transpose and scan', async (t) => {
  const arb = fc.record({
    B: fc.integer({ min: 1, max: 3 }),
    T: fc.integer({ min: 1, max: 4 }),
    n: fc.integer({ min: 1, max: 3 }),
    p: fc.integer({ min: 1, max: 3 }),
    tiled: fc.constantFrom<number[]>([1], [0], [0, 1], [1, 2], []),
    pool: valuesArb(60, -1.5, 1.5),
  });
  prop(
    t,
    'jit, eager on the stride-0 view and eager on a contiguous copy agree (values and grads)',
    [arb],
    ({ B, T, n, p, tiled, pool }) => {
      const full = [B, T, n];
      const compact = full.map((d, i) => (tiled.includes(i) ? 1 : d));
      const x = broadcastTo(fromTyped(Float32Array.from(pool.slice(0, sizeOfShape(compact))), compact, 'float32'), full) as NDArray;
      const W = fromTyped(Float32Array.from(pool.slice(20, 20 + n * p)), [n, p], 'float32');
      const U = fromTyped(Float32Array.from(pool.slice(30, 30 + p * p)), [p, p], 'float32');
      const b = fromTyped(Float32Array.from(pool.slice(40, 40 + p)), [p], 'float32');
      const f = (xx: Tensor, w: Tensor, u: Tensor, bb: Tensor) => {
        const a = tanh(add(matmul(xx, w), bb)); // [B, T, p]
        const flat = matmul(reshape(xx, [B * T, n]), w); // [B*T, p]
        const tb = transpose(xx, [1, 0, 2]); // [T, B, n]
        const [h, hs] = scan(
          (hh: Tensor, xt: Tensor) => {
            const h2 = tanh(add(matmul(hh, u), matmul(xt, w)));
            return [h2, h2];
          },
          zeros([B, p]),
          tb,
        ) as [Tensor, Tensor];
        const loss = add(add(sum(mul(a, a)), mean(flat)), add(sum(h), sum(mul(hs, hs))));
        return { a, flat, h, hs, loss, meanT: mean(exp(xx), 1) };
      };
      const gradOf = (xx: Tensor, w: Tensor, u: Tensor, bb: Tensor) =>
        grad((x2: Tensor, w2: Tensor, u2: Tensor, b2: Tensor) => f(x2, w2, u2, b2).loss, { argnums: [0, 1, 2, 3] })(
          xx,
          w,
          u,
          bb,
        ) as Tensor[];
      const eager = f(x, W, U, b);
      expectTreeClose(eager, f(copyOf(x), W, U, b), 1e-6, 1e-6, 'eager view vs copy');
      expectTreeClose(jit(f)(x, W, U, b), eager, 1e-6, 1e-6, 'jit vs eager');
      const g = gradOf(x, W, U, b);
      expectTreeClose(gradOf(copyOf(x), W, U, b), g, 1e-6, 1e-6, 'grads: eager view vs copy');
      expectTreeClose(jit(gradOf)(x, W, U, b), g, 1e-6, 1e-6, 'grads: jit vs eager');
    },
    25,
  );
});

t.test('jit fuses a long elementwise chain over a broadcast, transposed input', async (t) => {
  const base = fromTyped(Float32Array.from([0.5, -1.25, 2, 0.75, -0.1, 1.5]), [3, 2], 'float32');
  const xT = transpose(base) as NDArray; // [2, 3], strides [1, 2]
  t.same(xT.strides, [1, 2]);
  const row = broadcastTo(fromTyped(Float32Array.from([1, 2, 3]), [3], 'float32'), [2, 3]) as NDArray;
  t.same(row.strides, [0, 1]);
  const f = (x: Tensor, r: Tensor) => sum(mul(tanh(add(x, r)), sub(r, exp(x))), 1);
  const got = jit(f)(xT, row).toTyped();
  // Explicit loops in float32 (every intermediate rounded, as an array of float32 would).
  const fr = Math.fround;
  const X = [
    [0.5, 2, -0.1],
    [-1.25, 0.75, 1.5],
  ];
  const expected = X.map((rowv) =>
    rowv.reduce((acc, x, j) => fr(acc + fr(fr(Math.tanh(fr(x + (j + 1)))) * fr(j + 1 - fr(Math.exp(x))))), 0),
  );
  t.equal(firstMismatch(got, expected, 1e-6, 1e-6), null, `got ${Array.from(got)}, expected ${expected}`);
});

t.test('jit cache: retraces only on new structure, shapes or dtypes', async (t) => {
  let traces = 0;
  const f = jit((x: Tensor, y: Tensor) => {
    traces++;
    return add(mul(x, 2), y);
  });
  const a = array([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  const b = array([
    [0.5, 0.5, 0.5],
    [1, 1, 1],
  ]);
  t.same(f(a, b).toNested(), [
    [2.5, 4.5, 6.5],
    [9, 11, 13],
  ]);
  t.same(f(b, a).toNested(), [
    [2, 3, 4],
    [6, 7, 8],
  ]);
  t.equal(traces, 1, 'same shapes and dtypes: traced once');
  t.equal(f.cacheSize, 1);
  // A non-contiguous view of the same shape and dtype reuses the trace and reads the view correctly.
  const aT = transpose(
    array([
      [1, 4],
      [2, 5],
      [3, 6],
    ]),
  );
  t.same(f(aT, b).toNested(), [
    [2.5, 4.5, 6.5],
    [9, 11, 13],
  ]);
  t.equal(traces, 1, 'a strided view does not retrace');
  t.same(f(array([1, 2]), array([3, 4])).toNested(), [5, 8]);
  t.equal(f.cacheSize, 2, 'new shape: new trace');
  t.same(f(array([1, 2], { dtype: 'float64' }), array([3, 4], { dtype: 'float64' })).dtype, 'float64');
  t.equal(f.cacheSize, 3, 'new dtype: new trace');
  t.same(f(a, array([1, 2, 3])).toNested(), [
    [3, 6, 9],
    [9, 12, 15],
  ]);
  t.equal(f.cacheSize, 4, 'new shape of the second argument (broadcast): new trace');
  f(a, b);
  f(array([7, 8]), array([0, 0]));
  t.equal(f.cacheSize, 4, 'known signatures hit the cache');
  t.equal(traces, 4);
});

t.test('jit cache: static leaves of the argument pytree key the cache', async (t) => {
  let traces = 0;
  const f = jit((p: { x: Tensor; scale: number; mode: string }) => {
    traces++;
    return p.mode === 'add' ? add(p.x, p.scale) : mul(p.x, p.scale);
  });
  const x = array([1, 2, 3]);
  t.same(f({ x, scale: 2, mode: 'add' }).toNested(), [3, 4, 5]);
  t.same(f({ x, scale: 3, mode: 'add' }).toNested(), [4, 5, 6], 'a new number is a new static value');
  t.same(f({ x, scale: 2, mode: 'mul' }).toNested(), [2, 4, 6], 'a new string is a new static value');
  t.same(f({ x, scale: 2, mode: 'add' }).toNested(), [3, 4, 5]);
  t.equal(f.cacheSize, 3);
  t.equal(traces, 3);
  // A positional static number too.
  const g = jit((y: Tensor, k: number) => mul(y, k));
  t.same(g(x, 10).toNested(), [10, 20, 30]);
  t.same(g(x, -1).toNested(), [-1, -2, -3]);
  t.equal(g.cacheSize, 2);
});

t.test('jit of a function returning a pytree', async (t) => {
  const f = (x: Tensor, y: Tensor) => ({ sum: add(x, y), parts: [sum(x), { t: tanh(y), k: 3 }], label: 'ok' });
  const x = array([
    [0.5, -1],
    [2, 0],
  ]);
  const y = array([
    [1, 1],
    [-0.5, 0.25],
  ]);
  const got = jit(f)(x, y);
  const want = f(x, y);
  t.same(Object.keys(got).sort(), ['label', 'parts', 'sum']);
  t.same(got.sum.toNested(), [
    [1.5, 0],
    [1.5, 0.25],
  ]);
  t.equal((got.parts[0] as Tensor).item(), 1.5);
  t.equal((got.parts[1] as { k: number }).k, 3, 'static output leaves come back');
  t.equal(got.label, 'ok');
  t.doesNotThrow(() => expectTreeClose(got, want, 0, 0));
});

t.test('jit composes with grad both ways, and with closed-over arrays', async (t) => {
  const W = array([
    [0.5, -0.25, 1],
    [0.75, 0.1, -0.5],
  ]);
  const loss = (x: Tensor, b: Tensor) => mean(mul(tanh(add(matmul(x, W), b)), 2));
  const x = array([
    [1, 2],
    [-1, 0.5],
    [0.25, -2],
  ]);
  const b = array([0.1, -0.2, 0.3]);
  const eager = grad(loss, { argnums: [0, 1] })(x, b) as Tensor[];
  const jg = jit((xx: Tensor, bb: Tensor) => grad(loss, { argnums: [0, 1] })(xx, bb) as Tensor[]);
  const compiled = jg(x, b);
  t.doesNotThrow(() => expectTreeClose(compiled, eager, 1e-6, 1e-6), 'jit(grad(f)) equals grad(f)');
  const inner = jit(loss);
  const throughJit = grad((xx: Tensor, bb: Tensor) => inner(xx, bb), { argnums: [0, 1] })(x, b) as Tensor[];
  t.doesNotThrow(() => expectTreeClose(throughJit, eager, 1e-6, 1e-6), 'grad(jit(f)) equals grad(f) (jit inlines under grad)');
  // A jitted function closing over a tracer of the enclosing grad (nothing cacheable): inlined.
  const closure = grad((bb: Tensor) => jit((xx: Tensor) => loss(xx, bb))(x))(b) as Tensor;
  t.doesNotThrow(() => expectTreeClose(closure, eager[1], 1e-6, 1e-6), 'grad through a jitted closure over the differentiated value');
  const [v, g] = jit((xx: Tensor) => valueAndGrad((z: Tensor) => loss(z, b))(xx))(x) as [Tensor, Tensor];
  t.equal(v.item(), loss(x, b).item());
  t.doesNotThrow(() => expectTreeClose(g, eager[0], 1e-6, 1e-6));
});

t.test('reading a traced value throws ConcretizationError', async (t) => {
  const x = array([1, -2, 3]);
  const e1 = thrown(() => jit((a: Tensor) => (sum(a).item() > 0 ? a : neg(a)))(x));
  t.ok(e1 instanceof ConcretizationError, `item() inside jit: ${e1}`);
  const e2 = thrown(() => jit((a: Tensor) => array(a.toNested() as number[]))(x));
  t.ok(e2 instanceof ConcretizationError, `toNested() inside jit: ${e2}`);
  const e3 = thrown(() => jit((a: Tensor) => fromTyped(a.toTyped(), a.shape))(x));
  t.ok(e3 instanceof ConcretizationError, `toTyped() inside jit: ${e3}`);
  const e4 = thrown(() => scan((c: Tensor, xi: Tensor) => [c.item() > 0 ? add(c, xi) : c, null], array(0), x));
  t.ok(e4 instanceof ConcretizationError, `item() inside a scan body: ${e4}`);
  const e5 = thrown(() => makeJaxpr((a: Tensor) => a.item())(array([1])));
  t.ok(e5 instanceof ConcretizationError, `item() inside makeJaxpr: ${e5}`);
  // Under grad (no jit) the primal is concrete, so data-dependent JS control flow works.
  const g = grad((a: Tensor) => (sum(a).item() > 0 ? sum(mul(a, a)) : sum(a)))(x) as Tensor;
  t.same(g.toNested(), [2, -4, 6]);
});

t.test('eager ops on strided inputs agree with contiguous copies', async (t) => {
  prop(
    t,
    'unary, binary and reductions on views',
    [fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 4 }), valuesArb(40, -2, 2), layoutArb, layoutArb],
    (m, n, pool, la, lb) => {
      const a = withLayout(pool, [m, n], la);
      const b = withLayout(pool.slice(5), [m, n], lb);
      const f = (x: Tensor, y: Tensor) => [
        tanh(x),
        add(x, y),
        mul(x, y),
        sum(x, 0),
        sum(y, 1),
        max(x),
        matmul(x, transpose(y)),
        matmul(transpose(x), y),
      ];
      expectTreeClose(f(a, b), f(copyOf(a), copyOf(b)), 0, 0, 'views vs copies');
      if (m > 1 && la === 'transposed' && a.isContiguous()) throw new Error('a transposed view should not be contiguous');
      if (m > 1 && la === 'broadcast' && a.strides[0] !== 0) throw new Error('a broadcast view should have stride 0');
      if (sizeOfShape(a.shape) !== m * n) throw new Error('bad layout size');
    },
    40,
  );
});

t.test('matmul follows IEEE arithmetic: a 0 in the left operand does not hide Inf/NaN on the right', async (t) => {
  // [0, 1] @ [[inf], [1]] = 0 * inf + 1 * 1 = NaN, as numpy, JAX and the elementwise ops compute it.
  const a = array([[0, 1]], { dtype: 'float64' });
  const b = array([[Infinity], [1]], { dtype: 'float64' });
  const viaOps = sum(mul(reshape(a, [1, 2, 1]), reshape(b, [1, 2, 1])), 1);
  t.ok(Number.isNaN(viaOps.item()), 'sum of elementwise products is NaN');
  t.ok(Number.isNaN(matmul(a, b).item()), `eager matmul is NaN (got ${matmul(a, b).item()})`);
  t.ok(Number.isNaN(jit(matmul)(a, b).item()), 'jit matmul is NaN');
  const nanW = array(
    [
      [NaN, 2],
      [3, 4],
    ],
    { dtype: 'float64' },
  );
  const spikes = array([[0, 1]], { dtype: 'float64' });
  t.same(
    matmul(
      array([[1, 0]], { dtype: 'float64' }),
      array(
        [
          [1, 2],
          [3, 4],
        ],
        { dtype: 'float64' },
      ),
    ).toNested(),
    [[1, 2]],
    'finite case unaffected',
  );
  t.ok(Number.isNaN(matmul(spikes, nanW).toTyped()[0]), 'a NaN weight shows in the output even when its input is 0');
});

t.test('a backend per call: jit({ backend }) and withBackend, whatever setBackend chose', async (t) => {
  let compiled = 0;
  let ran = 0;
  registerBackend({
    name: 'counting-cpu',
    run: (prim, inputs, params) => {
      ran++;
      return cpuBackend.run(prim, inputs, params);
    },
    compile: (jaxpr) => {
      compiled++;
      return cpuBackend.compile(jaxpr);
    },
  });
  t.equal(getBackend().name, 'cpu', 'registering does not switch the default');
  const f = jit((x: Tensor) => x.mul(2).add(1), { backend: 'counting-cpu' });
  const y = f(array([1, 2, 3])) as NDArray;
  t.same(Array.from(y.toTyped()), [3, 5, 7]);
  t.equal(compiled, 1, 'compiled for the pinned backend');
  t.equal(getBackend().name, 'cpu', 'the global backend is unchanged');
  jit((x: Tensor) => x.mul(3))(array([1]));
  t.equal(compiled, 1, 'an unpinned jit compiles for the global backend');
  const z = withBackend('counting-cpu', () => add(array([1, 2]), 1)) as NDArray;
  t.same(Array.from(z.toTyped()), [2, 3]);
  t.ok(ran > 0, 'eager ops inside withBackend ran on it');
  t.equal(getBackend().name, 'cpu', 'restored after withBackend');
  t.throws(
    () =>
      withBackend('counting-cpu', () => {
        throw new Error('boom');
      }),
    /boom/,
  );
  t.equal(getBackend().name, 'cpu', 'restored after a throw');
  t.throws(() => withBackend('nope', () => 0), /withBackend: unknown backend 'nope'; registered: .*cpu/);
  t.throws(() => jit((x: Tensor) => x, { backend: 'nope' })(array([1])), /withBackend: unknown backend 'nope'/);
});
