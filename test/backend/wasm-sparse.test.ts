/**
 * The sparse-operand matmul (core/backend/wasm/sparse.ts): bit-identical to the dense SIMD kernel
 * for random shapes (columns that are and are not multiples of 4 and of 32), densities, both
 * layouts of A (row-major and transposed) and strided B; it declines (leaving C untouched) when A
 * is too dense, B holds an Inf or NaN (0 * Inf must give NaN), B's columns are strided, or the
 * product is small; its density sample covers every example of a transposed A; and matmul through
 * the CPU backend takes it for spike-like inputs. Operands in the kernels' arena are read and
 * written in place, and large products are split across threads, with the same bits.
 */
import fc from 'fast-check';
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { sameBits } from './fixtures/compare.js';
import { gemmF32, wasmSimdAvailable } from '../../core/backend/wasm/index.js';
import { SPARSE_MAX_DENSITY, setSparseMatmul, sparseGemm, sparseStats } from '../../core/backend/wasm/sparse.js';
import { releaseResidentArray, residentArray } from '../../core/backend/wasm/kernel-cache.js';
import { fromTyped, matmul, type NDArray } from '../../core/index.js';

const simd = wasmSimdAvailable();
// Two threads where shared memory and a second core exist (this machine has both).
const threadsPossible = typeof SharedArrayBuffer !== 'undefined' && (await import('node:os')).availableParallelism() > 1;

function sparseMatrix(rows: number, cols: number, density: number, next: () => number): Float32Array {
  // Nonzeros include negative values, spikes of one height, and tiny and huge magnitudes.
  const kinds = [() => 0.01, () => next() - 0.5, () => 1e-30 * (next() - 0.5), () => 1e20 * next()];
  return Float32Array.from({ length: rows * cols }, () =>
    next() < density ? kinds[Math.floor(next() * kinds.length)]() : next() < 0.5 ? 0 : -0,
  );
}

t.test('bit-identical to the dense kernel over shapes, densities and layouts', { skip: !simd && 'no WebAssembly SIMD' }, async (t) => {
  let used = 0;
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 90 }),
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 70 }),
      fc.double({ min: 0, max: SPARSE_MAX_DENSITY.rows, noNaN: true }),
      fc.boolean(),
      fc.integer({ min: 0, max: 3 }),
      fc.integer(),
      (m, k, n, density, transposed, bPad, seed) => {
        // Large enough to pass the work threshold: scale k up when the product is small.
        const kk = m * k * n < 1 << 18 ? Math.ceil((1 << 18) / (m * n)) : k;
        const next = rng(seed);
        const X = sparseMatrix(m, kk, density, next);
        // A as a row-major matrix, or as the transposed view of its transpose (x^T @ g).
        let A = X;
        let rs = kk;
        let cs = 1;
        if (transposed) {
          A = new Float32Array(m * kk);
          for (let i = 0; i < m; i++) for (let p = 0; p < kk; p++) A[p * m + i] = X[i * kk + p];
          rs = 1;
          cs = m;
        }
        const ldb = n + bPad;
        const B = Float32Array.from({ length: kk * ldb }, () => next() * 4 - 2);
        const dense = new Float32Array(m * n);
        gemmF32(A, 0, rs, cs, B, 0, ldb, 1, dense, 0, m, kk, n);
        const sparse = new Float32Array(m * n).fill(7);
        const took = sparseGemm(A, 0, rs, cs, B, 0, ldb, 1, sparse, 0, m, kk, n);
        if (!took) return sparse.every((x) => x === 7);
        used++;
        return sameBits(dense, sparse);
      },
    ),
    { numRuns: 60, seed: 1234 },
  );
  t.ok(used >= 30, `the sparse path ran in ${used} of 60 cases`);
});

t.test('declines when it would be wrong or slow', { skip: !simd && 'no WebAssembly SIMD' }, async (t) => {
  const next = rng(5);
  const [m, k, n] = [64, 512, 32];
  const A = sparseMatrix(m, k, 0.1, next);
  const B = Float32Array.from({ length: k * n }, () => next() - 0.5);
  const C = new Float32Array(m * n);
  t.ok(sparseGemm(A, 0, k, 1, B, 0, n, 1, C, 0, m, k, n), 'takes a sparse A with finite B');
  const inf = B.slice();
  inf[5 * n + 3] = Infinity;
  C.fill(3);
  t.notOk(sparseGemm(A, 0, k, 1, inf, 0, n, 1, C, 0, m, k, n), 'declines when B holds Inf');
  t.ok(
    C.every((x) => x === 3),
    'and leaves C untouched',
  );
  const nan = B.slice();
  nan[17] = NaN;
  t.notOk(sparseGemm(A, 0, k, 1, nan, 0, n, 1, C, 0, m, k, n), 'declines when B holds NaN');
  const denseA = sparseMatrix(m, k, 0.9, next);
  t.notOk(sparseGemm(denseA, 0, k, 1, B, 0, n, 1, C, 0, m, k, n), 'declines a dense A');
  t.notOk(sparseGemm(A, 0, k, 1, B, 0, 1, k, C, 0, m, k, n), 'declines strided B columns');
  t.notOk(sparseGemm(A, 0, k, 1, B, 0, n, 1, C, 0, 4, 8, 4), 'declines a small product');
  // With Inf in B the CPU backend still gives NaN where 0 * Inf occurs (through the dense kernel).
  const a = fromTyped(
    Float32Array.from({ length: m * k }, (_, i) => (i % k === 0 ? 0 : A[i])),
    [m, k],
  );
  const out = matmul(a, fromTyped(inf, [k, n])) as NDArray;
  t.ok(Number.isNaN(out.toTyped()[3]), '0 * Inf = NaN through matmul');
});

t.test(
  'matmul on the CPU backend takes the sparse path for spike trains, with the dense result',
  { skip: !simd && 'no WebAssembly SIMD' },
  async (t) => {
    const next = rng(9);
    const [m, k, n] = [320, 784, 128];
    const spikes = fromTyped(
      Float32Array.from({ length: m * k }, () => (next() < 0.25 ? 0.01 : 0)),
      [m, k],
    );
    const w = fromTyped(
      Float32Array.from({ length: k * n }, () => next() - 0.5),
      [k, n],
    );
    const before = sparseStats.calls;
    const y = (matmul(spikes, w) as NDArray).toTyped() as Float32Array;
    t.equal(sparseStats.calls, before + 1, 'sparse path used');
    setSparseMatmul(false);
    const yDense = (matmul(spikes, w) as NDArray).toTyped() as Float32Array;
    setSparseMatmul(true);
    t.ok(sameBits(y, yDense), 'same bits as the dense kernel');
  },
);

t.test(
  'operands in the arena (read and written in place), products split across threads, several chunks of p: the dense bits',
  { skip: !simd && 'no WebAssembly SIMD' },
  async (t) => {
    const next = rng(21);
    // (m, k, n, A transposed, ldb padding): x @ W of a LIF batch (rows form, chunks of 128 rows),
    // x^T @ g (outer form: X's rows in chunks of 512, summed onto C), columns that are not whole
    // vectors (C through scratch, B's last vector read past its row), a strided B.
    const cases: [number, number, number, boolean, number][] = [
      [640, 784, 200, false, 0],
      [784, 1300, 96, true, 0],
      [300, 700, 10, false, 0],
      [90, 1100, 37, true, 3],
      [257, 300, 129, false, 5],
    ];
    for (const [m, k, n, transposed, bPad] of cases) {
      for (const inArena of [false, true]) {
        const fill = (size: number, f: (i: number) => number): Float32Array => {
          const x = ((inArena ? residentArray('float32', size) : null) ?? new Float32Array(size)) as Float32Array;
          for (let i = 0; i < size; i++) x[i] = f(i);
          return x;
        };
        // Spike-like rows: a blank region (every step zero there) and 0/1 spikes elsewhere.
        const X = Float32Array.from({ length: m * k }, (_, i) => (i % k < k / 4 ? 0 : next() < 0.2 ? 1 : 0));
        const A = transposed ? fill(m * k, (q) => X[(q % m) * k + Math.floor(q / m)]) : fill(m * k, (q) => X[q]);
        const [rs, cs] = transposed ? [1, m] : [k, 1];
        const ldb = n + bPad;
        const B = fill(k * ldb, () => next() * 4 - 2);
        const dense = new Float32Array(m * n);
        gemmF32(A, 0, rs, cs, B, 0, ldb, 1, dense, 0, m, k, n);
        const C = fill(m * n, () => 7);
        const split = sparseStats.split;
        t.ok(sparseGemm(A, 0, rs, cs, B, 0, ldb, 1, C, 0, m, k, n), `${m}x${k}x${n} took the sparse path`);
        const label = `${m}x${k}x${n} (A${transposed ? '^T' : ''}${inArena ? ', in the arena' : ''})`;
        t.ok(sameBits(dense, C), `${label}: same bits as the dense kernel`);
        if (threadsPossible && m * k * n >= 1 << 24) t.equal(sparseStats.split, split + 1, `${label} was split across threads`);
        if (inArena) for (const x of [A, B, C]) if (x.buffer instanceof SharedArrayBuffer) releaseResidentArray(x);
      }
    }
  },
);

t.test(
  'the density sample sees every example of x^T: a batch of 32 dense examples but every 8th blank stays dense',
  { skip: !simd && 'no WebAssembly SIMD' },
  async (t) => {
    // x: 32 examples of 784 values (row-major), used as A = x^T (784 x 32, a transposed view),
    // as in a dense layer's weight gradient x^T @ g. Examples 0, 8, 16 and 24 are zeros, the others
    // have no zero at all: A is 87.5% nonzero, far above the sparse path's threshold. A sample
    // taken with a step sharing a factor with 32 (25088 / 1024 -> 24) saw only those 4 examples.
    const m = 784;
    const k = 32;
    const n = 128;
    const next = rng(3);
    const x = Float32Array.from({ length: k * m }, (_, i) => (Math.floor(i / m) % 8 === 0 ? 0 : 0.5 + next()));
    const g = Float32Array.from({ length: k * n }, () => next() - 0.5);
    const c = new Float32Array(m * n);
    const before = sparseStats.calls;
    t.equal(sparseGemm(x, 0, 1, m, g, 0, n, 1, c, 0, m, k, n), false, 'declined: the dense kernel runs');
    t.equal(sparseStats.calls, before, 'the sparse kernel did not run');
  },
);
