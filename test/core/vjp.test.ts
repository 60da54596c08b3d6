/**
 * Property tests: the VJP of every differentiable op against central finite differences, in
 * float64. Each property draws random shapes and values from a domain where the op is smooth,
 * a random weight w, and compares grad(sum(w * f(x))) with (F(x + h e_i) - F(x - h e_i)) / 2h.
 * The second part of the file checks the second-order VJPs the same way.
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
  div,
  equal,
  exp,
  expandDims,
  fromTyped,
  grad,
  greater,
  less,
  log,
  logSoftmax,
  logsumexp,
  matmul,
  matrixTranspose,
  max,
  maximum,
  mean,
  min,
  minimum,
  mul,
  neg,
  notEqual,
  pad,
  pow,
  relu,
  reshape,
  sigmoid,
  slice,
  softmax,
  softplus,
  sort,
  sqrt,
  squeeze,
  stack,
  stopGradient,
  sub,
  sum,
  take,
  takeAlongAxis,
  tanh,
  transpose,
  vjp,
  where,
  type NDArray,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import {
  awayFromZeroArb,
  axesArb,
  checkVjp,
  distinctArb,
  expectExact,
  expectShape,
  f64,
  fdGrad,
  firstMismatch,
  prop,
  shapeArb,
  sizeOfShape,
  valuesArb,
  weightsArb,
  type Shape,
} from './fixtures/helpers.js';

const RUNS = 25;

/** A float64 array of a random shape (rank in [minRank, maxRank]) with values from `values(n)`. */
const arr = (minRank: number, maxRank: number, values: (n: number) => fc.Arbitrary<number[]>, maxDim = 3): fc.Arbitrary<NDArray> =>
  shapeArb(minRank, maxRank, maxDim).chain((s) => values(sizeOfShape(s)).map((v) => f64(v, s)));

const arrOfShape = (s: Shape, values: (n: number) => fc.Arbitrary<number[]>): fc.Arbitrary<NDArray> =>
  values(sizeOfShape(s)).map((v) => f64(v, s));

const range = (lo: number, hi: number) => (n: number) => valuesArb(n, lo, hi);

/** A shape and a shape that broadcasts against it (dims set to 1, leading dims dropped), in random order. */
const broadcastPairArb: fc.Arbitrary<[Shape, Shape]> = shapeArb(0, 3, 3).chain((s) =>
  fc
    .tuple(fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }), fc.integer({ min: 0, max: s.length }), fc.boolean())
    .map(([ones, drop, swap]): [Shape, Shape] => {
      const b = s.map((d, i) => (ones[i] ? 1 : d)).slice(drop);
      return swap ? [b, s] : [s, b];
    }),
);

t.test('the finite-difference reference itself', async (t) => {
  // F(x, y) = sum(x^3 * y + sin x), computed in plain JS: dF/dx = 3x^2 y + cos x, dF/dy = x^3.
  const xv = [0.3, -1.2, 2.0];
  const yv = [1.5, -0.5, 0.25];
  const F = (x: NDArray, y: NDArray): number => {
    const a = x.toTyped();
    const b = y.toTyped();
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i] ** 3 * b[i] + Math.sin(a[i]);
    return s;
  };
  const [gx, gy] = fdGrad(F as (...xs: NDArray[]) => number, [f64(xv, [3]), f64(yv, [3])]);
  t.equal(
    firstMismatch(
      gx,
      xv.map((x, i) => 3 * x * x * yv[i] + Math.cos(x)),
      1e-7,
      1e-8,
    ),
    null,
    'dF/dx',
  );
  t.equal(
    firstMismatch(
      gy,
      xv.map((x) => x ** 3),
      1e-7,
      1e-8,
    ),
    null,
    'dF/dy',
  );
  t.match(firstMismatch([1, 2], [1, 2.1], 1e-6, 0), /element 1/, 'firstMismatch flags a difference');
  t.match(firstMismatch([NaN], [0], 1, 1), /element 0/, 'firstMismatch flags NaN');
  // checkVjp passes on a correct pair and throws when the tolerance cannot be met.
  const x = f64([0.5, -0.25], [2]);
  t.doesNotThrow(() => checkVjp('x^2', (a) => mul(a, a), [x], [1, -2]));
  t.throws(() => checkVjp('x^2 (impossible tolerance)', (a) => mul(a, a), [x], [1, -2], { rtol: 0, atol: -1 }));
});

t.test('unary elementwise ops', async (t) => {
  const cases: [string, (x: Tensor) => Tensor, (n: number) => fc.Arbitrary<number[]>][] = [
    ['neg', neg, range(-3, 3)],
    ['exp', exp, range(-2, 2)],
    ['log', log, range(0.3, 3)],
    ['sqrt', sqrt, range(0.3, 3)],
    ['tanh', tanh, range(-2, 2)],
    ['sigmoid', sigmoid, range(-4, 4)],
    ['abs', abs, (n) => awayFromZeroArb(n, 0.05, 2)],
    ['relu', relu, (n) => awayFromZeroArb(n, 0.05, 2)],
    ['softplus', softplus, (n) => awayFromZeroArb(n, 0.05, 3)],
    ['square via pow(x, 2)', (x) => pow(x, 2), range(0.2, 2)],
    ['x ** 0.5 + 1/x via pow and div', (x) => add(pow(x, 0.5), div(1, x)), range(0.3, 2)],
  ];
  for (const [name, f, values] of cases) {
    prop(t, `vjp of ${name} matches finite differences`, [arr(0, 3, values), weightsArb], (x, w) => checkVjp(name, f, [x], w), RUNS);
  }
});

t.test('binary elementwise ops with broadcasting', async (t) => {
  const pair = (va: (n: number) => fc.Arbitrary<number[]>, vb: (n: number) => fc.Arbitrary<number[]>) =>
    broadcastPairArb.chain(([sa, sb]) => fc.tuple(arrOfShape(sa, va), arrOfShape(sb, vb)));
  const cases: [string, (a: Tensor, b: Tensor) => Tensor, fc.Arbitrary<[NDArray, NDArray]>][] = [
    ['add', add, pair(range(-2, 2), range(-2, 2))],
    ['sub', sub, pair(range(-2, 2), range(-2, 2))],
    ['mul', mul, pair(range(-2, 2), range(-2, 2))],
    ['div', div, pair(range(-2, 2), (n) => awayFromZeroArb(n, 0.5, 2))],
    ['pow', pow, pair(range(0.5, 2), range(-2, 2))],
    // Values on two interleaved grids (k * 0.02 and k * 0.02 + 0.01): no ties, even after +-h.
    [
      'maximum',
      maximum,
      pair(
        (n) => fc.array(fc.integer({ min: -100, max: 100 }), { minLength: n, maxLength: n }).map((v) => v.map((k) => k * 0.02)),
        (n) => fc.array(fc.integer({ min: -100, max: 100 }), { minLength: n, maxLength: n }).map((v) => v.map((k) => k * 0.02 + 0.01)),
      ),
    ],
    [
      'minimum',
      minimum,
      pair(
        (n) => fc.array(fc.integer({ min: -100, max: 100 }), { minLength: n, maxLength: n }).map((v) => v.map((k) => k * 0.02)),
        (n) => fc.array(fc.integer({ min: -100, max: 100 }), { minLength: n, maxLength: n }).map((v) => v.map((k) => k * 0.02 + 0.01)),
      ),
    ],
  ];
  for (const [name, f, args] of cases) {
    prop(t, `vjp of ${name} matches finite differences`, [args, weightsArb], ([a, b], w) => checkVjp(name, f, [a, b], w), RUNS);
  }
  prop(
    t,
    'vjp of a JS-number operand (weak typing) matches finite differences',
    [arr(0, 3, range(0.5, 2)), fc.double({ min: -2, max: 2, noNaN: true }), weightsArb],
    (x, c, w) => checkVjp('mixed', (a) => add(mul(a, c), div(c, a)), [x], w),
    RUNS,
  );
});

t.test('where', async (t) => {
  const args = broadcastPairArb.chain(([sa, sb]) => {
    const full = sa.length >= sb.length ? sa : sb;
    return fc.tuple(
      fc
        .array(fc.boolean(), { minLength: sizeOfShape(full), maxLength: sizeOfShape(full) })
        .map((v) => fromTyped(Uint8Array.from(v.map(Number)), full, 'bool')),
      arrOfShape(sa, range(-2, 2)),
      arrOfShape(sb, range(-2, 2)),
    );
  });
  prop(
    t,
    'vjp of where matches finite differences (x and y broadcast)',
    [args, weightsArb],
    ([c, x, y], w) => checkVjp('where', (a, b) => where(c, a, b), [x, y], w),
    RUNS,
  );
  prop(
    t,
    'where routes the cotangent: grad wrt x is w where cond, 0 elsewhere',
    [arr(1, 3, range(-2, 2)), weightsArb],
    (x, wv) => {
      const w = f64(
        Array.from({ length: x.size }, (_, i) => wv[i % wv.length]),
        x.shape,
      );
      const cond = greater(x, 0);
      const [gx, gy] = grad((a: Tensor, b: Tensor) => sum(mul(w, where(cond, a, b))), { argnums: [0, 1] })(x, x) as Tensor[];
      const xs = x.toTyped();
      const ws = w.toTyped();
      expectExact(
        gx.toTyped(),
        Array.from(xs, (v, i) => (v > 0 ? ws[i] : 0)),
        'grad x',
      );
      expectExact(
        gy.toTyped(),
        Array.from(xs, (v, i) => (v > 0 ? 0 : ws[i])),
        'grad y',
      );
    },
    RUNS,
  );
});

t.test('cast', async (t) => {
  prop(
    t,
    'float64 -> float64 cast is a no-op for the gradient',
    [arr(0, 3, range(-2, 2)), weightsArb],
    (x, w) => checkVjp('cast f64', (a) => mul(cast(a, 'float64'), a), [x], w),
    RUNS,
  );
  prop(
    t,
    'float64 -> float32 -> float64: the cotangent is rounded to float32 and comes back as float64',
    [arr(0, 3, range(-2, 2)), weightsArb],
    (x, wv) => {
      const w = f64(
        Array.from({ length: x.size }, (_, i) => wv[i % wv.length] / 3),
        x.shape,
      );
      const g = grad((a: Tensor) => sum(mul(w, cast(cast(a, 'float32'), 'float64'))))(x) as Tensor;
      if (g.dtype !== 'float64') throw new Error(`gradient dtype ${g.dtype}`);
      expectShape(g, x.shape, 'gradient');
      expectExact(
        g.toTyped(),
        Array.from(w.toTyped(), (v) => Math.fround(v)),
        'gradient',
      );
    },
    RUNS,
  );
  prop(
    t,
    'float32 -> float64: the gradient of a float32 argument is float32',
    [arr(0, 3, range(-2, 2)), weightsArb],
    (x64, wv) => {
      const x = cast(x64, 'float32');
      const w = f64(
        Array.from({ length: x.size }, (_, i) => wv[i % wv.length] / 3),
        x.shape,
      );
      const g = grad((a: Tensor) => sum(mul(w, mul(cast(a, 'float64'), 2))))(x) as Tensor;
      if (g.dtype !== 'float32') throw new Error(`gradient dtype ${g.dtype}`);
      expectExact(
        g.toTyped(),
        Array.from(w.toTyped(), (v) => Math.fround(2 * v)),
        'gradient',
      );
    },
    RUNS,
  );
});

t.test('reductions over random axes, keepdims both ways', async (t) => {
  const reduceArgs = (values: (n: number) => fc.Arbitrary<number[]>) =>
    shapeArb(1, 3, 3).chain((s) => fc.tuple(arrOfShape(s, values), axesArb(s.length), fc.boolean()));
  const cases: [string, (x: Tensor, axes: number[] | undefined, keepdims: boolean) => Tensor, (n: number) => fc.Arbitrary<number[]>][] = [
    ['sum', (x, a, k) => sum(x, a, { keepdims: k }), range(-2, 2)],
    ['mean', (x, a, k) => mean(x, a, { keepdims: k }), range(-2, 2)],
    ['max', (x, a, k) => max(x, a, { keepdims: k }), (n) => distinctArb(n)],
    ['min', (x, a, k) => min(x, a, { keepdims: k }), (n) => distinctArb(n)],
    ['logsumexp', (x, a, k) => logsumexp(x, a ?? -1, { keepdims: k }), range(-3, 3)],
  ];
  for (const [name, f, values] of cases) {
    prop(
      t,
      `vjp of ${name} matches finite differences`,
      [reduceArgs(values), weightsArb],
      ([x, axes, keepdims], w) => {
        const y = f(x, axes, keepdims);
        const all = axes ?? (name === 'logsumexp' ? [x.ndim - 1] : x.shape.map((_, i) => i));
        const expected = keepdims ? x.shape.map((d, i) => (all.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !all.includes(i));
        expectShape(y, expected, `${name} output`);
        checkVjp(`${name}(axes=${JSON.stringify(axes)}, keepdims=${keepdims})`, (a) => f(a, axes, keepdims), [x], w);
      },
      RUNS,
    );
  }
  const axisArgs = shapeArb(1, 3, 4).chain((s) => fc.tuple(arrOfShape(s, range(-3, 3)), fc.integer({ min: -s.length, max: s.length - 1 })));
  prop(
    t,
    'vjp of logSoftmax matches finite differences',
    [axisArgs, weightsArb],
    ([x, axis], w) => checkVjp('logSoftmax', (a) => logSoftmax(a, axis), [x], w),
    RUNS,
  );
  prop(
    t,
    'vjp of softmax matches finite differences',
    [axisArgs, weightsArb],
    ([x, axis], w) => checkVjp('softmax', (a) => softmax(a, axis), [x], w),
    RUNS,
  );
});

/** Every size-preserving reshape target worth trying for a shape. */
function reshapeTargets(s: Shape): number[][] {
  const n = sizeOfShape(s);
  const out: number[][] = [[n], [n, 1], [1, n], s.slice().reverse(), [...s, 1], [1, ...s], [-1], [-1, 1]];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push([d, n / d], [d, -1], [-1, d]);
  return out;
}

t.test('shape ops', async (t) => {
  prop(
    t,
    'vjp of reshape matches finite differences',
    [shapeArb(0, 3, 4).chain((s) => fc.tuple(arrOfShape(s, range(-2, 2)), fc.constantFrom(...reshapeTargets(s)))), weightsArb],
    ([x, target], w) => checkVjp(`reshape to ${JSON.stringify(target)}`, (a) => mul(reshape(a, target), reshape(a, target)), [x], w),
    RUNS,
  );
  prop(
    t,
    'vjp of transpose matches finite differences',
    [
      shapeArb(1, 4, 3).chain((s) =>
        fc.tuple(
          arrOfShape(s, range(-2, 2)),
          fc.option(
            fc.shuffledSubarray(
              s.map((_, i) => i),
              { minLength: s.length, maxLength: s.length },
            ),
            { nil: undefined },
          ),
        ),
      ),
      weightsArb,
    ],
    ([x, perm], w) => checkVjp(`transpose ${JSON.stringify(perm)}`, (a) => mul(transpose(a, perm), transpose(exp(a), perm)), [x], w),
    RUNS,
  );
  const broadcastArgs = shapeArb(0, 3, 3).chain((s) =>
    fc.tuple(fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }), shapeArb(0, 2, 3)).chain(([ones, lead]) => {
      const src = s.map((d, i) => (ones[i] ? 1 : d));
      return fc.tuple(arrOfShape(src, range(-2, 2)), fc.constant([...lead, ...s]));
    }),
  );
  prop(
    t,
    'vjp of broadcastTo matches finite differences',
    [broadcastArgs, weightsArb],
    ([x, target], w) => checkVjp(`broadcastTo ${JSON.stringify(target)}`, (a) => broadcastTo(tanh(a), target), [x], w),
    RUNS,
  );
  const sliceArgs = shapeArb(1, 3, 4).chain((s) =>
    fc.tuple(
      arrOfShape(s, range(-2, 2)),
      fc.tuple(
        ...s.map((d) => fc.integer({ min: 0, max: d - 1 }).chain((st) => fc.tuple(fc.constant(st), fc.integer({ min: 1, max: d - st })))),
      ),
    ),
  );
  prop(
    t,
    'vjp of slice matches finite differences',
    [sliceArgs, weightsArb],
    ([x, ranges], w) => {
      const starts = ranges.map((r) => r[0]);
      const sizes = ranges.map((r) => r[1]);
      expectShape(slice(x, starts, sizes), sizes, 'slice output');
      checkVjp(`slice ${JSON.stringify(ranges)}`, (a) => slice(mul(a, a), starts, sizes), [x], w);
    },
    RUNS,
  );
  const padArgs = shapeArb(1, 3, 3).chain((s) =>
    fc.tuple(
      arrOfShape(s, range(-2, 2)),
      fc.array(fc.integer({ min: 0, max: 2 }), { minLength: s.length, maxLength: s.length }),
      fc.array(fc.integer({ min: 0, max: 2 }), { minLength: s.length, maxLength: s.length }),
    ),
  );
  prop(
    t,
    'vjp of pad matches finite differences (and pads with zeros)',
    [padArgs, weightsArb],
    ([x, lo, hi], w) => {
      const p = pad(x, lo, hi);
      expectShape(
        p,
        x.shape.map((d, i) => d + lo[i] + hi[i]),
        'pad output',
      );
      const total = (p.toTyped() as Float64Array).reduce((a, b) => a + b, 0);
      const inner = (x.toTyped() as Float64Array).reduce((a, b) => a + b, 0);
      if (Math.abs(total - inner) > 1e-12) throw new Error(`pad added non-zero values: ${total} vs ${inner}`);
      checkVjp(`pad ${JSON.stringify([lo, hi])}`, (a) => pad(tanh(a), lo, hi), [x], w);
    },
    RUNS,
  );
  const concatArgs = shapeArb(1, 3, 3).chain((s) =>
    fc.integer({ min: 0, max: s.length - 1 }).chain((axis) =>
      fc.tuple(
        fc.constant(axis),
        fc.array(
          fc.integer({ min: 1, max: 3 }).chain((d) =>
            arrOfShape(
              s.map((v, i) => (i === axis ? d : v)),
              range(-2, 2),
            ),
          ),
          { minLength: 2, maxLength: 3 },
        ),
      ),
    ),
  );
  prop(
    t,
    'vjp of concatenate matches finite differences',
    [concatArgs, weightsArb],
    ([axis, xs], w) =>
      checkVjp(
        `concatenate axis ${axis}`,
        (...a) =>
          concatenate(
            a.map((v, i) => mul(v, i + 1)),
            axis,
          ),
        xs,
        w,
      ),
    RUNS,
  );
  const stackArgs = shapeArb(0, 2, 3).chain((s) =>
    fc.tuple(fc.integer({ min: -(s.length + 1), max: s.length }), fc.array(arrOfShape(s, range(-2, 2)), { minLength: 1, maxLength: 3 })),
  );
  prop(
    t,
    'vjp of stack matches finite differences',
    [stackArgs, weightsArb],
    ([axis, xs], w) => {
      const y = stack(xs, axis);
      const a = axis < 0 ? axis + xs[0].ndim + 1 : axis;
      const expected = xs[0].shape.slice();
      expected.splice(a, 0, xs.length);
      expectShape(y, expected, 'stack output');
      checkVjp(
        `stack axis ${axis}`,
        (...v) =>
          stack(
            v.map((u, i) => (i === 0 ? exp(u) : u)),
            axis,
          ),
        xs,
        w,
      );
    },
    RUNS,
  );
  prop(
    t,
    'vjp of expandDims matches finite differences',
    [
      shapeArb(0, 3, 3).chain((s) => fc.tuple(arrOfShape(s, range(-2, 2)), fc.integer({ min: -(s.length + 1), max: s.length }))),
      weightsArb,
    ],
    ([x, axis], w) => checkVjp(`expandDims ${axis}`, (a) => expandDims(mul(a, a), axis), [x], w),
    RUNS,
  );
  const squeezeArgs = shapeArb(1, 4, 3).chain((s) => {
    const ones = s.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0);
    return fc.tuple(
      arrOfShape(s, range(-2, 2)),
      ones.length ? fc.option(fc.subarray(ones, { minLength: 1 }), { nil: undefined }) : fc.constant(undefined),
    );
  });
  prop(
    t,
    'vjp of squeeze matches finite differences',
    [squeezeArgs, weightsArb],
    ([x, axes], w) => checkVjp(`squeeze ${JSON.stringify(axes)}`, (a) => squeeze(mul(a, a), axes), [x], w),
    RUNS,
  );
});

t.test('matmul', async (t) => {
  const dim = fc.integer({ min: 1, max: 3 });
  const mk = (sa: Shape, sb: Shape) => fc.tuple(arrOfShape(sa, range(-2, 2)), arrOfShape(sb, range(-2, 2)));
  const cases: [string, fc.Arbitrary<[NDArray, NDArray]>][] = [
    ['2-D @ 2-D', fc.tuple(dim, dim, dim).chain(([m, k, n]) => mk([m, k], [k, n]))],
    ['batched 3-D @ 3-D', fc.tuple(dim, dim, dim, dim).chain(([b, m, k, n]) => mk([b, m, k], [b, k, n]))],
    [
      'broadcast leading dims [b,1,m,k] @ [c,k,n]',
      fc.tuple(dim, dim, dim, dim, dim).chain(([b, c, m, k, n]) => mk([b, 1, m, k], [c, k, n])),
    ],
    ['2-D @ batched [b,k,n]', fc.tuple(dim, dim, dim, dim).chain(([b, m, k, n]) => mk([m, k], [b, k, n]))],
    ['batched [b,c,m,k] @ 2-D', fc.tuple(dim, dim, dim, dim, dim).chain(([b, c, m, k, n]) => mk([b, c, m, k], [k, n]))],
    ['1-D @ 2-D', fc.tuple(dim, dim).chain(([k, n]) => mk([k], [k, n]))],
    ['2-D @ 1-D', fc.tuple(dim, dim).chain(([m, k]) => mk([m, k], [k]))],
    ['1-D @ 1-D', dim.chain((k) => mk([k], [k]))],
    ['1-D @ batched', fc.tuple(dim, dim, dim).chain(([b, k, n]) => mk([k], [b, k, n]))],
    ['batched @ 1-D', fc.tuple(dim, dim, dim).chain(([b, m, k]) => mk([b, m, k], [k]))],
  ];
  for (const [name, args] of cases) {
    prop(
      t,
      `matmul ${name}: value matches an explicit loop, vjp matches finite differences`,
      [args, weightsArb],
      ([a, b], w) => {
        expectClose2(matmul(a, b), naiveMatmul(a, b), name);
        checkVjp(`matmul ${name}`, matmul, [a, b], w);
      },
      RUNS,
    );
  }
});

/** numpy matmul semantics by explicit loops over nested arrays. */
function naiveMatmul(a: NDArray, b: NDArray): { shape: number[]; values: number[] } {
  const as = a.ndim === 1 ? [1, a.shape[0]] : a.shape.slice();
  const bs = b.ndim === 1 ? [b.shape[0], 1] : b.shape.slice();
  const av = a.toTyped();
  const bv = b.toTyped();
  const ab = as.slice(0, -2);
  const bb = bs.slice(0, -2);
  const rank = Math.max(ab.length, bb.length);
  const pa = [...new Array(rank - ab.length).fill(1), ...ab];
  const pb = [...new Array(rank - bb.length).fill(1), ...bb];
  const batch = pa.map((d, i) => Math.max(d, pb[i]));
  const [m, k] = as.slice(-2);
  const n = bs[bs.length - 1];
  const values: number[] = [];
  const nb = sizeOfShape(batch);
  for (let t = 0; t < nb; t++) {
    // Unravel t over batch, then index each operand (size-1 dims broadcast).
    const idx: number[] = [];
    let r = t;
    for (let d = batch.length - 1; d >= 0; d--) {
      idx[d] = r % batch[d];
      r = Math.floor(r / batch[d]);
    }
    const flat = (shape: number[], ix: number[]): number => ix.reduce((acc, v, d) => acc * shape[d] + (shape[d] === 1 ? 0 : v), 0);
    const oa = flat(pa, idx) * m * k;
    const ob = flat(pb, idx) * k * n;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) s += av[oa + i * k + q] * bv[ob + q * n + j];
        values.push(s);
      }
  }
  let shape = [...batch, m, n];
  if (a.ndim === 1) shape = [...batch, n];
  if (b.ndim === 1) shape = a.ndim === 1 ? [...batch] : [...batch, m];
  return { shape, values };
}

function expectClose2(y: Tensor, ref: { shape: number[]; values: number[] }, what: string): void {
  expectShape(y, ref.shape, `${what} shape`);
  const v = y.toTyped();
  for (let i = 0; i < v.length; i++)
    if (Math.abs(v[i] - ref.values[i]) > 1e-12 * (1 + Math.abs(ref.values[i])))
      throw new Error(`${what}: element ${i} is ${v[i]}, expected ${ref.values[i]}`);
}

t.test('gathers and sort', async (t) => {
  const takeAlongArgs = shapeArb(1, 3, 3).chain((s) =>
    fc.integer({ min: 0, max: s.length - 1 }).chain((axis) =>
      fc.integer({ min: 1, max: 4 }).chain((m) => {
        const ishape = s.map((d, i) => (i === axis ? m : d));
        return fc.tuple(
          arrOfShape(s, range(-2, 2)),
          fc
            .array(fc.integer({ min: 0, max: s[axis] - 1 }), { minLength: sizeOfShape(ishape), maxLength: sizeOfShape(ishape) })
            .map((v) => fromTyped(Int32Array.from(v), ishape, 'int32')),
          fc.constant(axis),
        );
      }),
    ),
  );
  prop(
    t,
    'vjp of takeAlongAxis (repeated indices accumulate) matches finite differences',
    [takeAlongArgs, weightsArb],
    ([x, idx, axis], w) => checkVjp(`takeAlongAxis axis ${axis}`, (a) => takeAlongAxis(mul(a, a), idx, axis), [x], w),
    RUNS,
  );
  const takeArgs = shapeArb(1, 3, 3).chain((s) =>
    fc.integer({ min: 0, max: s.length - 1 }).chain((axis) =>
      shapeArb(0, 2, 3).chain((ishape) =>
        fc.tuple(
          arrOfShape(s, range(-2, 2)),
          fc
            .array(fc.integer({ min: 0, max: s[axis] - 1 }), { minLength: sizeOfShape(ishape), maxLength: sizeOfShape(ishape) })
            .map((v) => fromTyped(Int32Array.from(v), ishape, 'int32')),
          fc.constant(axis),
        ),
      ),
    ),
  );
  prop(
    t,
    'take: values match explicit indexing, vjp matches finite differences',
    [takeArgs, weightsArb],
    ([x, idx, axis], w) => {
      const y = take(x, idx, axis);
      const expectedShape = [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)];
      expectShape(y, expectedShape, 'take output');
      // Explicit: y[pre, j..., post] = x[pre, idx[j...], post].
      const pre = sizeOfShape(x.shape.slice(0, axis));
      const post = sizeOfShape(x.shape.slice(axis + 1));
      const xv = x.toTyped();
      const iv = idx.toTyped();
      const expected: number[] = [];
      for (let p = 0; p < pre; p++)
        for (let j = 0; j < iv.length; j++) for (let q = 0; q < post; q++) expected.push(xv[(p * x.shape[axis] + iv[j]) * post + q]);
      expectExact(y.toTyped(), expected, 'take values');
      checkVjp(`take axis ${axis}`, (a) => take(tanh(a), idx, axis), [x], w);
    },
    RUNS,
  );
  const sortArgs = shapeArb(1, 3, 4).chain((s) =>
    fc.tuple(
      arrOfShape(s, (n) => distinctArb(n)),
      fc.integer({ min: -s.length, max: s.length - 1 }),
    ),
  );
  prop(
    t,
    'sort: rows ascending, vjp matches finite differences',
    [sortArgs, weightsArb],
    ([x, axis], w) => {
      const y = sort(x, axis);
      const a = axis < 0 ? axis + x.ndim : axis;
      const moved = transpose(y, [...x.shape.map((_, i) => i).filter((i) => i !== a), a]).toTyped();
      const n = x.shape[a];
      for (let i = 0; i < moved.length; i++)
        if (i % n !== 0 && !(moved[i - 1] < moved[i])) throw new Error(`sort: not ascending at ${i}: ${Array.from(moved)}`);
      checkVjp(`sort axis ${axis}`, (v) => sort(v, axis), [x], w);
    },
    RUNS,
  );
});

t.test('ties and kinks follow the documented convention', async (t) => {
  // reduce_max / reduce_min / maximum / minimum share the cotangent evenly among ties (as JAX);
  // relu has derivative 0 at 0; abs has sign(0) = 0.
  const x = array([1, 3, 3, -2], { dtype: 'float64' });
  t.same((grad((a: Tensor) => max(a))(x) as Tensor).toNested(), [0, 0.5, 0.5, 0], 'max: tie split evenly');
  t.same((grad((a: Tensor) => min(a))(x) as Tensor).toNested(), [0, 0, 0, 1], 'min: unique minimum');
  const y = array([1, 5, 3, -4], { dtype: 'float64' });
  t.same((grad((a: Tensor) => sum(maximum(a, y)))(x) as Tensor).toNested(), [0.5, 0, 0.5, 1], 'maximum: ties get half');
  t.same((grad((a: Tensor) => sum(minimum(a, y)))(x) as Tensor).toNested(), [0.5, 1, 0.5, 0], 'minimum: ties get half');
  t.same((grad((a: Tensor) => sum(relu(a)))(array([-1, 0, 2], { dtype: 'float64' })) as Tensor).toNested(), [0, 0, 1], 'relu: 0 at 0');
  t.same((grad((a: Tensor) => sum(abs(a)))(array([-1, 0, 2], { dtype: 'float64' })) as Tensor).toNested(), [-1, 0, 1], 'abs: sign(0) = 0');
});

t.test('integer and bool outputs carry no gradient', async (t) => {
  prop(
    t,
    'comparisons, argmax and argsort contribute exactly zero gradient',
    [arr(1, 3, (n) => distinctArb(n)), weightsArb],
    (x, wv) => {
      const w = f64(
        Array.from({ length: x.size }, (_, i) => wv[i % wv.length]),
        x.shape,
      );
      const viaInts = (a: Tensor): Tensor =>
        add(
          add(sum(mul(w, cast(greater(a, 0), 'float64'))), sum(cast(argsort(a, -1), 'float64'))),
          add(sum(cast(argmax(a, 0), 'float64')), sum(cast(notEqual(a, mul(a, 2)), 'float64'))),
        );
      const g = grad(viaInts)(x) as Tensor;
      expectShape(g, x.shape, 'gradient');
      expectExact(g.toTyped(), new Array(x.size).fill(0), 'gradient through integer/bool values');
      // Mixed with a differentiable path: only that path's gradient (w) remains.
      const g2 = grad((a: Tensor) => add(viaInts(a), sum(mul(w, a))))(x) as Tensor;
      expectExact(g2.toTyped(), w.toTyped(), 'gradient of sum(w * x) + integer terms');
      // Ops that are the identity forward but block gradients.
      const g3 = grad((a: Tensor) => sum(mul(w, stopGradient(a))))(x) as Tensor;
      expectExact(g3.toTyped(), new Array(x.size).fill(0), 'stopGradient');
    },
    RUNS,
  );
  t.test('vjp of an integer-valued function returns zero cotangents', async (t) => {
    const x = array(
      [
        [0.5, -1, 2],
        [3, 0.1, -2],
      ],
      { dtype: 'float64' },
    );
    const [idx, back] = vjp(((a: Tensor) => argmax(a, 1)) as (...args: Tree[]) => Tensor, x);
    t.same((idx as Tensor).toNested(), [2, 0]);
    t.equal((idx as Tensor).dtype, 'int32');
    const [gx] = back(array([1, 1], { dtype: 'int32' })) as Tensor[];
    t.same(gx.toNested(), [
      [0, 0, 0],
      [0, 0, 0],
    ]);
    const [b, back2] = vjp(((a: Tensor) => less(a, 0)) as (...args: Tree[]) => Tensor, x);
    t.equal((b as Tensor).dtype, 'bool');
    const [g2] = back2(equal(x, x)) as Tensor[];
    t.same(g2.toNested(), [
      [0, 0, 0],
      [0, 0, 0],
    ]);
  });
});

// =============================================================================================
// Second order

t.test('second-order VJPs', async (t) => {
  /*
   * Second-order property tests: the backward rules are written with ops, so they are themselves
   * differentiable. For each op, G(x) = grad(sum(w1 * f))(x) is checked like a first-order op:
   * grad(sum(w2 * G(x))) against central finite differences of G (float64, random shapes).
   */
  const arr = (values: (n: number) => fc.Arbitrary<number[]>) =>
    shapeArb(1, 3, 3).chain((s) => values(sizeOfShape(s)).map((v) => f64(v, s)));
  const range = (lo: number, hi: number) => (n: number) => valuesArb(n, lo, hi);
  const awayFromZero = (n: number) => awayFromZeroArb(n, 0.1, 2);
  const idx = array([0, 0], { dtype: 'int32' });

  /** x -> grad of sum(w1 * f(x)) at x. */
  const firstDerivative =
    (f: (x: Tensor) => Tensor, w1: readonly number[]) =>
    (x: Tensor): Tensor => {
      const y = f(x);
      const w = f64(
        Array.from({ length: y.size }, (_, i) => w1[i % w1.length]),
        y.shape,
      );
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
    [
      'tanh(m) @ m^T',
      (x) => {
        const m = reshape(x, [x.shape[0], -1]);
        return matmul(tanh(m), matrixTranspose(m));
      },
      range(-2, 2),
    ],
    [
      'pad * pad',
      (x) =>
        mul(
          pad(
            x,
            x.shape.map(() => 1),
            x.shape.map(() => 0),
          ),
          pad(
            x,
            x.shape.map(() => 0),
            x.shape.map(() => 1),
          ),
        ),
      range(-2, 2),
    ],
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
});
