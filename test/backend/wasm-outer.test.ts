/**
 * The outer-product kernel (core/backend/wasm/outer.ts), a matmul whose contraction has length 1:
 * bit-identical to the gemm with k = 1 (which sums from +0, so a -0 product comes out +0) and to
 * the product rounded to float32 plus +0 computed here, over random batch sizes, rows and columns
 * (multiples of 4 and not), strided operands, operands and results in the arena or not (results
 * written in place or chunk by chunk, several chunks included), and special values; and matmul
 * through the CPU backend, eager and jit'd, takes it for [.., m, 1] @ [.., 1, n].
 */
import fc from 'fast-check';
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { firstBitDifference } from './fixtures/compare.js';
import { gemmF32, wasmSimdAvailable } from '../../core/backend/wasm/index.js';
import { outerProductsF32, outerStats } from '../../core/backend/wasm/outer.js';
import { releaseResidentArray, residentArray } from '../../core/backend/wasm/kernel-cache.js';
import { fromTyped, jit, matmul, type NDArray } from '../../core/index.js';

const simd = wasmSimdAvailable();

/** Values with every sign of zero, tiny and huge magnitudes, infinities and NaN among ordinary ones. */
function values(count: number, next: () => number): Float32Array {
  const kinds = [
    () => next() * 4 - 2,
    () => 0,
    () => -0,
    () => 1e-30 * (next() - 0.5),
    () => 3e38 * (next() - 0.5),
    () => Infinity,
    () => NaN,
  ];
  return Float32Array.from({ length: count }, () => (next() < 0.8 ? kinds[0]() : kinds[Math.floor(next() * kinds.length)]()));
}

/** A float32 array in the arena (when asked and possible) holding `src`. */
function place(src: Float32Array, resident: boolean, owned: Float32Array[]): Float32Array {
  if (!resident) return src;
  const r = residentArray('float32', src.length) as Float32Array | null;
  if (r === null) return src;
  r.set(src);
  owned.push(r);
  return r;
}

t.test('bit-identical to gemm with k = 1 and to the rounded product plus +0', { skip: !simd && 'no WebAssembly SIMD' }, async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 70 }),
      fc.integer({ min: 1, max: 70 }),
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 2 }),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      fc.integer(),
      (batch, m, n, aStride, bStride, aRes, bRes, cRes, seed) => {
        const next = rng(seed);
        const owned: Float32Array[] = [];
        try {
          // Members laid out with gaps: A's column every aStride floats, B's row every bStride.
          const aLen = batch * m * aStride + 3;
          const bLen = batch * n * bStride + 5;
          const A = place(values(aLen, next), aRes, owned);
          const B = place(values(bLen, next), bRes, owned);
          const aOffsets = Array.from({ length: batch }, (_, t) => 1 + t * m * aStride);
          const bOffsets = Array.from({ length: batch }, (_, t) => 2 + t * n * bStride);
          const C = place(new Float32Array(batch * m * n).fill(7), cRes, owned);
          if (!outerProductsF32(A, aOffsets, aStride, B, bOffsets, bStride, C, m, n)) return false;
          const viaGemm = new Float32Array(batch * m * n);
          const direct = new Float32Array(batch * m * n);
          for (let b = 0; b < batch; b++) {
            gemmF32(A, aOffsets[b], aStride, 1, B, bOffsets[b], 1, bStride, viaGemm, b * m * n, m, 1, n);
            for (let i = 0; i < m; i++)
              for (let j = 0; j < n; j++)
                direct[b * m * n + i * n + j] = Math.fround(A[aOffsets[b] + i * aStride] * B[bOffsets[b] + j * bStride]) + 0;
          }
          const got = Float32Array.from(C);
          return firstBitDifference(got, viaGemm) === -1 && firstBitDifference(got, direct) === -1;
        } finally {
          for (const r of owned) releaseResidentArray(r);
        }
      },
    ),
    { numRuns: 150 },
  );
  t.pass('150 random cases');
});

t.test('a result larger than one chunk, written to ordinary memory', { skip: !simd && 'no WebAssembly SIMD' }, async (t) => {
  // 3 x 301 x 131 floats: several 64 kB chunks per member, the last one partial, rows of 131.
  const [batch, m, n] = [3, 301, 131];
  const next = rng(5);
  const A = values(batch * m, next);
  const B = values(batch * n, next);
  const C = new Float32Array(batch * m * n);
  const before = outerStats.calls - outerStats.inPlace;
  t.ok(outerProductsF32(A, [0, m, 2 * m], 1, B, [0, n, 2 * n], 1, C, m, n));
  t.equal(outerStats.calls - outerStats.inPlace, before + 1, 'chunked path');
  const ref = new Float32Array(batch * m * n);
  for (let b = 0; b < batch; b++) gemmF32(A, b * m, 1, 1, B, b * n, 1, 1, ref, b * m * n, m, 1, n);
  t.equal(firstBitDifference(C, ref), -1);
});

t.test('matmul of [.., m, 1] by [.., 1, n], eager and jit, against a float64 loop', async (t) => {
  for (const [batch, m, n] of [
    [5, 13, 7],
    [2, 97, 130],
    [32, 9, 33],
  ]) {
    const next = rng(batch * 1000 + m * 10 + n);
    const a = Float32Array.from({ length: batch * m }, () => next() * 2 - 1);
    const b = Float32Array.from({ length: batch * n }, () => next() * 2 - 1);
    const A = fromTyped(a, [batch, m, 1]);
    const B = fromTyped(b, [batch, 1, n]);
    const before = outerStats.calls;
    const eager = (matmul(A, B) as NDArray).toTyped() as Float32Array;
    const jitted = (jit(matmul)(A, B) as NDArray).toTyped() as Float32Array;
    if (simd) t.ok(outerStats.calls >= before + 2, `${batch}x${m}x${n}: the outer-product kernel ran`);
    let worst = 0;
    for (let s = 0; s < batch; s++)
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          const exact = a[s * m + i] * b[s * n + j];
          worst = Math.max(worst, Math.abs(eager[s * m * n + i * n + j] - exact) / (Math.abs(exact) + 1e-30));
        }
    t.ok(worst <= 2 ** -24, `${batch}x${m}x${n}: within one float32 rounding (worst relative ${worst})`);
    t.equal(firstBitDifference(eager, jitted), -1, `${batch}x${m}x${n}: eager and jit agree bit for bit`);
  }
});
