/**
 * The two-thread WebAssembly matmul (a helper worker claims chunks of C's tiles over a shared memory):
 * bit-identical to the one-thread kernel for large products in every operand layout, with rows and
 * columns that do not fill the micro-tiles, split along either axis; small products stay on one
 * thread.
 */
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { createWasmGemm, gemmThreadStats, wasmSimdAvailable } from '../../core/backend/wasm/index.js';
import { releaseResidentArray, residentArray } from '../../core/backend/wasm/kernel-cache.js';

const simd = wasmSimdAvailable();
const threadsPossible = typeof SharedArrayBuffer !== 'undefined';

t.test('two threads give the one-thread bits', { skip: (!simd || !threadsPossible) && 'no SIMD or no shared memory' }, async (t) => {
  const two = createWasmGemm({ threads: 2 });
  const one = createWasmGemm({ threads: 1 });
  // Chunks of ~4k multiply-adds: hundreds per product, so both threads claim many of them.
  const fine = createWasmGemm({ threads: 2, chunkWork: 1 << 12 });
  t.ok(two && one && fine, 'all built');
  if (!two || !one || !fine) return;
  const next = rng(11);
  const helperBefore = gemmThreadStats.helperChunks;
  // (m, k, n, A transposed, B transposed): splits along N (more column panels) and along M.
  const cases: [number, number, number, boolean, boolean][] = [
    [320, 784, 128, false, false],
    [784, 320, 129, true, false],
    [1001, 70, 90, false, true],
    [97, 600, 333, true, true],
    // n a multiple of the tile width: C in the arena is written in place but for a last partial panel.
    [1002, 300, 128, false, false],
    [784, 96, 128, true, false],
    // Few rows of A and a row-major B: in the arena, both threads read B unpacked (strided B).
    [32, 1100, 256, false, false],
    [23, 1000, 200, false, false],
  ];
  // Operands in ordinary arrays (copied in), then living in the kernels' arena (each thread packs
  // its half straight from them), as a compiled program's intermediates and parameters do.
  for (const [m, k, n, at, bt, inArena] of [...cases.map((c) => [...c, false] as const), ...cases.map((c) => [...c, true] as const)]) {
    const fill = (size: number, f: () => number): Float32Array => {
      const x = (inArena ? residentArray('float32', size) : null) ?? new Float32Array(size);
      for (let i = 0; i < size; i++) x[i] = f();
      return x as Float32Array;
    };
    const A = fill(m * k, () => next() - 0.5);
    const B = fill(k * n, () => next() * 3 - 1);
    const [ars, acs] = at ? [1, m] : [k, 1];
    const [brs, bcs] = bt ? [1, k] : [n, 1];
    const c1 = new Float32Array(m * n);
    const c2 = fill(m * n, () => NaN);
    one(A, 0, ars, acs, B, 0, brs, bcs, c1, 0, m, k, n);
    const before = gemmThreadStats.split;
    two(A, 0, ars, acs, B, 0, brs, bcs, c2, 0, m, k, n);
    t.equal(gemmThreadStats.split, before + 1, `${m}x${k}x${n} was split across threads`);
    t.ok(
      c1.every((x, i) => Object.is(x, c2[i])),
      `${m}x${k}x${n} (A${at ? '^T' : ''}, B${bt ? '^T' : ''}${inArena ? ', in the arena' : ''}) bit-identical`,
    );
    c2.fill(NaN);
    fine(A, 0, ars, acs, B, 0, brs, bcs, c2, 0, m, k, n);
    t.ok(
      c1.every((x, i) => Object.is(x, c2[i])),
      `${m}x${k}x${n} in small chunks: every tile written once, bit-identical`,
    );
    if (inArena) for (const x of [A, B, c2]) if (x.buffer instanceof SharedArrayBuffer) releaseResidentArray(x);
  }
  t.ok(gemmThreadStats.helperChunks > helperBefore, `the helper thread ran chunks (${gemmThreadStats.helperChunks - helperBefore})`);
  const before = gemmThreadStats.split;
  const small = new Float32Array(16 * 16);
  two(new Float32Array(16 * 16).fill(1), 0, 16, 1, new Float32Array(16 * 16).fill(2), 0, 16, 1, small, 0, 16, 16, 16);
  t.equal(gemmThreadStats.split, before, 'a small product stays on one thread');
  t.ok(
    small.every((x) => x === 32),
    'and is right',
  );
});
