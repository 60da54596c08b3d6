/**
 * vmap: every primitive's batching rule against a loop over the batch (vmap(f)(xs) equals stacking
 * f(x_i), x_i sliced out along its in axis), over random member shapes, batch sizes and in/out
 * axes (fast-check); compositions with grad, jit, scan, customVjp and vmap itself against the same
 * loops; batched PRNG keys against per-key draws; pytrees; the error messages.
 */
import fc from 'fast-check';
import t, { type Test } from 'tap';
import {
  abs,
  convGeneral,
  add,
  argmax,
  argsort,
  array,
  broadcastTo,
  cast,
  concatenate,
  cond,
  customVjp,
  div,
  equal,
  exp,
  floor,
  grad,
  greater,
  greaterEqual,
  indexAxis,
  jit,
  less,
  lessEqual,
  log,
  log1p,
  matmul,
  max,
  maximum,
  min,
  minimum,
  mul,
  neg,
  notEqual,
  pad,
  pow,
  random,
  reshape,
  scan,
  sigmoid,
  sign,
  slice,
  sqrt,
  stack,
  stopGradient,
  sub,
  sum,
  takeAlongAxis,
  tanh,
  transpose,
  vmap,
  where,
  whileLoop,
  type NDArray,
  type Primitive,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import { bind, shapeRules } from '../../core/internal.js';
import { arrArb, expectClose, f64, prop, shapeArb, thrown, type Shape } from './fixtures/helpers.js';

const RTOL = 1e-12;
const ATOL = 1e-13;

type Fn = (...xs: Tensor[]) => Tensor | Tensor[];
const asList = (r: Tensor | Tensor[]): Tensor[] => (Array.isArray(r) ? r : [r]);

/** The reference: f on each batch member (arguments sliced along their in axis), stacked at outAxis. */
function loopReference(f: Fn, args: readonly Tensor[], inAxes: readonly (number | null)[], size: number, outAxis: number): Tensor[] {
  const perMember = Array.from({ length: size }, (_, i) =>
    asList(f(...args.map((a, k) => (inAxes[k] === null ? a : indexAxis(a, inAxes[k]!, i))))),
  );
  return perMember[0].map((_, j) => {
    const parts = perMember.map((outs) => outs[j]);
    const rank = parts[0].ndim + 1;
    return stack(parts, outAxis < 0 ? outAxis + rank : outAxis);
  });
}

function expectSame(actual: readonly Tensor[], expected: readonly Tensor[], what: string, rtol = RTOL, atol = ATOL): void {
  if (actual.length !== expected.length) throw new Error(`${what}: ${actual.length} outputs, expected ${expected.length}`);
  actual.forEach((a, i) => {
    if (a.shape.join() !== expected[i].shape.join())
      throw new Error(`${what}: output ${i} has shape [${a.shape}], expected [${expected[i].shape}]`);
    if (a.dtype !== expected[i].dtype) throw new Error(`${what}: output ${i} has dtype ${a.dtype}, expected ${expected[i].dtype}`);
    expectClose(a.toTyped(), expected[i].toTyped(), rtol, atol, `${what}: output ${i}`);
  });
}

interface Problem {
  args: NDArray[];
  inAxes: (number | null)[];
  size: number;
  outAxis: number;
}

/**
 * Problems for member shapes drawn from `shapes`: a batch size, per argument an in axis (any
 * position, or null for a shared argument when `shared`), the batched arrays, an out axis (0 or -1).
 */
function problemArb(shapes: fc.Arbitrary<Shape[]>, opts: { shared?: boolean; lo?: number; hi?: number } = {}): fc.Arbitrary<Problem> {
  return shapes.chain((members) =>
    fc
      .record({
        size: fc.integer({ min: 1, max: 3 }),
        axes: fc.tuple(
          ...members.map((s) =>
            opts.shared === false
              ? fc.integer({ min: 0, max: s.length })
              : fc.option(fc.integer({ min: 0, max: s.length }), { nil: null, freq: 3 }),
          ),
        ),
        outAxis: fc.constantFrom(0, -1),
      })
      .chain(({ size, axes, outAxis }) => {
        const inAxes = axes.every((a) => a === null) ? [0, ...axes.slice(1)] : axes;
        const full = members.map((s, i) => {
          const a = inAxes[i];
          if (a === null) return s;
          const f = s.slice();
          f.splice(a, 0, size);
          return f;
        });
        return fc.tuple(...full.map((s) => arrArb(s, opts.lo ?? -2, opts.hi ?? 2))).map((args) => ({ args, inAxes, size, outAxis }));
      }),
  );
}

function vmapMatchesLoop(
  t: Test,
  name: string,
  f: Fn,
  shapes: fc.Arbitrary<Shape[]>,
  opts: { shared?: boolean; lo?: number; hi?: number; runs?: number } = {},
): void {
  prop(
    t,
    name,
    [problemArb(shapes, opts)],
    ({ args, inAxes, size, outAxis }) => {
      const got = asList(vmap(f, { inAxes, outAxes: outAxis })(...args));
      expectSame(got, loopReference(f, args, inAxes, size, outAxis), `${name} inAxes ${JSON.stringify(inAxes)} outAxes ${outAxis}`);
    },
    opts.runs ?? 20,
  );
}

const same = (n: number, rank: [number, number] = [0, 3]): fc.Arbitrary<Shape[]> =>
  shapeArb(rank[0], rank[1]).map((s) => Array.from({ length: n }, () => s));
const one = (rank: [number, number] = [0, 3]) => same(1, rank);

/** Batched keys: `size` keys from one seed, stacked to uint32[size, 2]. */
const keysOf = (seed: number, size: number): Tensor => stack(random.split(random.key(seed), size));

function randomCase(t: Test, name: string, draw: (k: Tensor) => Tensor | Tensor[]): void {
  prop(
    t,
    `${name} with a batch of keys equals per-key draws`,
    [fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 4 })],
    (seed, size) => {
      const keys = keysOf(seed, size);
      const got = asList(vmap(draw)(keys));
      const want = loopReference(draw, [keys], [0], size, 0);
      got.forEach((g, i) => expectClose(g.toTyped(), want[i].toTyped(), 0, 0, `${name} output ${i}`));
    },
    8,
  );
}

// ----------------------------------------------------------------------------- one case per primitive

type Case = (t: Test) => void;
const unaryCase =
  (f: (x: Tensor) => Tensor, lo = -2, hi = 2): Case =>
  (t) =>
    vmapMatchesLoop(t, 'vmap(f) = stacked f(x_i)', f as Fn, one(), { lo, hi });
const binaryCase =
  (f: (a: Tensor, b: Tensor) => Tensor, lo = -2, hi = 2): Case =>
  (t) =>
    vmapMatchesLoop(t, 'vmap(f) = stacked f(x_i)', f as Fn, same(2), { lo, hi });

/** Indices for take/scatter: a permutation of each row of y along axis 1. */
const rows = shapeArb(2, 2, 3).map((s) => [s, s]);

const primitiveCases: { [P in Primitive]: Case } = {
  neg: unaryCase(neg),
  exp: unaryCase(exp),
  log: unaryCase(log, 0.1, 3),
  log1p: unaryCase(log1p, -0.5, 3),
  sqrt: unaryCase(sqrt, 0.1, 3),
  tanh: unaryCase(tanh),
  logistic: unaryCase(sigmoid),
  abs: unaryCase(abs),
  sign: unaryCase(sign),
  floor: unaryCase(floor),
  add: binaryCase(add),
  sub: binaryCase(sub),
  mul: binaryCase(mul),
  div: binaryCase(div, 0.5, 2),
  max: binaryCase(maximum),
  min: binaryCase(minimum),
  pow: binaryCase(pow, 0.5, 2),
  lt: binaryCase(less),
  le: binaryCase(lessEqual),
  gt: binaryCase(greater),
  ge: binaryCase(greaterEqual),
  eq: binaryCase((a, b) => equal(floor(a), floor(b))),
  ne: binaryCase((a, b) => notEqual(floor(a), floor(b))),
  where: (t) => vmapMatchesLoop(t, 'where(c > 0, a, b)', (c, a, b) => where(greater(c, 0), a, b), same(3)),
  cast: (t) => {
    unaryCase((x) => cast(mul(x, 3), 'int32'))(t);
    unaryCase((x) => cast(x, 'float32'))(t);
  },
  stop_gradient: unaryCase(stopGradient),
  reduce_sum: (t) => {
    vmapMatchesLoop(t, 'sum over all axes', (x) => sum(x), one([1, 3]));
    vmapMatchesLoop(t, 'sum over the last axis', (x) => sum(x, -1), one([1, 3]));
    vmapMatchesLoop(t, 'sum over the first axis', (x) => sum(x, 0), one([1, 3]));
  },
  reduce_max: (t) => vmapMatchesLoop(t, 'max over the first and last axes', (x) => max(x, x.ndim > 1 ? [0, x.ndim - 1] : 0), one([1, 3])),
  reduce_min: (t) => vmapMatchesLoop(t, 'min over the last axis', (x) => min(x, -1), one([1, 3])),
  argmax: (t) => {
    vmapMatchesLoop(t, 'argmax along the last axis', (x) => argmax(x, -1), one([1, 3]));
    vmapMatchesLoop(t, 'argmax along the first axis', (x) => argmax(x, 0), one([1, 3]));
  },
  argsort: (t) => vmapMatchesLoop(t, 'argsort along the first axis', (x) => argsort(x, 0), one([1, 3])),
  reshape: (t) => {
    vmapMatchesLoop(t, 'flatten', (x) => reshape(x, [-1]), one());
    vmapMatchesLoop(t, 'reversed shape', (x) => reshape(x, [...x.shape].reverse()), one());
  },
  transpose: (t) => {
    vmapMatchesLoop(t, 'reversed axes', (x) => transpose(x), one([2, 3]));
    vmapMatchesLoop(
      t,
      'rotated axes',
      (x) =>
        transpose(
          x,
          x.shape.map((_, i) => (i + 1) % x.ndim),
        ),
      one([2, 3]),
    );
  },
  broadcast_to: (t) => {
    vmapMatchesLoop(t, 'a new leading axis', (x) => broadcastTo(x, [2, ...x.shape]), one());
    vmapMatchesLoop(t, 'a scalar member to a shape', (x) => broadcastTo(x, [2, 3]), fc.constant([[]]));
    vmapMatchesLoop(
      t,
      'size-1 axes expanded',
      (x) => broadcastTo(x, [3, x.shape[1]]),
      shapeArb(1, 1).map((s) => [[1, ...s]]),
    );
  },
  slice: (t) =>
    vmapMatchesLoop(
      t,
      'drop the first element of each axis longer than 1',
      (x) =>
        slice(
          x,
          x.shape.map((d) => (d > 1 ? 1 : 0)),
          x.shape.map((d) => (d > 1 ? d - 1 : d)),
        ),
      one([1, 3]),
    ),
  pad: (t) =>
    vmapMatchesLoop(
      t,
      'pad 1 before, 2 after',
      (x) =>
        pad(
          x,
          x.shape.map(() => 1),
          x.shape.map(() => 2),
        ),
      one([1, 3]),
    ),
  concatenate: (t) => {
    vmapMatchesLoop(t, 'along the first axis', (a, b, c) => concatenate([a, b, c], 0), same(3, [1, 3]));
    vmapMatchesLoop(t, 'along the last axis', (a, b) => concatenate([a, b], -1), same(2, [1, 3]));
  },
  conv: (t) => {
    // x [n, h, w, groups * 2], kernel [2, 2, 2, groups * 2]: a batched input, a batched kernel, or both.
    const dims = fc.record({
      n: fc.integer({ min: 1, max: 2 }),
      h: fc.integer({ min: 2, max: 4 }),
      w: fc.integer({ min: 2, max: 4 }),
      groups: fc.integer({ min: 1, max: 2 }),
    });
    const f = (groups: number) => (x: Tensor, k: Tensor) => convGeneral(x, k, { strides: [1, 2], padding: 'same', groups });
    for (const groups of [1, 2]) {
      vmapMatchesLoop(
        t,
        `conv2d with ${groups} group(s)`,
        f(groups) as Fn,
        dims.map(({ n, h, w }) => [
          [n, h, w, groups * 2],
          [2, 2, 2, groups * 2],
        ]),
        { runs: 12 },
      );
    }
  },
  matmul: (t) => {
    const dims = fc.record({
      m: fc.integer({ min: 1, max: 3 }),
      k: fc.integer({ min: 1, max: 3 }),
      n: fc.integer({ min: 1, max: 3 }),
      b: fc.integer({ min: 1, max: 2 }),
    });
    vmapMatchesLoop(
      t,
      'matrices (either operand shared, or both batched)',
      (a, b) => matmul(a, b),
      dims.map(({ m, k, n }) => [
        [m, k],
        [k, n],
      ]),
    );
    vmapMatchesLoop(
      t,
      'an outer product (contraction of length 1)',
      (a, b) => matmul(a, b),
      dims.map(({ m, n }) => [
        [m, 1],
        [1, n],
      ]),
    );
    vmapMatchesLoop(
      t,
      'stacks of matrices',
      (a, b) => matmul(a, b),
      dims.map(({ m, k, n, b }) => [
        [b, m, k],
        [b, k, n],
      ]),
    );
    vmapMatchesLoop(
      t,
      'a vector times a matrix',
      (a, b) => matmul(a, b),
      dims.map(({ k, n }) => [[k], [k, n]]),
    );
  },
  take_along_axis: (t) => vmapMatchesLoop(t, 'x picked along axis 1 by argsort(y)', (x, y) => takeAlongAxis(x, argsort(y, 1), 1), rows),
  scatter_add_along_axis: (t) =>
    vmapMatchesLoop(
      t,
      'u added at argsort(y) along axis 1',
      (u, y) => bind('scatter_add_along_axis', [u, argsort(y, 1)], { axis: 1, shape: u.shape.slice() })[0],
      rows,
    ),
  random_bits: (t) => randomCase(t, 'bits', (k) => random.bits(k, [3])),
  random_split: (t) => randomCase(t, 'split', (k) => random.split(k, 3)),
  random_fold_in: (t) => randomCase(t, 'foldIn', (k) => random.foldIn(k, 7)),
  random_uniform: (t) => randomCase(t, 'uniform', (k) => random.uniform(k, [2, 3], { minval: -1, maxval: 2 })),
  random_normal: (t) => randomCase(t, 'normal', (k) => random.normal(k, [4], { dtype: 'float64' })),
  random_randint: (t) => randomCase(t, 'randint', (k) => random.randint(k, [5], 0, 10)),
  random_permutation: (t) => randomCase(t, 'permutation', (k) => random.permutation(k, 6)),
  scan: (t) => {
    // c <- tanh(c * x + w): the carry becomes batched whenever xs or w is, even from a shared init.
    const run = (c0: Tensor, xs: Tensor, w: Tensor): Tensor[] => {
      const [c, ys] = scan((c: Tensor, x: Tensor): [Tensor, Tensor] => [tanh(add(mul(c, x), w)), mul(c, 2)], c0, xs);
      return [c, ys];
    };
    vmapMatchesLoop(
      t,
      'a scan with a carry, xs and a closed-over constant',
      run as Fn,
      shapeArb(1, 2).chain((s) => fc.integer({ min: 1, max: 3 }).map((len) => [s, [len, ...s], s])),
    );
    const reversed = (c0: Tensor, xs: Tensor): Tensor[] =>
      asList(scan((c: Tensor, x: Tensor): [Tensor, Tensor] => [add(c, x), c], c0, xs, { reverse: true }) as Tensor[]);
    vmapMatchesLoop(
      t,
      'a reverse scan',
      reversed as Fn,
      shapeArb(1, 2).map((s) => [s, [3, ...s]]),
    );
  },
  cond: (t) => {
    // The predicate depends on p (batched or shared); the branches close over c.
    const f = (p: Tensor, x: Tensor, c: Tensor): Tensor =>
      cond(
        greater(sum(p), 0),
        (v: Tensor) => mul(tanh(v), c),
        (v: Tensor) => sub(v, c),
        x,
      );
    vmapMatchesLoop(t, 'cond with batched or shared predicate, operand and constant', f as Fn, same(3, [0, 2]));
  },
  while_loop: (t) => {
    // Doubles x until its sum exceeds the bound b: members stop after different iteration counts.
    const f = (x: Tensor, b: Tensor): Tensor =>
      whileLoop(
        (v: Tensor) => less(sum(abs(v)), add(sum(abs(b)), 4)),
        (v: Tensor) => add(mul(v, 2), 0.5),
        x,
      );
    vmapMatchesLoop(t, 'whileLoop with a batched or shared condition', f as Fn, same(2, [0, 2]));
  },
  custom_vjp_call: (t) => {
    vmapMatchesLoop(t, 'a customVjp function', (x, y) => clipped(x, y), same(2));
    prop(
      t,
      'grad of a customVjp function under vmap uses its bwd per example',
      [problemArb(same(2, [1, 2]))],
      ({ args, inAxes, size }) => {
        const g = (x: Tensor, y: Tensor): Tensor => grad((a: Tensor) => sum(clipped(a, y)))(x) as Tensor;
        expectSame([vmap(g as Fn, { inAxes })(...args) as Tensor], loopReference(g as Fn, args, inAxes, size, 0), 'per-example grads');
      },
      10,
    );
  },
};

/** min(x, 1) * y whose bwd passes 3 * ct * y (a deliberately different derivative) to x. */
const clipped = customVjp(
  (x: Tensor, y: Tensor) => mul(minimum(x, 1), y),
  (x: Tensor, y: Tensor) => [mul(minimum(x, 1), y), y],
  (y: Tensor, ct: Tensor) => [mul(mul(ct, y), 3), null],
);

t.test('every primitive has a batching-rule case', async (t) => {
  const names = Object.keys(shapeRules) as Primitive[];
  t.same(
    names.filter((p) => !(p in primitiveCases)),
    [],
    'no primitive lacks a case',
  );
  for (const p of names) await t.test(p, async (t) => primitiveCases[p](t));
});

// ----------------------------------------------------------------------------- compositions

/** Compares two pytrees of arrays leaf by leaf. */
function expectTreeSame(actual: Tree, expected: Tree, what: string, rtol = RTOL, atol = ATOL): void {
  const [a, ad] = [treeLeavesOf(actual), JSON.stringify(structure(actual))];
  const [e, ed] = [treeLeavesOf(expected), JSON.stringify(structure(expected))];
  if (ad !== ed) throw new Error(`${what}: structure ${ad}, expected ${ed}`);
  expectSame(a, e, what, rtol, atol);
}
const treeLeavesOf = (x: Tree): Tensor[] =>
  x === null || x === undefined || typeof x !== 'object'
    ? []
    : 'shape' in x
      ? [x as Tensor]
      : Array.isArray(x)
        ? x.flatMap(treeLeavesOf)
        : Object.keys(x)
            .sort()
            .flatMap((k) => treeLeavesOf((x as Record<string, Tree>)[k]));
const structure = (x: Tree): unknown =>
  x === null || x === undefined || typeof x !== 'object'
    ? x
    : 'shape' in x
      ? '*'
      : Array.isArray(x)
        ? x.map(structure)
        : Object.fromEntries(
            Object.keys(x)
              .sort()
              .map((k) => [k, structure((x as Record<string, Tree>)[k])]),
          );

type Params = { W1: Tensor; b1: Tensor; W2: Tensor; b2: Tensor };
/** A two-layer tanh MLP's squared error on one example (x: [4], y: [3]). */
const mlpLoss = (p: Params, x: Tensor, y: Tensor): Tensor => {
  const h = tanh(add(matmul(reshape(x, [1, -1]), p.W1), p.b1));
  const out = add(matmul(h, p.W2), p.b2);
  return sum(mul(sub(out, y), sub(out, y)));
};
const mlpArb = fc.record({ size: fc.integer({ min: 1, max: 5 }), seed: fc.integer({ min: 0, max: 1000 }) }).map(({ size, seed }) => {
  const k = random.split(random.key(seed), 6);
  const n = (i: number, shape: number[]): NDArray => random.normal(k[i], shape, { dtype: 'float64' }) as NDArray;
  return { params: { W1: n(0, [4, 5]), b1: n(1, [5]), W2: n(2, [5, 3]), b2: n(3, [3]) }, xs: n(4, [size, 4]), ys: n(5, [size, 3]), size };
});
const perExampleLoop = (params: Params, xs: Tensor, ys: Tensor): Params[] =>
  Array.from({ length: xs.shape[0] }, (_, i) => grad(mlpLoss)(params, indexAxis(xs, 0, i), indexAxis(ys, 0, i)) as Params);
const stackTrees = (trees: Params[]): Params => ({
  W1: stack(trees.map((g) => g.W1)),
  b1: stack(trees.map((g) => g.b1)),
  W2: stack(trees.map((g) => g.W2)),
  b2: stack(trees.map((g) => g.b2)),
});

t.test('vmap composes with grad, jit, scan and itself', async (t) => {
  const perExample = vmap(grad(mlpLoss), { inAxes: [null, 0, 0] });
  prop(
    t,
    'vmap(grad(f)) equals per-example gradients computed one by one',
    [mlpArb],
    ({ params, xs, ys }) => {
      expectTreeSame(perExample(params, xs, ys) as Tree, stackTrees(perExampleLoop(params, xs, ys)), 'per-example grads');
    },
    10,
  );
  const jitted = jit(perExample);
  prop(
    t,
    'jit(vmap(grad(f))) equals the same loop',
    [mlpArb],
    ({ params, xs, ys }) => {
      expectTreeSame(jitted(params, xs, ys) as Tree, stackTrees(perExampleLoop(params, xs, ys)), 'jitted per-example grads', 1e-10, 1e-12);
    },
    10,
  );
  prop(
    t,
    'grad(sum of vmap(f)) equals the sum of per-example gradients',
    [mlpArb],
    ({ params, xs, ys }) => {
      const total = grad((p: Params) => sum(vmap(mlpLoss, { inAxes: [null, 0, 0] })(p, xs, ys)))(params) as Params;
      const loop = perExampleLoop(params, xs, ys);
      const summed = {
        W1: sum(stack(loop.map((g) => g.W1)), 0),
        b1: sum(stack(loop.map((g) => g.b1)), 0),
        W2: sum(stack(loop.map((g) => g.W2)), 0),
        b2: sum(stack(loop.map((g) => g.b2)), 0),
      };
      expectTreeSame(total, summed, 'grad of vmap', 1e-10, 1e-12);
    },
    10,
  );
  prop(
    t,
    'vmap(jit(f)) equals vmap(f)',
    [mlpArb],
    ({ params, xs, ys }) => {
      const f = jit(mlpLoss);
      expectSame(
        [vmap(f, { inAxes: [null, 0, 0] })(params, xs, ys)],
        [vmap(mlpLoss, { inAxes: [null, 0, 0] })(params, xs, ys)],
        'vmap of jit',
      );
    },
    5,
  );

  const pairwise = (x: Tensor, y: Tensor): Tensor => sum(mul(tanh(x), exp(y)));
  prop(
    t,
    'vmap(vmap(f)) equals a double loop (outer axis 1 of x, inner axis 0)',
    [
      fc
        .record({ a: fc.integer({ min: 1, max: 3 }), b: fc.integer({ min: 1, max: 3 }), n: fc.integer({ min: 1, max: 3 }) })
        .chain(({ a, b, n }) => fc.tuple(arrArb([b, a, n]), arrArb([b, n]))),
    ],
    ([xs, ys]) => {
      // x: [b, a, n] batched over a (outer, axis 1) then b (inner, axis 0); y: [b, n] shared by the outer batch.
      const got = vmap(vmap(pairwise), { inAxes: [1, null] })(xs, ys);
      const want = stack(
        Array.from({ length: xs.shape[1] }, (_, i) =>
          stack(Array.from({ length: xs.shape[0] }, (_, j) => pairwise(indexAxis(indexAxis(xs, 1, i), 0, j), indexAxis(ys, 0, j)))),
        ),
      );
      expectSame([got], [want], 'vmap of vmap');
    },
    15,
  );

  await t.test('vmap inside a scan body, and per-example gradients through a scan', async (t) => {
    const xs = f64([0.1, -0.3, 0.5, 0.7, -1.1, 0.2, 0.3, 0.9, -0.4, 0.6, 0.8, -0.2], [3, 2, 2]);
    const w = f64([0.5, -0.25], [2]);
    const [final] = scan(
      (c: Tensor, x: Tensor): [Tensor, Tensor] => [vmap((ci: Tensor, xi: Tensor) => tanh(add(mul(ci, xi), w)))(c, x), c],
      f64([0, 0, 0, 0], [2, 2]),
      xs,
    );
    let c = f64([0, 0, 0, 0], [2, 2]);
    for (let i = 0; i < 3; i++) c = tanh(add(mul(c, indexAxis(xs, 0, i)), w)) as NDArray;
    expectSame([final as Tensor], [c], 'scan of vmap');
    const loss = (w: Tensor, x: Tensor): Tensor =>
      sum(scan((c: Tensor, xi: Tensor): [Tensor, Tensor] => [tanh(add(mul(c, xi), w)), c], mul(w, 0), x)[0] as Tensor);
    const batch = f64([0.1, -0.3, 0.5, 0.7, -1.1, 0.2, 0.3, 0.9, -0.4, 0.6, 0.8, -0.2], [2, 3, 2]);
    const per = vmap(grad(loss), { inAxes: [null, 0] })(w, batch);
    const want = stack([0, 1].map((i) => grad(loss)(w, indexAxis(batch, 0, i)) as Tensor));
    expectSame([per as Tensor], [want], 'vmap(grad(scan))');
    t.pass('scan and vmap nest both ways');
  });
});

t.test('vmap over pytrees', async (t) => {
  const p = { a: f64([1, 2, 3, 4, 5, 6], [2, 3]), b: [f64([1, 2, 3], [3]), f64([7, 8, 9], [3])] };
  // a batched on axis 1 (members [2]), b[0] on axis 0 (members scalars), b[1] shared.
  const f = (q: typeof p) => ({ s: add(sum(q.a), q.b[0]), t: mul(q.b[1], 2), pair: [q.a, 5] as const });
  const out = vmap(f, { inAxes: [{ a: 1, b: [0, null] }], outAxes: { s: 0, t: null, pair: [-1, null] } })(p);
  t.same(out.s.toNested(), [1 + 4 + 1, 2 + 5 + 2, 3 + 6 + 3], 'column sums of a plus b[0]');
  t.same(out.t.toNested(), [14, 16, 18], 'a shared output with outAxes null keeps its shape');
  t.same(
    out.pair[0].toNested(),
    [
      [1, 2, 3],
      [4, 5, 6],
    ],
    'outAxes -1 puts the batch last (here: back where it came from)',
  );
  t.equal(out.pair[1], 5, 'static leaves pass through');
});

t.test('vmap errors name vmap and say what was expected', async (t) => {
  const x = array([
    [1, 2],
    [3, 4],
    [5, 6],
  ]);
  const y = array([1, 2]);
  t.match(
    thrown(() => vmap(add)(x, y))?.message,
    /vmap: mismatched batch sizes: argument leaf 0 \(f32\[3, 2\]|vmap: mismatched batch sizes/,
  );
  t.match(thrown(() => vmap(add)(x, y))?.message, /has 3 but argument leaf 1 .* has 2/);
  t.match(thrown(() => vmap(add, { inAxes: [2, null] })(x, y))?.message, /vmap: inAxes .* axis 2 is out of range for an array of rank 1/);
  t.match(thrown(() => vmap(add, { inAxes: [0] })(x, y))?.message, /vmap: inAxes has 1 entries for 2 argument\(s\)/);
  t.match(thrown(() => vmap(add, { inAxes: [null, null] })(x, y))?.message, /vmap: no argument is batched/);
  t.match(
    thrown(() => vmap((a: Tensor) => a, { outAxes: null })(x))?.message,
    /vmap: outAxes is null for output leaf 0 .* differs across the batch/,
  );
  t.match(thrown(() => vmap((a: Tensor) => a, { outAxes: 3 })(x))?.message, /vmap: outAxes .* axis 3 is out of range/);
  t.match(
    thrown(() => vmap((p: { a: Tensor }) => p.a, { inAxes: [{ b: 0 }] })({ a: x }))?.message,
    /vmap: inAxes spec at arguments\[0\] names 'b'/,
  );
  t.match(thrown(() => vmap((a: Tensor) => a.item())(x))?.message, /vmap: cannot read the values of a batched array/);
});
