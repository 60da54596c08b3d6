/**
 * Encoders and batching of the data module: poissonEncode's spikes (values, rates within binomial
 * error of maxRate * x, determinism per key, bad options), tileTime as a stride-0 view, and
 * batches (a permutation from the key, every row once per epoch, x and y aligned, the remainder,
 * bad arguments).
 */
import t from 'tap';
import { fromTyped, jit, random, type NDArray, type Tensor } from '../../core/index.js';
import { batches, poissonEncode, tileTime } from '../../data/index.js';

t.test('poissonEncode: spikes of height 1/dt at rate maxRate * x', async (t) => {
  const n = 4000;
  const x = fromTyped(
    Float32Array.from({ length: n * 3 }, (_, i) => [0, 0.25, 1][i % 3]),
    [n, 3],
  );
  const dt = 0.01;
  const steps = 10;
  const s = poissonEncode(random.key(1), x, steps, { dt, maxRate: 50 }) as NDArray;
  t.same(s.shape, [n, steps, 3]);
  const v = s.toTyped();
  t.ok(
    v.every((a) => a === 0 || Math.abs(a - 1 / dt) < 1e-3),
    'every value is 0 or 1/dt',
  );
  for (let c = 0; c < 3; c++) {
    const p = [0, 0.25, 1][c] * 50 * dt;
    let count = 0;
    for (let i = 0; i < n; i++) for (let k = 0; k < steps; k++) count += v[(i * steps + k) * 3 + c] > 0 ? 1 : 0;
    const trials = n * steps;
    const sd = Math.sqrt(trials * p * (1 - p));
    t.ok(Math.abs(count - trials * p) <= 5 * sd + 1e-9, `column ${c}: ${count} spikes, expected ${trials * p} +- ${(5 * sd).toFixed(1)}`);
  }
  // (Large arrays are compared by hand: tap's deep equality is slow on 120k elements.)
  const equal = (a: ArrayLike<number>, b: ArrayLike<number>): boolean =>
    a.length === b.length && Array.prototype.every.call(a, (e: number, i: number) => e === b[i]);
  const again = poissonEncode(random.key(1), x, steps, { dt, maxRate: 50 }) as NDArray;
  t.ok(equal(again.toTyped(), v), 'same key, same spikes');
  const other = poissonEncode(random.key(2), x, steps, { dt, maxRate: 50 }) as NDArray;
  t.notOk(equal(other.toTyped(), v), 'another key, other spikes');
  // Traceable: the same spikes under jit.
  const jitted = jit((k: Tensor, xx: Tensor) => poissonEncode(k, xx, steps, { dt, maxRate: 50 }))(random.key(1), x) as NDArray;
  t.ok(equal(jitted.toTyped(), v), 'jit gives the same spikes');
});

t.test('poissonEncode: bad options are named', async (t) => {
  const x = fromTyped(new Float32Array(4), [2, 2]);
  t.throws(() => poissonEncode(random.key(0), x, 0), /poissonEncode: steps must be a positive integer, got 0/);
  t.throws(() => poissonEncode(random.key(0), x, 5, { dt: 0 }), /poissonEncode: dt must be positive, got 0/);
  t.throws(() => poissonEncode(random.key(0), x, 5, { maxRate: -1 }), /poissonEncode: maxRate must be >= 0 Hz, got -1/);
  t.throws(
    () => poissonEncode(random.key(0), x, 5, { dt: 0.01, maxRate: 1000 }),
    /poissonEncode: maxRate \* dt = 10 > 1; at most one spike per step, so maxRate must be <= 1\/dt = 100 Hz/,
  );
  t.doesNotThrow(() => poissonEncode(random.key(0), x, 5, { dt: 0.03, maxRate: 1 / 0.03 }), 'maxRate = 1/dt is allowed despite rounding');
});

t.test('tileTime is a stride-0 view', async (t) => {
  const x = fromTyped(
    Float32Array.from({ length: 6 }, (_, i) => i),
    [2, 3],
  );
  const tiled = tileTime(x, 4);
  t.same(tiled.shape, [2, 4, 3]);
  t.equal(tiled.strides[1], 0, 'time axis has stride 0');
  t.equal(tiled.data, x.data, 'no copy');
  t.throws(() => tileTime(x, 1.5), /tileTime: steps must be a positive integer, got 1.5/);
});

t.test('batches: a permutation from the key, every row once, x and y aligned', async (t) => {
  const n = 103;
  const x = fromTyped(
    Float32Array.from({ length: n * 2 }, (_, i) => Math.floor(i / 2)),
    [n, 2],
  );
  const y = fromTyped(
    Int32Array.from({ length: n }, (_, i) => i),
    [n],
    'int32',
  );
  const key = random.key(7);
  const expected = Array.from((random.permutation(key, n) as NDArray).toTyped());
  const seen: number[] = [];
  let count = 0;
  for (const b of batches(key, x, y, 10)) {
    count++;
    const rows = Array.from(b.y!.toTyped());
    t.same(Array.from(b.index), rows, 'index names the rows');
    t.same(
      Array.from(b.x.toTyped()),
      rows.flatMap((r) => [r, r]),
      'x rows match y',
    );
    seen.push(...rows);
  }
  t.equal(count, 11, '10 full batches and a remainder of 3');
  t.same(seen, expected, 'the order is random.permutation(key, n)');
  t.same(Array.from(batches(key, x, y, 10, { dropRemainder: true })).length, 10, 'dropRemainder drops the last 3');
  t.same(
    Array.from(batches(null, x, null, 50)).map((b) => b.index[0]),
    [0, 50, 100],
    'no key: dataset order',
  );
  const tiled = tileTime(x, 5);
  const first = batches(null, tiled, null, 4).next().value!;
  t.equal(first.x.strides[1], 0, 'a stride-0 time axis stays a view');
  t.throws(() => batches(key, x, y, 0).next(), /batches: batchSize must be a positive integer, got 0/);
  t.throws(
    () => batches(key, x, fromTyped(new Int32Array(5), [5], 'int32'), 4).next(),
    /batches: x has 103 examples but y has shape \[5\]/,
  );
});
