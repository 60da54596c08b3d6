/**
 * timeDistributed on a time-tiled input (a stride-0 time axis, what tileTime gives): the layer runs
 * once per example and its output is broadcast over time. Checked against the same model on a
 * materialized copy of the input (every step computed), forward and gradients, in float64 so the
 * comparison is tight; that the compiled step holds no op over batch x time rows; and that a layer
 * reading the PRNG key (dropout) still draws per step.
 */
import t from 'tap';
import { fromTyped, jit, makeJaxpr, random, sum, valueAndGrad, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import { tileTime } from '../../data/index.js';
import {
  averagePooling2d,
  conv2d,
  dense,
  dropout,
  flatten,
  globalAveragePooling1d,
  maxPooling2d,
  sequential,
  sparseCategoricalCrossentropy,
  timeDistributed,
  type Layer,
} from '../../nn/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);
function lcg(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  return Float64Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  });
}
/** The largest difference relative to the largest magnitude of b (normwise). */
const maxRelDiff = (a: readonly number[], b: readonly number[]): number =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0) / Math.max(...b.map(Math.abs));
/** The params with every float32 leaf as float64 (same values), so the comparison is tight. */
function asFloat64(tree: Tree): Tree {
  if (tree !== null && typeof tree === 'object' && 'toTyped' in tree) {
    const x = tree as NDArray;
    return fromTyped(Float64Array.from(x.toTyped() as ArrayLike<number>), x.shape, 'float64');
  }
  if (Array.isArray(tree)) return tree.map(asFloat64);
  return Object.fromEntries(Object.entries(tree as Record<string, Tree>).map(([k, v]) => [k, asFloat64(v)]));
}
const flatLeaves = (tree: Tree): number[] => {
  if (tree !== null && typeof tree === 'object' && 'toTyped' in tree) return vals(tree as Tensor);
  const children = Array.isArray(tree)
    ? tree
    : Object.keys(tree as object)
        .sort()
        .map((k) => (tree as Record<string, Tree>)[k]);
  return children.flatMap(flatLeaves);
};

const batch = 3;
const steps = 4;
const images = fromTyped(lcg(batch * 9 * 9 * 2, 1), [batch, 9, 9, 2], 'float64');
const labels = fromTyped(Int32Array.from([1, 0, 2]), [batch], 'int32');
const tiled = tileTime(images, steps); // [3, 4, 9, 9, 2], time stride 0
const materialized = fromTyped(Float64Array.from(tiled.toTyped() as ArrayLike<number>), tiled.shape, 'float64');

function cnn(pool: () => Layer): Layer {
  return sequential([
    timeDistributed(conv2d(4, 3, { activation: 'relu' }), { name: 'c1' }),
    timeDistributed(pool()),
    timeDistributed(conv2d(5, 2, { activation: 'tanh' }), { name: 'c2' }),
    timeDistributed(flatten()),
    globalAveragePooling1d(),
    dense(3, { name: 'out' }),
  ]);
}

for (const [poolName, pool] of [
  ['average', () => averagePooling2d(2)],
  ['max', () => maxPooling2d(2)],
] as const) {
  t.test(`a CNN under timeDistributed (${poolName} pooling) on a tiled input: once per image, same outputs and gradients`, (t) => {
    const model = cnn(pool);
    const params = asFloat64(model.init(random.key(3), [null, 9, 9, 2]).params);
    const loss = sparseCategoricalCrossentropy({ fromLogits: true });
    const step = jit((p: Tree, x: Tensor) =>
      valueAndGrad((q: Tree) => loss(labels, model.apply(q as never, x, { training: true }, {} as never).y))(p),
    );
    const [lossTiled, gradTiled] = step(params, tiled) as [Tensor, Tree];
    const [lossFull, gradFull] = step(params, materialized) as [Tensor, Tree];
    t.ok(Math.abs(lossTiled.item() - lossFull.item()) <= 1e-14, `loss ${lossTiled.item()} vs ${lossFull.item()}`);
    const a = flatLeaves(gradTiled);
    const b = flatLeaves(gradFull);
    t.equal(a.length, b.length);
    t.ok(maxRelDiff(a, b) < 1e-13, `gradients agree (max relative difference ${maxRelDiff(a, b)})`);
    t.ok(
      b.some((v) => v !== 0),
      'the gradients are not all zero',
    );

    // The traced step on the tiled input (a stride-0 constant here, as jit passes one) convolves
    // and pools the 3 images, never 3 x 4 rows.
    const jaxpr = makeJaxpr((p: Tree) =>
      valueAndGrad((q: Tree) => loss(labels, model.apply(q as never, tiled, { training: true }, {} as never).y))(p),
    )(params);
    const leading = jaxpr.jaxpr.eqns
      .filter((e) => e.prim === 'conv' || e.prim === 'reduce_max' || e.prim === 'reduce_sum')
      .map((e) => e.inputs[0].aval.shape[0]);
    t.ok(leading.length > 4, 'convolutions and pooling reductions found');
    t.notOk(leading.includes(batch * steps), `no conv or pooling over batch x time rows (leading sizes ${leading.join(', ')})`);
    t.end();
  });
}

t.test('eagerly (no jit), the tiled input gives the materialized outputs', (t) => {
  const model = cnn(() => averagePooling2d(2));
  const params = asFloat64(model.init(random.key(4), [null, 9, 9, 2]).params);
  const a = vals(model.apply(params as never, tiled, { training: false }, {} as never).y);
  const b = vals(model.apply(params as never, materialized, { training: false }, {} as never).y);
  t.ok(maxRelDiff(a, b) < 1e-13, `max relative difference ${maxRelDiff(a, b)}`);
  t.end();
});

t.test('a layer that reads the PRNG key (dropout) still draws a mask per time step', (t) => {
  const layer = timeDistributed(dropout(0.5));
  const x = tileTime(fromTyped(new Float64Array(2 * 50).fill(1), [2, 50], 'float64'), 3);
  const y = layer.apply({} as never, x, { training: true, key: random.key(7) }, {} as never).y;
  t.same(y.shape, [2, 3, 50]);
  const v = vals(y);
  const step = (b: number, s: number): number[] => v.slice((b * 3 + s) * 50, (b * 3 + s + 1) * 50);
  t.notSame(step(0, 0), step(0, 1), 'steps 0 and 1 of example 0 have different masks');
  t.notSame(step(1, 1), step(1, 2), 'steps 1 and 2 of example 1 have different masks');
  // Inference reads no key: the compact path, and every step equal.
  const inference = vals(layer.apply({} as never, x, { training: false }, {} as never).y);
  t.same(
    inference,
    Array.from({ length: 300 }, () => 1),
  );
  t.end();
});

t.test('gradient through a tiled input under plain valueAndGrad (no jit) matches the materialized one', (t) => {
  const model = cnn(() => maxPooling2d(2));
  const params = asFloat64(model.init(random.key(5), [null, 9, 9, 2]).params);
  const f = (x: Tensor) => (p: Tree) => sum(model.apply(p as never, x, { training: true }, {} as never).y);
  const [va, ga] = valueAndGrad(f(tiled))(params) as [Tensor, Tree];
  const [vb, gb] = valueAndGrad(f(materialized))(params) as [Tensor, Tree];
  t.ok(Math.abs(va.item() - vb.item()) <= 1e-12 * (1 + Math.abs(vb.item())));
  t.ok(maxRelDiff(flatLeaves(ga), flatLeaves(gb)) < 1e-13, `max relative difference ${maxRelDiff(flatLeaves(ga), flatLeaves(gb))}`);
  t.end();
});
