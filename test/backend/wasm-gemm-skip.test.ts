/**
 * The matmul's zero-skipping kernels (core/backend/wasm/kernel.ts packSkipA, blockSkip): a weight
 * gradient x^T @ g whose panels of x hold all-zero steps (image background, silent neurons) skips
 * those steps, and must give the same bits as the dense kernel and the JS fallback:
 * - random shapes (full and partial last panels, one and several K blocks), zeros of both signs
 *   in runs, B with and without Inf/NaN (a non-finite B turns skipping off: 0 * Inf = NaN stays),
 *   operands in the kernels' arena and outside it, transposed and row-major B, and the forward
 *   product x @ W (row-major A: never skipped);
 * - sums that cancel to zero keep the sign the dense order gives (+0);
 * - the skipping path really runs where a third of the steps are empty (gemmSkipStats), and not
 *   where A is dense or B is not finite.
 */
import fc from 'fast-check';
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { createWasmGemm, gemmF32Fallback, gemmSkipStats, wasmSimdAvailable } from '../../core/backend/wasm/index.js';
import { releaseResidentArray, residentArray, residentOffset } from '../../core/backend/wasm/kernel-cache.js';

const simd = wasmSimdAvailable();

/** Float32 bits, with every NaN as one pattern (payloads are not part of the contract). */
function bitsOf(x: Float32Array): Uint32Array {
  const u = new Uint32Array(x.length);
  const v = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let i = 0; i < x.length; i++) u[i] = Number.isNaN(x[i]) ? 0x7fc00000 : v[i];
  return u;
}

function firstDifference(a: Float32Array, b: Float32Array): number {
  const x = bitsOf(a);
  const y = bitsOf(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function alloc(n: number, resident: boolean): Float32Array {
  return resident ? ((residentArray('float32', n) as Float32Array | null) ?? new Float32Array(n)) : new Float32Array(n);
}

function release(...xs: Float32Array[]): void {
  for (const x of xs) if (residentOffset(x) >= 0) releaseResidentArray(x);
}

/**
 * x: k lines (batch rows) of m values (pixels), zero in runs along the line (a blank background)
 * with probability `zeros`, -0 as often as +0.
 */
function images(k: number, m: number, zeros: number, next: () => number, resident: boolean): Float32Array {
  const x = alloc(k * m, resident);
  for (let p = 0; p < k; p++) {
    let blank = next() < zeros;
    for (let i = 0; i < m; i++) {
      if (next() < 0.2) blank = next() < zeros;
      x[p * m + i] = blank ? (next() < 0.5 ? 0 : -0) : next() * 2 - 1;
    }
  }
  return x;
}

t.test('zero-skipping weight gradients equal the dense kernel and the JS fallback bit for bit', { skip: !simd && 'no SIMD' }, async (t) => {
  const skipping = createWasmGemm({ threads: 1, skipMinWork: 0 })!;
  const dense = createWasmGemm({ threads: 1, skipZeroSteps: false })!;
  const skipped = { rows: 0, transposed: 0 };
  let checked = 0;
  fc.assert(
    fc.property(
      fc.record({
        // m above 40 (more than 8 panels, so B is packed) and k up to 256 (one K block) can skip.
        m: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 41, max: 130 }), fc.integer({ min: 41, max: 130 })),
        k: fc.integer({ min: 1, max: 300 }),
        n: fc.integer({ min: 1, max: 40 }),
        zeros: fc.oneof(
          fc.double({ min: 0, max: 1, noNaN: true }),
          fc.double({ min: 0.8, max: 1, noNaN: true }),
          fc.double({ min: 0.8, max: 1, noNaN: true }),
        ),
        bTransposed: fc.boolean(),
        // x^T @ g (A transposed: skipping applies), or x @ W (A row-major: the dense kernel, the same bits).
        rowsOfA: fc.boolean(),
        resident: fc.boolean(),
        special: fc.constantFrom('none', 'none', 'inf', 'nan', '-inf'),
        seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      }),
      ({ m: m0, k: k0, n, zeros, bTransposed, resident, special, rowsOfA, seed }) => {
        const next = rng(seed);
        // x @ W: m images of k pixels (up to 1000); x^T @ g: k images of m pixels.
        const [m, k] = rowsOfA ? [1 + (m0 % 40), 1 + ((k0 * 37) % 1000)] : [m0, k0];
        const x = rowsOfA ? images(m, k, zeros, next, resident) : images(k, m, zeros, next, resident);
        const [xRow, xCol] = rowsOfA ? [k, 1] : [1, m];
        // g: k x n, row-major, or given transposed (stored n x k).
        const g = alloc(k * n, resident);
        for (let i = 0; i < g.length; i++) g[i] = next() < 0.3 ? 0 : next() * 4 - 2;
        if (special !== 'none') g[Math.floor(next() * g.length)] = special === 'inf' ? Infinity : special === '-inf' ? -Infinity : NaN;
        const [gRow, gCol] = bTransposed ? [1, k] : [n, 1];
        const outs = [new Float32Array(m * n), new Float32Array(m * n), new Float32Array(m * n)];
        const skippedBefore = gemmSkipStats.products;
        skipping(x, 0, xRow, xCol, g, 0, gRow, gCol, outs[0], 0, m, k, n);
        skipped[rowsOfA ? 'rows' : 'transposed'] += gemmSkipStats.products - skippedBefore;
        dense(x, 0, xRow, xCol, g, 0, gRow, gCol, outs[1], 0, m, k, n);
        gemmF32Fallback(x, 0, xRow, xCol, g, 0, gRow, gCol, outs[2], 0, m, k, n);
        release(x, g);
        checked++;
        return firstDifference(outs[0], outs[1]) < 0 && firstDifference(outs[0], outs[2]) < 0;
      },
    ),
    { numRuns: 400, seed: 20261206 },
  );
  t.equal(checked, 400);
  t.ok(skipped.transposed >= 20, `the skipping kernels ran (${skipped.transposed} of 400 products)`);
  t.equal(skipped.rows, 0, 'not for a row-major A');
});

t.test('image-like gradients skip steps; dense A and non-finite B do not', { skip: !simd && 'no SIMD' }, async (t) => {
  const skipping = createWasmGemm({ threads: 1, skipMinWork: 0 })!;
  const next = rng(7);
  const [m, k, n] = [784, 32, 128];
  // Fashion-MNIST-like: 28 x 28 images, blank outside a centred blob of varying size.
  const x = alloc(k * m, true);
  for (let p = 0; p < k; p++) {
    const r = 6 + next() * 8;
    for (let i = 0; i < m; i++) {
      const [row, col] = [Math.floor(i / 28) - 13.5, (i % 28) - 13.5];
      x[p * m + i] = row * row + col * col < r * r ? next() : 0;
    }
  }
  const g = alloc(k * n, true);
  for (let i = 0; i < g.length; i++) g[i] = next() - 0.5;
  const expected = new Float32Array(m * n);
  gemmF32Fallback(x, 0, 1, m, g, 0, n, 1, expected, 0, m, k, n);

  let before = gemmSkipStats.products;
  const c = alloc(m * n, true);
  skipping(x, 0, 1, m, g, 0, n, 1, c, 0, m, k, n);
  t.equal(gemmSkipStats.products, before + 1, 'blank background: skipped');
  t.equal(firstDifference(c, expected), -1, 'same bits as the JS fallback');

  // One Inf in g: every column it meets becomes NaN where x is 0 (0 * Inf), as in the dense kernel.
  g[5 * n + 3] = Infinity;
  gemmF32Fallback(x, 0, 1, m, g, 0, n, 1, expected, 0, m, k, n);
  before = gemmSkipStats.products;
  skipping(x, 0, 1, m, g, 0, n, 1, c, 0, m, k, n);
  t.equal(gemmSkipStats.products, before, 'non-finite B: dense kernel');
  t.equal(firstDifference(c, expected), -1, 'NaN where 0 * Inf, as the fallback');
  t.ok(Number.isNaN(c[0 * n + 3]), 'a blank pixel meets the Inf: NaN');
  g[5 * n + 3] = 0.25;

  // The forward product x @ W (32 images x 784 pixels): the dense kernel, the same bits.
  const W = alloc(m * n, true);
  for (let i = 0; i < W.length; i++) W[i] = next() - 0.5;
  const y = alloc(k * n, true);
  const yExpected = new Float32Array(k * n);
  gemmF32Fallback(x, 0, m, 1, W, 0, n, 1, yExpected, 0, k, m, n);
  before = gemmSkipStats.products;
  skipping(x, 0, m, 1, W, 0, n, 1, y, 0, k, m, n);
  t.equal(gemmSkipStats.products, before, 'x @ W: dense');
  t.equal(firstDifference(y, yExpected), -1, 'x @ W: same bits as the JS fallback');
  release(W, y);

  // No blank steps: the dense kernel.
  const dense = alloc(k * m, true);
  for (let i = 0; i < dense.length; i++) dense[i] = next() + 0.01;
  before = gemmSkipStats.products;
  skipping(dense, 0, 1, m, g, 0, n, 1, c, 0, m, k, n);
  t.equal(gemmSkipStats.products, before, 'dense A: dense kernel');
  release(x, g, c, dense);
});

t.test("a sum that cancels to zero keeps the dense order's sign", { skip: !simd && 'no SIMD' }, async (t) => {
  const skipping = createWasmGemm({ threads: 1, skipMinWork: 0 })!;
  // m = 50 (ten panels), k = 4: steps 1 and 3 are blank in every panel (skipped: -0 * -1 = +0
  // and 0 * -1 = -0 in the dense order); steps 0 and 2 give 1.5 * -1 + 1.5 * 1 = +0.
  const [m, k, n] = [50, 4, 8];
  const x = new Float32Array(k * m);
  for (let i = 0; i < m; i++) {
    x[0 * m + i] = 1.5;
    x[1 * m + i] = -0;
    x[2 * m + i] = 1.5;
    x[3 * m + i] = 0;
  }
  const g = new Float32Array(k * n).fill(-1);
  for (let j = 0; j < n; j++) g[2 * n + j] = 1;
  const c = new Float32Array(m * n);
  const expected = new Float32Array(m * n);
  const before = gemmSkipStats.products;
  skipping(x, 0, 1, m, g, 0, n, 1, c, 0, m, k, n);
  gemmF32Fallback(x, 0, 1, m, g, 0, n, 1, expected, 0, m, k, n);
  t.equal(gemmSkipStats.products, before + 1, 'half the steps blank: skipped');
  t.equal(firstDifference(c, expected), -1);
  t.ok(
    c.every((v) => Object.is(v, 0)),
    'every sum is +0',
  );
});
