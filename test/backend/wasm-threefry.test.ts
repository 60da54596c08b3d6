/**
 * The WebAssembly threefry (core/backend/wasm/threefry.ts) gives core/prng's words and [0, 1)
 * floats exactly, for every size (odd, not a multiple of 4, large) and key, also written in place
 * into arrays in the kernels' arena; the CPU backend's
 * random_uniform and random_bits use it and still match core/prng.
 */
import fc from 'fast-check';
import t from 'tap';
import { random, type NDArray } from '../../core/index.js';
import * as prng from '../../core/prng/index.js';
import { wasmRandomBits, wasmUniform01 } from '../../core/backend/wasm/threefry.js';
import { wasmSimdAvailable } from '../../core/backend/wasm/index.js';
import { releaseResidentArray, residentArray } from '../../core/backend/wasm/kernel-cache.js';

t.test('same words and floats as core/prng', { skip: !wasmSimdAvailable() && 'no WebAssembly SIMD' }, async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 0, max: 0xffffffff }), (m, seed) => {
      const key = prng.keyFromSeed(seed);
      const bits = wasmRandomBits(key[0], key[1], m)!;
      const floats = wasmUniform01(key[0], key[1], m)!;
      const refBits = prng.randomBits(key, m);
      const refFloats = prng.uniform(key, m);
      return bits.every((b, i) => b === refBits[i]) && floats.every((u, i) => Object.is(u, refFloats[i]));
    }),
    { numRuns: 200, seed: 9 },
  );
  const big = wasmUniform01(1, 2, 500_001)!;
  const ref = prng.uniform(Uint32Array.of(1, 2), 500_001);
  t.ok(
    big.every((u, i) => Object.is(u, ref[i])),
    '500,001 floats',
  );
});

t.test(
  'into arrays living in the arena (written in place when m is even and half of it whole loop steps): the same words and floats',
  { skip: !wasmSimdAvailable() && 'no WebAssembly SIMD' },
  async (t) => {
    // m = 2 * half with half a multiple of 16 (in place), and odd m or halves that are not whole
    // loop steps (through a scratch block).
    for (const m of [64, 63, 3200, 3199, 2_508_800, 1000, 999, 17]) {
      const key = prng.keyFromSeed(m);
      const words = residentArray('uint32', m) as Uint32Array | null;
      const floats = residentArray('float32', m) as Float32Array | null;
      if (words === null || floats === null) {
        t.pass('no shared arena here');
        return;
      }
      // Neighbours of the output: a block right after it must keep its values.
      const after = residentArray('float32', 16) as Float32Array;
      after.fill(5);
      t.equal(wasmRandomBits(key[0], key[1], m, words), words, `${m} words in place`);
      t.equal(wasmUniform01(key[0], key[1], m, floats), floats, `${m} floats in place`);
      const refBits = prng.randomBits(key, m);
      const refFloats = prng.uniform(key, m);
      t.ok(
        words.every((b, i) => b === refBits[i]) && floats.every((u, i) => Object.is(u, refFloats[i])),
        `m = ${m}: core/prng's words and floats`,
      );
      t.ok(
        after.every((x) => x === 5),
        `m = ${m}: the next block untouched`,
      );
      for (const x of [words, floats, after]) releaseResidentArray(x);
    }
  },
);

t.test('random.uniform and random.bits through the CPU backend match core/prng', async (t) => {
  const key = random.key(5);
  const u = (random.uniform(key, [37, 41]) as NDArray).toTyped();
  const ref = prng.uniform(Uint32Array.from((key as NDArray).toTyped() as Uint32Array), 37 * 41);
  t.ok(
    u.every((x, i) => Object.is(x, ref[i])),
    'uniform [0, 1)',
  );
  const scaled = (random.uniform(key, [1000], { minval: -2, maxval: 3 }) as NDArray).toTyped();
  const refScaled = prng.uniform(Uint32Array.from((key as NDArray).toTyped() as Uint32Array), 1000, { minval: -2, maxval: 3 });
  t.ok(
    scaled.every((x, i) => Object.is(x, refScaled[i])),
    'a scaled range (JS path)',
  );
});
