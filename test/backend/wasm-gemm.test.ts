/**
 * The WebAssembly SIMD float32 matmul (core/backend/wasm) and its JS fallback: random shapes,
 * strides, offsets and layouts (row-major, transposed, broadcast, general and negative strides)
 * against a float64 reference; bit-identical results between the SIMD kernel and the fallback
 * (same float32 rounding, same summation order); IEEE Inf/NaN propagation (0 * Inf = NaN, no zero
 * skipping); the blocking paths (K, M and N blocks) through small block sizes; memory reuse and
 * growth; C written only inside its block; the feature probe and the backend it reports.
 */
import fc from 'fast-check';
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { firstBitDifference } from './fixtures/compare.js';
import {
  createWasmGemm,
  gemm,
  gemmF32,
  gemmF32Fallback,
  matmulBackendName,
  probeWasmSimd,
  setGemmBackend,
  wasmSimdAvailable,
  type GemmF32,
} from '../../core/backend/wasm/index.js';
import { releaseResidentArray, residentArray } from '../../core/backend/wasm/kernel-cache.js';

const simd = wasmSimdAvailable();

/** How A (rows x cols) or B is laid out in its buffer. */
type Layout = 'row' | 'col' | 'general' | 'bcastRow' | 'bcastCol' | 'reversed';
const LAYOUTS: Layout[] = ['row', 'col', 'general', 'bcastRow', 'bcastCol', 'reversed'];

interface Operand {
  data: Float32Array;
  offset: number;
  rowStride: number;
  colStride: number;
  rows: number;
  cols: number;
}

function makeOperand(
  rows: number,
  cols: number,
  layout: Layout,
  pad: number,
  extraOffset: number,
  next: () => number,
  special = 0,
): Operand {
  let rowStride: number;
  let colStride: number;
  switch (layout) {
    case 'row':
      [rowStride, colStride] = [cols + pad, 1];
      break;
    case 'col':
      [rowStride, colStride] = [1, rows + pad];
      break;
    case 'general':
      [rowStride, colStride] = [2 * cols + pad + 1, 2];
      break;
    case 'bcastRow':
      [rowStride, colStride] = [0, 1];
      break;
    case 'bcastCol':
      [rowStride, colStride] = [1, 0];
      break;
    case 'reversed':
      [rowStride, colStride] = [-(cols + pad), -1];
      break;
  }
  const lo = Math.min(0, (rows - 1) * rowStride) + Math.min(0, (cols - 1) * colStride);
  const hi = Math.max(0, (rows - 1) * rowStride) + Math.max(0, (cols - 1) * colStride);
  const offset = extraOffset - lo;
  const data = new Float32Array(offset + hi + 1 + pad);
  for (let i = 0; i < data.length; i++) {
    const u = next();
    if (special > 0 && u < special) {
      const kinds = [0, Infinity, -Infinity, NaN, 0];
      data[i] = kinds[Math.floor(next() * kinds.length)];
    } else {
      data[i] = (next() * 2 - 1) * (next() < 0.1 ? 100 : 1);
    }
  }
  return { data, offset, rowStride, colStride, rows, cols };
}

const at = (x: Operand, i: number, j: number) => x.data[x.offset + i * x.rowStride + j * x.colStride];

/** Float64 reference product and sum |a||b| per entry. */
function reference(a: Operand, b: Operand): { value: Float64Array; scale: Float64Array } {
  const m = a.rows;
  const k = a.cols;
  const n = b.cols;
  const value = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      let sa = 0;
      for (let p = 0; p < k; p++) {
        const x = at(a, i, p) * at(b, p, j);
        s += x;
        sa += Math.abs(x);
      }
      value[i * n + j] = s;
      scale[i * n + j] = sa;
    }
  return { value, scale };
}

/** Runs `g` into a C buffer with sentinels around the m x n block; returns the block. */
function run(g: GemmF32, a: Operand, b: Operand, cOffset: number): { c: Float32Array; sentinelsIntact: boolean } {
  const m = a.rows;
  const n = b.cols;
  const C = new Float32Array(cOffset + m * n + 3).fill(-7.25);
  g(a.data, a.offset, a.rowStride, a.colStride, b.data, b.offset, b.rowStride, b.colStride, C, cOffset, a.rows, a.cols, n);
  let sentinelsIntact = true;
  for (let i = 0; i < cOffset; i++) if (C[i] !== -7.25) sentinelsIntact = false;
  for (let i = cOffset + m * n; i < C.length; i++) if (C[i] !== -7.25) sentinelsIntact = false;
  return { c: C.slice(cOffset, cOffset + m * n), sentinelsIntact };
}

/** Index of the first entry off the reference by more than 2 sqrt(k) 2^-23 sum|a||b|, or -1. */
function firstInaccurate(c: Float32Array, ref: { value: Float64Array; scale: Float64Array }, k: number): number {
  for (let i = 0; i < c.length; i++) {
    const tol = 2 * Math.sqrt(k) * 2 ** -23 * ref.scale[i];
    if (!(Math.abs(c[i] - ref.value[i]) <= tol)) return i;
  }
  return -1;
}

const caseArb = fc.record({
  m: fc.integer({ min: 1, max: 70 }),
  k: fc.integer({ min: 1, max: 70 }),
  n: fc.integer({ min: 1, max: 70 }),
  aLayout: fc.constantFrom(...LAYOUTS),
  bLayout: fc.constantFrom(...LAYOUTS),
  aPad: fc.integer({ min: 0, max: 3 }),
  bPad: fc.integer({ min: 0, max: 3 }),
  aOffset: fc.integer({ min: 0, max: 5 }),
  bOffset: fc.integer({ min: 0, max: 5 }),
  cOffset: fc.integer({ min: 0, max: 5 }),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});
type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

function operands(c: Case, special = 0): [Operand, Operand] {
  const next = rng(c.seed);
  return [
    makeOperand(c.m, c.k, c.aLayout, c.aPad, c.aOffset, next, special),
    makeOperand(c.k, c.n, c.bLayout, c.bPad, c.bOffset, next, special),
  ];
}

/** Kernels under test: the default, other micro-tiles (incl. unrolled), and tiny blocks (K, M, N blocking on small shapes). */
const variants: [string, GemmF32 | null][] = simd
  ? [
      ['gemmF32', gemmF32],
      ['2x16 kc7 mc6 nc32', createWasmGemm({ mr: 2, nr: 16, unroll: 1, kcMax: 7, mc: 6, nc: 32 })],
      ['4x8 unroll 3 kc16 mc9 nc8', createWasmGemm({ mr: 4, nr: 8, unroll: 3, kcMax: 16, mc: 9, nc: 8 })],
      ['5x8 kc5 mc10 nc16', createWasmGemm({ mr: 5, nr: 8, kcMax: 5, mc: 10, nc: 16 })],
      ['3x4 unroll 2', createWasmGemm({ mr: 3, nr: 4, unroll: 2 })],
    ]
  : [];

t.test('probe and backend selection', async (t) => {
  t.equal(typeof simd, 'boolean');
  t.equal(probeWasmSimd(), simd, 'cached answer matches a fresh probe');
  t.equal(probeWasmSimd(null), false, 'no WebAssembly: no SIMD');
  t.equal(probeWasmSimd({ validate: () => false }), false, 'an engine that rejects the SIMD module');
  t.equal(
    probeWasmSimd({
      validate: () => {
        throw new Error('no');
      },
    }),
    false,
    'a throwing validate',
  );
  // Node >= 16.4 ships 128-bit SIMD; this suite targets Node 20.
  t.ok(simd, 'Node 20 validates SIMD modules');
  t.equal(matmulBackendName(), simd ? 'wasm-simd' : 'js');
  setGemmBackend('js');
  t.equal(matmulBackendName(), 'js', 'forced js');
  setGemmBackend('auto');
  t.equal(matmulBackendName(), simd ? 'wasm-simd' : 'js');
  for (const [name, g] of variants) t.ok(g, `${name} builds`);
});

t.test('without WebAssembly: the probe says no, gemm runs the fallback, gemmF32 throws', async (t) => {
  // A fresh instance of the module (query string) that probes while WebAssembly is gone.
  const g = globalThis as { WebAssembly?: typeof WebAssembly };
  const saved = g.WebAssembly;
  delete g.WebAssembly;
  try {
    const specifier = '../../core/backend/wasm/index.js?no-webassembly';
    const w = (await import(specifier)) as typeof import('../../core/backend/wasm/index.js');
    t.equal(w.wasmSimdAvailable(), false);
    t.equal(w.matmulBackendName(), 'js');
    t.equal(w.createWasmGemm(), null);
    const C = new Float32Array(4);
    w.gemm(new Float32Array([1, 2, 3, 4]), 0, 2, 1, new Float32Array([5, 6, 7, 8]), 0, 2, 1, C, 0, 2, 2, 2);
    t.same(Array.from(C), [19, 22, 43, 50]);
    t.throws(() => w.gemmF32(new Float32Array(1), 0, 1, 1, new Float32Array(1), 0, 1, 1, C, 0, 1, 1, 1), /not available/);
  } finally {
    g.WebAssembly = saved;
  }
});

t.test('random shapes, strides, offsets and layouts against a float64 reference; SIMD == fallback bit for bit', async (t) => {
  let runs = 0;
  fc.assert(
    fc.property(caseArb, (c) => {
      const [a, b] = operands(c);
      const ref = reference(a, b);
      const fb = run(gemmF32Fallback, a, b, c.cOffset);
      if (!fb.sentinelsIntact) throw new Error('fallback wrote outside C');
      const bad = firstInaccurate(fb.c, ref, c.k);
      if (bad >= 0) throw new Error(`fallback entry ${bad}: ${fb.c[bad]} vs ${ref.value[bad]}`);
      for (const [name, g] of variants) {
        const r = run(g!, a, b, c.cOffset);
        if (!r.sentinelsIntact) throw new Error(`${name} wrote outside C`);
        const d = firstBitDifference(r.c, fb.c);
        if (d >= 0) throw new Error(`${name} entry ${d}: ${r.c[d]} vs fallback ${fb.c[d]}`);
      }
      const viaGemm = run(gemm, a, b, c.cOffset);
      if (firstBitDifference(viaGemm.c, fb.c) >= 0) throw new Error('gemm differs');
      runs++;
    }),
    { numRuns: 200, seed: 20240611 },
  );
  t.equal(runs, 200);
});

t.test('Inf and NaN follow IEEE (0 * Inf = NaN, nothing skipped)', async (t) => {
  // Hand-made: a zero row of A against an Inf in B; a NaN in A; Inf - Inf.
  const A = new Float32Array([0, 0, 0, 1, 2, NaN, 1, 1, 0]); // 3 x 3
  const B = new Float32Array([Infinity, 1, 1, 1, 1, -Infinity, 1, 1, 1]); // 3 x 3
  const expected = [NaN, 0, NaN, NaN, NaN, NaN, Infinity, 2, -Infinity];
  const impls: [string, GemmF32][] = [
    ['fallback', gemmF32Fallback],
    ['gemm', gemm],
    ...variants.map(([name, g]) => [name, g!] as [string, GemmF32]),
  ];
  for (const [name, g] of impls) {
    const C = new Float32Array(9);
    g(A, 0, 3, 1, B, 0, 3, 1, C, 0, 3, 3, 3);
    t.same(Array.from(C), expected, name);
  }
  // Random matrices sprinkled with 0, +-Inf and NaN: NaN / Inf where the float64 reference has them.
  fc.assert(
    fc.property(caseArb, fc.constantFrom(0.02, 0.1, 0.3), (c, special) => {
      const [a, b] = operands(c, special);
      const ref = reference(a, b).value;
      for (const [name, g] of impls) {
        const r = run(g, a, b, c.cOffset).c;
        for (let i = 0; i < r.length; i++) {
          const want = ref[i];
          const ok = Number.isNaN(want) ? Number.isNaN(r[i]) : Number.isFinite(want) ? Number.isFinite(r[i]) : r[i] === want;
          if (!ok) throw new Error(`${name} entry ${i}: ${r[i]}, reference ${want}`);
        }
      }
    }),
    { numRuns: 100, seed: 7 },
  );
});

t.test('edge shapes: k = 0 gives zeros, empty m or n writes nothing', async (t) => {
  const impls: [string, GemmF32][] = [
    ['fallback', gemmF32Fallback],
    ['gemm', gemm],
    ...variants.map(([name, g]) => [name, g!] as [string, GemmF32]),
  ];
  for (const [name, g] of impls) {
    const C = new Float32Array(8).fill(5);
    g(new Float32Array(0), 0, 0, 1, new Float32Array(0), 0, 3, 1, C, 1, 2, 0, 3);
    t.same(Array.from(C), [5, 0, 0, 0, 0, 0, 0, 5], `${name} k = 0`);
    const D = new Float32Array(4).fill(5);
    g(new Float32Array(4), 0, 2, 1, new Float32Array(4), 0, 2, 1, D, 0, 0, 2, 2);
    g(new Float32Array(4), 0, 2, 1, new Float32Array(4), 0, 0, 1, D, 0, 2, 2, 0);
    t.same(Array.from(D), [5, 5, 5, 5], `${name} m = 0, n = 0`);
  }
});

t.test('C may share its buffer with A and B', async (t) => {
  const impls: [string, GemmF32][] = [
    ['fallback', gemmF32Fallback],
    ['gemm', gemm],
    ...variants.map(([name, g]) => [name, g!] as [string, GemmF32]),
  ];
  const next = rng(3);
  const m = 9;
  const k = 11;
  const n = 13;
  for (const [name, g] of impls) {
    const buf = new Float32Array(m * k + k * n + 7).map(() => next() - 0.5);
    const a: Operand = { data: buf.slice(), offset: 0, rowStride: k, colStride: 1, rows: m, cols: k };
    const b: Operand = { data: buf.slice(), offset: m * k, rowStride: n, colStride: 1, rows: k, cols: n };
    const want = run(gemmF32Fallback, a, b, 0).c;
    // C overwrites the start of the buffer holding both A and B.
    g(buf, 0, k, 1, buf, m * k, n, 1, buf, 2, m, k, n);
    t.equal(firstBitDifference(buf.slice(2, 2 + m * n), want), -1, name);
  }
});

t.test('larger shapes: several K, M and N blocks, memory growth and reuse', { skip: !simd && 'no SIMD' }, async (t) => {
  const next = rng(11);
  const shapes: [number, number, number, Layout, Layout][] = [
    [300, 600, 260, 'row', 'row'],
    [7, 3, 5, 'row', 'col'], // small after large: the grown memory is reused
    [261, 257, 300, 'col', 'col'],
    [1, 1000, 517, 'row', 'row'],
  ];
  for (const [m, k, n, al, bl] of shapes) {
    const a = makeOperand(m, k, al, 1, 2, next);
    const b = makeOperand(k, n, bl, 2, 1, next);
    const fb = run(gemmF32Fallback, a, b, 3).c;
    const w = run(gemmF32, a, b, 3);
    t.ok(w.sentinelsIntact, `${m}x${k}x${n} writes only C`);
    t.equal(firstBitDifference(w.c, fb), -1, `${m}x${k}x${n} (${al}, ${bl}) matches the fallback bit for bit`);
    if (m * n <= 2000) t.equal(firstInaccurate(w.c, reference(a, b), k), -1, `${m}x${k}x${n} within tolerance of float64`);
  }
});

t.test(
  'operands in the arena: B read unpacked (few rows of A), A and C in place; the bits of the copying path',
  { skip: !simd && 'no SIMD' },
  async (t) => {
    const g = createWasmGemm({ threads: 1 });
    t.ok(g, 'built');
    if (!g) return;
    const next = rng(77);
    // m up to 8 micro-panels (B unpacked) and past it; n off and on the 8-column tile; k past the
    // 256-deep K block (partial sums accumulate in C); B a view with row stride > n.
    const cases: [number, number, number, number][] = [
      [32, 784, 128, 128],
      [3, 600, 10, 10],
      [40, 300, 29, 31],
      [41, 50, 130, 130],
      [7, 257, 16, 20],
    ];
    for (const [m, k, n, ldb] of cases) {
      const A = Float32Array.from({ length: m * k }, () => next() * 2 - 1);
      const B = Float32Array.from({ length: k * ldb }, () => next() * 2 - 1);
      const want = new Float32Array(m * n);
      g(A, 0, k, 1, B, 0, ldb, 1, want, 0, m, k, n);
      const arena = (src: Float32Array): Float32Array => {
        const x = residentArray('float32', src.length) as Float32Array;
        x.set(src);
        return x;
      };
      const rA = arena(A);
      const rB = arena(B);
      const rC = residentArray('float32', m * n) as Float32Array;
      rC.fill(NaN);
      g(rA, 0, k, 1, rB, 0, ldb, 1, rC, 0, m, k, n);
      t.equal(firstBitDifference(rC, want), -1, `${m}x${k}x${n} (B rows ${ldb} apart), all in the arena`);
      const heapC = new Float32Array(m * n);
      g(A, 0, k, 1, rB, 0, ldb, 1, heapC, 0, m, k, n);
      t.equal(firstBitDifference(heapC, want), -1, `${m}x${k}x${n}, only B in the arena`);
      for (const x of [rA, rB, rC]) releaseResidentArray(x);
    }
  },
);

t.test(
  'C in the arena with rows of A not filling the last micro-panel: written in place, nothing past it, the fallback bits',
  { skip: !simd && 'no SIMD' },
  async (t) => {
    const g = createWasmGemm({ threads: 1 });
    t.ok(g, 'built');
    if (!g) return;
    const next = rng(5);
    const GUARD = 16;
    // Every remainder of m modulo the 5-row tile (and 6 for a 6-row one); n on the 8-column tile,
    // so C is written in place; A row-major (read in place) or transposed (packed), B row-major
    // (unpacked for few rows, packed for more) or transposed; k past one K block.
    for (let m = 1; m <= 13; m++) {
      for (const [k, n] of [
        [40, 16],
        [300, 24],
      ]) {
        for (const [aT, bT] of [
          [false, false],
          [true, false],
          [false, true],
          [true, true],
        ]) {
          const A = Float32Array.from({ length: m * k }, () => next() * 2 - 1);
          const B = Float32Array.from({ length: k * n }, () => next() * 2 - 1);
          const [ars, acs] = aT ? [1, m] : [k, 1];
          const [brs, bcs] = bT ? [1, k] : [n, 1];
          const want = new Float32Array(m * n);
          gemmF32Fallback(A, 0, ars, acs, B, 0, brs, bcs, want, 0, m, k, n);
          const block = residentArray('float32', m * n + 2 * GUARD) as Float32Array;
          block.fill(-7);
          g(A, 0, ars, acs, B, 0, brs, bcs, block, GUARD, m, k, n);
          const name = `${m}x${k}x${n} (A${aT ? '^T' : ''}, B${bT ? '^T' : ''})`;
          t.equal(firstBitDifference(block.subarray(GUARD, GUARD + m * n), want), -1, `${name}: the fallback's bits`);
          const guards = [...block.subarray(0, GUARD), ...block.subarray(GUARD + m * n)];
          t.ok(
            guards.every((x) => x === -7),
            `${name}: nothing written outside C`,
          );
          releaseResidentArray(block);
        }
      }
    }
  },
);
