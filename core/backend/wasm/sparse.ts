/**
 * Float32 matmul for a left operand that is mostly zeros (spike trains, relu outputs, images
 * with a blank background), as WebAssembly SIMD kernels that only visit its nonzero entries.
 *
 * Exactness: C[i, j] is still summed in float32 from +0, strictly in p order, with IEEE products
 * and sums, as the dense kernel does (core/backend/wasm/index.ts); the only difference is that
 * terms A[i, p] = 0 are skipped. Adding a zero product never changes a sum that starts at +0
 * (round-to-nearest gives -0 only for -0 + -0), unless B holds an Inf or NaN (0 * Inf = NaN), so
 * the kernels run only after B is checked finite: results are bit-identical to the dense kernel.
 *
 * Two forms, by A's layout:
 * - rows (A row-major, as x @ W): per row of A, the list of its nonzeros is built, then for each
 *   block of 8 output vectors (32 columns, kept in registers) the listed rows of B are summed in.
 * - outer (A a transposed view, as x^T @ g for a weight gradient: X = A^T is row-major): C is
 *   zeroed, then for each p, 8 vectors of B's row p stay in registers while every nonzero X[p, i]
 *   adds X[p, i] * B[p, :] into row i of C.
 * Work is proportional to the nonzeros; the caller (`sparseGemm`) estimates A's density from a
 * sample and returns false (use the dense kernel) above the break-even density of each form.
 */
import { Code, encodeModule, F32, I32, SIMD_OP, V128, type ValType } from './encoder.js';
import { wasmSimdAvailable } from './index.js';

/** Output vectors per register block (8 accumulators + B loads fit x64's xmm registers). */
const BLOCK = 8;
const PAGE = 65536;

/** Densities above which the dense kernel is faster (break-even measured here: 320x784x128 at density 0.3 took 0.73x (rows) and 0.64x (outer) of the dense kernel, 0.35x at 0.1). */
export const SPARSE_MAX_DENSITY = { rows: 0.4, outer: 0.4 };
/** Fewest multiply-adds (m * k * n) for which the sparse path is considered. */
const MIN_WORK = 1 << 18;

interface SparseExports {
  /** 1 when the `count` floats at ptr (a multiple of 4) are all finite. */
  allFinite(ptr: number, count: number): number;
  rows(aPtr: number, m: number, k: number, bPtr: number, ldb: number, nv: number, cPtr: number, list: number): void;
  outer(xPtr: number, m: number, k: number, bPtr: number, ldb: number, nv: number, cPtr: number, list: number): void;
}

const i32s = (n: number): ValType[] => new Array<ValType>(n).fill(I32);
const v128s = (n: number): ValType[] => new Array<ValType>(n).fill(V128);

function allFinite(): Code {
  // params: ptr, count; locals: end(2), acc(3 v128), d(4 v128). Inf - Inf and NaN - NaN are NaN.
  const f = new Code();
  f.get(0).get(1).i32(4).mul().add().set(2);
  f.block().loop();
  f.get(0).get(2).geU().brIf(1);
  f.get(0).v128Load(0, 0).get(0).v128Load(0, 0).simdOp(SIMD_OP.f32x4Sub).set(4);
  f.get(3).get(4).get(4).simdOp(SIMD_OP.f32x4Ne).simdOp(SIMD_OP.v128Or).set(3);
  f.get(0).i32(16).add().set(0).br(0);
  f.end().end();
  f.get(3).simdOp(SIMD_OP.v128AnyTrue).eqz();
  return f;
}

/**
 * Emits: build the list of nonzeros of one line of `len` floats at `src` (stride 4 bytes) as
 * (index * scale, value) pairs at `list`; leaves the pair count in local `nnz`.
 */
function emitNonzeroList(
  f: Code,
  src: number,
  len: number,
  scale: number,
  list: number,
  idx: number,
  nnz: number,
  val: number,
  addr: number,
): void {
  // Branch-free: every entry is written at the current end, which advances only for a nonzero
  // (a data-dependent branch mispredicts on spike trains about as often as it is taken).
  f.i32(0).set(nnz).i32(0).set(idx).get(src).set(addr);
  f.block().loop();
  f.get(idx).get(len).geU().brIf(1);
  f.get(list).get(nnz).i32(8).mul().add().get(idx).get(scale).mul().i32Store();
  f.get(list).get(nnz).i32(8).mul().add().get(addr).f32Load().tee(val).f32Store(4);
  f.get(nnz).get(val).f32Const(0).f32Ne().add().set(nnz);
  f.get(idx).i32(1).add().set(idx).get(addr).i32(4).add().set(addr).br(0);
  f.end().end();
}

function rowsKernel(): { params: ValType[]; locals: ValType[]; body: Code } {
  // params: aPtr 0, m 1, k 2, bPtr 3, ldb 4 (bytes per B row), nv 5 (vectors per row), cPtr 6, list 7
  const [A, M, K, B, LDB, NV, C, LIST] = [0, 1, 2, 3, 4, 5, 6, 7];
  // i32 locals: i 8, p 9, nnz 10, j 11, t 12, addr 13, off 14; f32 val 15; v128 splat 16, accumulators 17..
  const [I, P, NNZ, J, T, ADDR, OFF] = [8, 9, 10, 11, 12, 13, 14];
  const VAL = 15;
  const SPLAT = 16;
  const acc = (v: number) => 17 + v;
  const f = new Code();
  f.block().loop(); // rows
  f.get(I).get(M).geU().brIf(1);
  emitNonzeroList(f, A, K, LDB, LIST, P, NNZ, VAL, ADDR);
  const emitBlock = (width: number): void => {
    // Columns j .. j + width vectors: accumulators over the listed rows of B, then stored.
    for (let v = 0; v < width; v++) f.v128Zero().set(acc(v));
    f.i32(0).set(T);
    f.block().loop();
    f.get(T).get(NNZ).geU().brIf(1);
    f.get(LIST).get(T).i32(8).mul().add().tee(ADDR).i32Load().get(B).add().get(J).i32(16).mul().add().set(OFF);
    f.get(ADDR).v128Load32Splat(4).set(SPLAT);
    for (let v = 0; v < width; v++)
      f.get(acc(v))
        .get(SPLAT)
        .get(OFF)
        .v128Load(16 * v, 0)
        .f32x4Mul()
        .f32x4Add()
        .set(acc(v));
    f.get(T).i32(1).add().set(T).br(0);
    f.end().end();
    for (let v = 0; v < width; v++)
      f.get(C)
        .get(J)
        .i32(16)
        .mul()
        .add()
        .get(acc(v))
        .v128Store(16 * v, 0);
    f.get(J).i32(width).add().set(J);
  };
  f.i32(0).set(J);
  f.block().loop(); // blocks of BLOCK vectors
  f.get(J).i32(BLOCK).add().get(NV).gtU().brIf(1);
  emitBlock(BLOCK);
  f.br(0);
  f.end().end();
  f.block().loop(); // remaining vectors one at a time
  f.get(J).get(NV).geU().brIf(1);
  emitBlock(1);
  f.br(0);
  f.end().end();
  f.get(A).get(K).i32(4).mul().add().set(A);
  f.get(C).get(NV).i32(16).mul().add().set(C);
  f.get(I).i32(1).add().set(I).br(0);
  f.end().end();
  return { params: i32s(8), locals: [...i32s(7), F32, ...v128s(1 + BLOCK)], body: f };
}

function outerKernel(): { params: ValType[]; locals: ValType[]; body: Code } {
  // params: xPtr 0 (k rows of m), m 1, k 2, bPtr 3, ldb 4, nv 5, cPtr 6 (zeroed, rows nv*16 bytes), list 7
  const [X, M, K, B, LDB, NV, C, LIST] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [P, I, NNZ, J, T, ADDR, CROW, LDC] = [8, 9, 10, 11, 12, 13, 14, 15];
  const VAL = 16;
  const SPLAT = 17;
  const bv = (v: number) => 18 + v;
  const f = new Code();
  f.get(NV).i32(16).mul().set(LDC);
  f.block().loop(); // p over rows of X
  f.get(P).get(K).geU().brIf(1);
  emitNonzeroList(f, X, M, LDC, LIST, I, NNZ, VAL, ADDR);
  const emitBlock = (width: number): void => {
    for (let v = 0; v < width; v++)
      f.get(B)
        .get(J)
        .i32(16)
        .mul()
        .add()
        .v128Load(16 * v, 0)
        .set(bv(v));
    f.i32(0).set(T);
    f.block().loop();
    f.get(T).get(NNZ).geU().brIf(1);
    f.get(LIST).get(T).i32(8).mul().add().tee(ADDR).i32Load().get(C).add().get(J).i32(16).mul().add().set(CROW);
    f.get(ADDR).v128Load32Splat(4).set(SPLAT);
    for (let v = 0; v < width; v++)
      f.get(CROW)
        .get(CROW)
        .v128Load(16 * v, 0)
        .get(SPLAT)
        .get(bv(v))
        .f32x4Mul()
        .f32x4Add()
        .v128Store(16 * v, 0);
    f.get(T).i32(1).add().set(T).br(0);
    f.end().end();
    f.get(J).i32(width).add().set(J);
  };
  f.get(NNZ).if();
  f.i32(0).set(J);
  f.block().loop();
  f.get(J).i32(BLOCK).add().get(NV).gtU().brIf(1);
  emitBlock(BLOCK);
  f.br(0);
  f.end().end();
  f.block().loop();
  f.get(J).get(NV).geU().brIf(1);
  emitBlock(1);
  f.br(0);
  f.end().end();
  f.end();
  f.get(X).get(M).i32(4).mul().add().set(X);
  f.get(B).get(LDB).add().set(B);
  f.get(P).i32(1).add().set(P).br(0);
  f.end().end();
  return { params: i32s(8), locals: [...i32s(8), F32, ...v128s(1 + BLOCK)], body: f };
}

let wasm: (SparseExports & { memory: WebAssembly.Memory }) | null | undefined;
let heap = new Float32Array(0);

function instance(): (SparseExports & { memory: WebAssembly.Memory }) | null {
  if (wasm !== undefined) return wasm;
  if (!wasmSimdAvailable()) return (wasm = null);
  try {
    const r = rowsKernel();
    const o = outerKernel();
    const bytes = encodeModule(
      [
        { name: 'allFinite', params: i32s(2), results: [I32], locals: [I32, V128, V128], body: allFinite() },
        { name: 'rows', params: r.params, results: [], locals: r.locals, body: r.body },
        { name: 'outer', params: o.params, results: [], locals: o.locals, body: o.body },
      ],
      16,
    );
    wasm = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as SparseExports & { memory: WebAssembly.Memory };
  } catch {
    wasm = null;
  }
  return wasm;
}

function reserve(memory: WebAssembly.Memory, bytes: number): boolean {
  const have = memory.buffer.byteLength;
  if (bytes > have) {
    try {
      memory.grow(Math.max(Math.ceil(bytes / PAGE) - have / PAGE, Math.ceil(have / PAGE / 2)));
    } catch {
      return false;
    }
  }
  if (heap.buffer !== memory.buffer) heap = new Float32Array(memory.buffer);
  return true;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Fraction of nonzeros among ~1024 entries of the strided m x k operand, spread evenly. */
function sampleDensity(A: Float32Array, off: number, rs: number, cs: number, m: number, k: number): number {
  const total = m * k;
  // A step sharing a factor with k visits only some columns of each row (k = 32, step 24: 4 of
  // the 32 examples of x^T), so the estimate would follow a few examples; a step coprime with k
  // walks all of them.
  let step = Math.max(1, Math.floor(total / 1024));
  while (gcd(step, k) > 1) step++;
  let nz = 0;
  let n = 0;
  for (let q = 0; q < total; q += step, n++) {
    const i = Math.floor(q / k);
    if (A[off + i * rs + (q - i * k) * cs] !== 0) nz++;
  }
  return nz / n;
}

export const sparseStats = { calls: 0 };
let enabled = true;
/** Turns the sparse path off or on (benchmarks and tests compare it with the dense kernel). */
export function setSparseMatmul(on: boolean): void {
  enabled = on;
}

/**
 * C (m x n, contiguous at cOffset) = A @ B with the gemm contract of core/backend/wasm/index.ts,
 * when A is sparse enough for its layout and B is finite; returns false (C untouched) otherwise.
 */
export function sparseGemm(
  A: Float32Array,
  aOffset: number,
  aRowStride: number,
  aColStride: number,
  B: Float32Array,
  bOffset: number,
  bRowStride: number,
  bColStride: number,
  C: Float32Array,
  cOffset: number,
  m: number,
  k: number,
  n: number,
): boolean {
  if (!enabled || m * k * n < MIN_WORK || bColStride !== 1) return false;
  const form = aColStride === 1 ? 'rows' : aRowStride === 1 ? 'outer' : null;
  if (form === null) return false;
  if (sampleDensity(A, aOffset, aRowStride, aColStride, m, k) > SPARSE_MAX_DENSITY[form]) return false;
  const w = instance();
  if (w === null) return false;
  const nv = Math.ceil(n / 4);
  const ldb = nv * 4;
  const aFloats = Math.ceil((m * k) / 4) * 4;
  const aBase = 0;
  const bBase = aBase + aFloats;
  const cBase = bBase + k * ldb;
  const listBase = cBase + m * ldb;
  const end = listBase + 2 * Math.max(m, k) + 16;
  if (end * 4 > 0xffff0000 || !reserve(w.memory, end * 4)) return false;
  const h = heap;
  // B, rows padded with zeros to whole vectors; checked finite first (see the module comment).
  if (ldb === n && bRowStride === n) h.set(B.subarray(bOffset, bOffset + k * n), bBase);
  else {
    for (let p = 0; p < k; p++) {
      h.set(B.subarray(bOffset + p * bRowStride, bOffset + p * bRowStride + n), bBase + p * ldb);
      if (ldb !== n) h.fill(0, bBase + p * ldb + n, bBase + (p + 1) * ldb);
    }
  }
  if (w.allFinite(bBase * 4, k * ldb) !== 1) return false;
  if (form === 'rows') {
    // A's rows, contiguous.
    if (aRowStride === k) h.set(A.subarray(aOffset, aOffset + m * k), aBase);
    else for (let i = 0; i < m; i++) h.set(A.subarray(aOffset + i * aRowStride, aOffset + i * aRowStride + k), aBase + i * k);
    w.rows(aBase * 4, m, k, bBase * 4, ldb * 4, nv, cBase * 4, listBase * 4);
  } else {
    // X = A^T: k rows of m, contiguous.
    if (aColStride === m) h.set(A.subarray(aOffset, aOffset + m * k), aBase);
    else for (let p = 0; p < k; p++) h.set(A.subarray(aOffset + p * aColStride, aOffset + p * aColStride + m), aBase + p * m);
    h.fill(0, cBase, cBase + m * ldb);
    w.outer(aBase * 4, m, k, bBase * 4, ldb * 4, nv, cBase * 4, listBase * 4);
  }
  if (ldb === n) C.set(h.subarray(cBase, cBase + m * n), cOffset);
  else for (let i = 0; i < m; i++) C.set(h.subarray(cBase + i * ldb, cBase + i * ldb + n), cOffset + i * n);
  sparseStats.calls++;
  return true;
}
