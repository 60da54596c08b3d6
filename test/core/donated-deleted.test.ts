/**
 * A donated array is deleted, as in JAX (issue 16): reading it (toTyped, item, toNested), using it
 * in an op or passing it to a jitted function again raises, naming the donation, instead of
 * showing whatever its recycled memory holds by then (before, it silently showed the output's
 * values); an array also passed undonated, or returned as is, stays readable; fit, which donates
 * its own step outputs, trains as before and leaves the caller's arrays readable. toHost with
 * recycle deletes the originals it recycled, likewise.
 */
import t from 'tap';
import { add, fromTyped, jit, random, toHost, type NDArray, type Tensor } from '../../core/index.js';
import * as nn from '../../nn/index.js';

const N = 1024;
const filled = (f: (i: number) => number): NDArray =>
  fromTyped(
    Float32Array.from({ length: N }, (_, i) => f(i)),
    [N],
  );
// Outputs kept in the kernels' arena, so a donated buffer really is recycled for the next output.
const resident = (x: NDArray): NDArray => jit((v: Tensor) => v.mul(1)).donating([], { keepInBackend: true })(x) as NDArray;

t.test('reading a donated array raises instead of showing recycled memory', async (t) => {
  const step = jit(function scaleStep(w: Tensor, g: Tensor) {
    return w.sub(g.mul(0.5));
  });
  const w = resident(filled((i) => i));
  const g = filled(() => 2);
  const out = step.donating([0], { keepInBackend: true })(w, g) as NDArray;
  t.equal((out.toTyped() as Float32Array)[3], 2, 'the output is right');
  const deleted = /was donated to jit\(scaleStep\) and deleted, as JAX deletes donated arrays/;
  t.throws(() => w.toTyped(), deleted, 'toTyped');
  t.throws(() => w.toNested(), deleted, 'toNested');
  const one = jit((v: Tensor) => v.mul(1)).donating([], { keepInBackend: true })(fromTyped(Float32Array.of(3), [1])) as NDArray;
  step.donating([0], { keepInBackend: true })(one, fromTyped(Float32Array.of(1), [1]));
  t.throws(() => one.item(), deleted, 'item');
  t.throws(() => add(w, 1), /add: this float32\[1024\] array was donated/, 'an eager op');
  t.throws(() => step(w, g), /jit\(scaleStep\) argument 0: this float32\[1024\] array was donated/, 'a jitted call');
  t.match(String(w), /NDArray\(float32\[1024\], deleted: donated to jit\(scaleStep\)\)/, 'printing says so rather than showing values');
  t.equal(g.toTyped()[0], 2, 'the undonated argument stays readable');
});

t.test('an array also passed undonated, or returned itself, is not deleted', async (t) => {
  const x = resident(filled((i) => i));
  const both = jit((a: Tensor, b: Tensor) => a.mul(b));
  both.donating([0], { keepInBackend: true })(x, x);
  t.equal(x.toTyped()[5], 5, 'still readable after being passed both ways');
  const identity = jit((a: Tensor) => a);
  const y = resident(filled((i) => 2 * i));
  const back = identity.donating([0])(y) as NDArray;
  t.equal(back.toTyped()[5], 10, 'the output is readable');
});

t.test('fit donates only its own step outputs: the caller never sees the error', async (t) => {
  const model = nn.sequential([nn.dense(8, { activation: 'relu' }), nn.dense(3)]);
  const init = model.init(random.key(0), [5]);
  const x = fromTyped(
    Float32Array.from({ length: 40 * 5 }, (_, i) => Math.cos(i)),
    [40, 5],
  );
  const y = fromTyped(
    Int32Array.from({ length: 40 }, (_, i) => i % 3),
    [40],
    'int32',
  );
  const seen: number[] = [];
  const res = nn.fit(model, init, x, y, {
    optimizer: nn.adam(1e-2),
    loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
    epochs: 2,
    batchSize: 8,
    verbose: 0,
    callbacks: [
      {
        onBatchEnd: (_b, _l, ctl) =>
          void seen.push(((ctl.params as Record<string, Record<string, Tensor>>)[model.children![0].name].bias as NDArray).toTyped()[0]),
      },
    ],
  });
  t.equal(seen.length, 10, 'a callback reads the parameters every step');
  t.ok(res.history.history.loss.every(Number.isFinite), 'training ran');
  const readAll = (tree: unknown): void => {
    if (tree !== null && typeof tree === 'object' && 'toTyped' in (tree as object)) (tree as NDArray).toTyped();
    else if (tree !== null && typeof tree === 'object') for (const v of Object.values(tree)) readAll(v);
  };
  t.doesNotThrow(
    () => [init.params, res.params, res.state, res.optState, x, y].forEach(readAll),
    "the caller's arrays and fit's results are all readable",
  );
});

t.test('toHost(tree, { recycle: true }) deletes the originals whose memory it recycles', async (t) => {
  const w = resident(filled((i) => i));
  const plain = filled((i) => -i);
  const host = toHost({ w, plain }, { recycle: true });
  t.same(Array.from(host.w.toTyped().subarray(0, 4)), [0, 1, 2, 3], 'the copy holds the values');
  t.equal(host.plain, plain, 'an array in ordinary memory comes back as it is');
  t.equal(plain.toTyped()[1], -1, 'and stays readable');
  // The next resident result may land in w's old memory: w must not show it.
  const next = resident(filled(() => 7));
  t.equal(next.toTyped()[0], 7, 'the next result is right');
  t.throws(() => w.toTyped(), /was donated to toHost\(tree, \{ recycle: true \}\) and deleted/, 'reading the recycled original raises');
  t.throws(() => add(w, 1), /add: this float32\[1024\] array was donated/, 'so does an op on it');
  const kept = resident(filled((i) => 2 * i));
  const copy = toHost(kept);
  t.equal(kept.toTyped()[2], 4, 'without recycle the original stays readable');
  t.equal(copy.toTyped()[2], 4, 'and so does its copy');
});
