/**
 * The WebAssembly threefry (core/backend/wasm/threefry.ts) gives core/prng's words and [0, 1)
 * floats exactly, for every size (odd, not a multiple of 4, large) and key; the CPU backend's
 * random_uniform and random_bits use it and still match core/prng.
 */
import fc from 'fast-check';
import t from 'tap';
import { random, type NDArray } from '../../core/index.js';
import * as prng from '../../core/prng/index.js';
import { wasmRandomBits, wasmUniform01 } from '../../core/backend/wasm/threefry.js';
import { wasmSimdAvailable } from '../../core/backend/wasm/index.js';

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
