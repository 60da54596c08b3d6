/**
 * Keys: seeding, splitting and folding in, against JAX's published values and
 * reference outputs of jax 0.10.2 (fixtures/jax-reference.ts), plus
 * properties over arbitrary seeds.
 */
import fc from 'fast-check';
import t from 'tap';
import { DEFAULT_PARTITIONABLE, foldIn, keyAt, keyFromSeed, splitKey } from '../../core/prng/index.js';
import { JAX_REFERENCE as R } from './fixtures/jax-reference.js';

const LAYOUTS = ['classic', 'partitionable'] as const;
const opts = (layout: (typeof LAYOUTS)[number]) => ({ partitionable: layout === 'partitionable' });
const arr = (a: Uint32Array): number[] => Array.from(a);

t.test("JAX's documented split example", async (t) => {
  // jax.random docs (classic layout, JAX < 0.5 default):
  //   random.split(PRNGKey(0)) == [[4146024105, 967050713], [2718843009, 1272950319]]
  t.equal(DEFAULT_PARTITIONABLE, false, 'default layout is the classic one');
  t.same(arr(splitKey(keyFromSeed(0))), [4146024105, 967050713, 2718843009, 1272950319]);
  t.same(arr(splitKey(keyFromSeed(0), 2, { partitionable: false })), [4146024105, 967050713, 2718843009, 1272950319]);
  // Same call under jax_threefry_partitionable=True (JAX >= 0.5 default), as
  // printed in current jax.random docs: [[1797259609 2579123966] [928981903 3453687069]].
  t.same(arr(splitKey(keyFromSeed(0), 2, { partitionable: true })), [1797259609, 2579123966, 928981903, 3453687069]);
});

t.test('keyFromSeed matches jax.random.PRNGKey', async (t) => {
  t.same(arr(keyFromSeed(0)), [0, 0]);
  t.same(arr(keyFromSeed(42)), [0, 42]);
  t.same(arr(keyFromSeed(2 ** 32 - 1)), [0, 0xffffffff]);
  for (const { seed, key } of R.seedsX64) {
    t.same(arr(keyFromSeed(BigInt(seed))), key, `x64 PRNGKey(${seed}) as bigint`);
    const n = Number(seed);
    if (Number.isSafeInteger(n)) t.same(arr(keyFromSeed(n)), key, `x64 PRNGKey(${seed}) as number`);
  }
  for (const { seed, key } of R.seedsX32) {
    t.same(arr(keyFromSeed(BigInt(seed), { x64: false })), key, `x32 PRNGKey(${seed})`);
  }
});

t.test('keyFromSeed rejects what it cannot represent exactly', async (t) => {
  t.throws(() => keyFromSeed(1.5), { name: 'RangeError', message: /keyFromSeed.*1\.5/ });
  t.throws(() => keyFromSeed(2 ** 53), { name: 'RangeError', message: /keyFromSeed.*safe integer.*9007199254740992/ });
  t.throws(() => keyFromSeed(-(2 ** 60)), RangeError);
  t.throws(() => keyFromSeed(Number.NaN), RangeError);
  t.throws(() => keyFromSeed(Infinity), RangeError);
  t.throws(() => keyFromSeed(2n ** 63n), { name: 'RangeError', message: /keyFromSeed.*9223372036854775808n/ });
  t.throws(() => keyFromSeed(-(2n ** 63n) - 1n), RangeError);
  t.throws(() => keyFromSeed('1' as unknown as number), TypeError);
  t.same(arr(keyFromSeed(2n ** 63n - 1n)), [0x7fffffff, 0xffffffff]);
});

t.test('splitKey and foldIn match jax 0.10.2 in both layouts', async (t) => {
  for (const layout of LAYOUTS) {
    for (const { seed, n, keys } of R[layout].split) {
      t.same(arr(splitKey(keyFromSeed(seed), n, opts(layout))), keys, `${layout}: split(PRNGKey(${seed}), ${n})`);
    }
  }
  for (const { seed, data, key } of R.foldIn) {
    t.same(arr(foldIn(keyFromSeed(seed), data)), key, `fold_in(PRNGKey(${seed}), ${data})`);
  }
});

t.test('split edge cases and key handling', async (t) => {
  const k = keyFromSeed(3);
  t.equal(splitKey(k, 0).length, 0, 'zero keys');
  t.equal(splitKey(k, 1).length, 2);
  t.same(arr(keyAt(splitKey(k, 5), 4)), arr(splitKey(k, 5)).slice(8, 10));
  const before = arr(k);
  splitKey(k, 3);
  foldIn(k, 9);
  t.same(arr(k), before, 'keys are never mutated');
  const keys = splitKey(k, 2);
  const child = keyAt(keys, 0);
  child[0] = 0;
  t.not(keys[0], 0, 'keyAt returns a copy');
  t.throws(() => splitKey(k, -1), { name: 'RangeError', message: /splitKey: n/ });
  t.throws(() => splitKey(k, 1.5), RangeError);
  t.throws(() => splitKey(new Uint32Array(3), 2), { name: 'TypeError', message: /splitKey: key must be a Uint32Array of length 2/ });
  t.throws(() => splitKey([0, 0] as unknown as Uint32Array), TypeError);
  t.throws(() => foldIn(k, -1), { name: 'RangeError', message: /foldIn: data.*-1/ });
  t.throws(() => foldIn(k, 2 ** 32), RangeError);
  t.throws(() => keyAt(keys, 2), RangeError);
  t.throws(() => keyAt(new Uint32Array(0), 0), RangeError);
  t.throws(() => keyAt(new Uint32Array(3), 0), TypeError);
});

t.test('foldIn ignores the layout and equals the partitionable split child', async (t) => {
  // JAX: fold_in(key, d) hashes the counter (0, d), which is exactly the d-th
  // child of the partitionable split.
  const k = keyFromSeed(11);
  const children = splitKey(k, 4, { partitionable: true });
  for (let d = 0; d < 4; d++) t.same(arr(foldIn(k, d)), arr(keyAt(children, d)));
});

const anySeed = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.maxSafeInteger(),
);

t.test('property: split children differ from the parent and from each other', async (t) => {
  fc.assert(
    fc.property(anySeed, fc.integer({ min: 2, max: 16 }), fc.boolean(), (seed, n, partitionable) => {
      const parent = keyFromSeed(seed);
      const keys = splitKey(parent, n, { partitionable });
      const seen = new Set<string>([`${parent[0]},${parent[1]}`]);
      for (let i = 0; i < n; i++) seen.add(`${keys[2 * i]},${keys[2 * i + 1]}`);
      return seen.size === n + 1;
    }),
    { numRuns: 300 },
  );
  t.pass('300 random seeds');
});

t.test('property: the same seed always gives the same keys', async (t) => {
  fc.assert(
    fc.property(anySeed, fc.integer({ min: 0, max: 2 ** 32 - 1 }), (seed, data) => {
      const a = splitKey(foldIn(keyFromSeed(seed), data), 3);
      const b = splitKey(foldIn(keyFromSeed(seed), data), 3);
      return arr(a).join() === arr(b).join();
    }),
    { numRuns: 200 },
  );
  t.pass('200 random seeds');
});

t.test('property: number and bigint seeds agree; x32 mode keeps only the low word', async (t) => {
  fc.assert(
    fc.property(fc.maxSafeInteger(), (seed) => {
      const a = keyFromSeed(seed);
      const b = keyFromSeed(BigInt(seed));
      const c = keyFromSeed(seed, { x64: false });
      return a[0] === b[0] && a[1] === b[1] && c[0] === 0 && c[1] === a[1];
    }),
    { numRuns: 500 },
  );
  t.pass('500 random safe integers');
});

t.test('random.uniform with a range equals the sampler (one rounding, never maxval)', async (t) => {
  const { random: r } = await import('../../core/index.js');
  const { uniform: raw, keyFromSeed } = await import('../../core/prng/index.js');
  const got = Array.from(r.uniform(r.key(7), [1000], { minval: -2, maxval: 3 }).toTyped());
  const want = Array.from(raw(keyFromSeed(7), 1000, { minval: -2, maxval: 3 }));
  t.same(got, want);
  t.ok(got.every((v) => v >= -2 && v < 3));
});
