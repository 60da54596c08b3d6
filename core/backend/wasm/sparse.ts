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
 * Both layouts of A become lists of nonzeros per output row, (byte offset of B's row p, A[i, p])
 * in p order, which one kernel (`spmm`) sums: for each block of 4 output vectors (16 columns, in
 * registers), for each row of the chunk, the listed rows of B are summed in. The block's slice of
 * B (k rows of 64 bytes) stays in L2 while every row of the chunk reads it; the previous form
 * (a row's block over all of B's rows, 4 kB apart, then the next block) read all of B from L3 for
 * every row of A, and the outer-product form read and wrote all of C for every row of X.
 * - rows (A row-major, as x @ W): the lists of a chunk of A's rows (`listRows`);
 * - columns (A a transposed view, as x^T @ g for a weight gradient: X = A^T is row-major): the
 *   lists of C's rows are X's columns, built from a chunk of X's rows (`listCols`); each further
 *   chunk of p is summed onto C's stored partial sums (float32, so the same bits as one pass).
 * The kernels work on the kernels' arena (core/backend/wasm/kernel-cache.ts): operands that live
 * there are read in place and C is written in place; others are copied. Products with enough
 * nonzeros are split across two threads by C's rows (a helper worker over the shared arena, as the
 * dense kernel's); each row is computed exactly as on one thread.
 * Work is proportional to the nonzeros; the caller (`sparseGemm`) estimates A's density from a
 * sample and returns false (use the dense kernel) above the break-even density of each form.
 */
import { Code, encodeModule, F32, I32, SIMD_OP, V128, type ValType } from './encoder.js';
import { CALL_INTS, defaultThreads, startCallThread, wasmSimdAvailable, type CallThread } from './index.js';
import { arenaAlloc, arenaF32, arenaFree, arenaImport, arenaMemory, arenaResidentCapable, residentOffset } from './kernel-cache.js';

/**
 * Output vectors per register block. V8 loads a block's B vectors before multiplying them, so 8
 * accumulators + 8 loads + the splat spilled (17 of x64's 16 xmm registers); 4 ran faster here
 * (3200x784x1000 spikes at density 0.15, one thread, best of 25: 49 ms with 8, 38 ms with 4).
 */
const BLOCK = 4;

/** Densities above which the dense kernel is faster (break-even measured here: 320x784x128 at density 0.3 took 0.73x (rows) and 0.64x (outer) of the dense kernel, 0.35x at 0.1). */
export const SPARSE_MAX_DENSITY = { rows: 0.4, outer: 0.4 };
/** Fewest multiply-adds (m * k * n) for which the sparse path is considered. */
const MIN_WORK = 1 << 18;
/** Fewest estimated nonzero multiply-adds (nonzeros of A times n) for which a product is split across threads. */
const THREAD_MIN_WORK = 1 << 21;
/** Rows of A whose lists are built at once (x @ W): 128 lists of up to k entries stay in L2 with a block of B. */
const ROW_CHUNK = 128;
/** Rows of X per pass (x^T @ g): the lists of C's rows over 512 p stay in L2 with a block of g's rows. */
const P_CHUNK = 512;

/** Exports, in the order the helper thread indexes them (OP_*). */
const NAMES = ['listRows', 'listCols', 'spmm'] as const;
const OP_LIST_ROWS = 0;
const OP_LIST_COLS = 1;
const OP_SPMM = 2;

interface SparseExports {
  /** 1 when rows x n floats (rows ldb bytes apart from ptr) are all finite. */
  allFinite(ptr: number, rows: number, n: number, ldb: number): number;
  listRows(aPtr: number, lda: number, rows: number, k: number, ldb: number, list: number, cap8: number, counts: number): void;
  listCols(
    xPtr: number,
    ldx: number,
    pRows: number,
    cols: number,
    ldb: number,
    pOff: number,
    list: number,
    cap8: number,
    counts: number,
  ): void;
  spmm(
    list: number,
    cap8: number,
    counts: number,
    rows: number,
    bPtr: number,
    nv: number,
    cPtr: number,
    ldc: number,
    accumulate: number,
  ): void;
}

const i32s = (n: number): ValType[] => new Array<ValType>(n).fill(I32);
const v128s = (n: number): ValType[] => new Array<ValType>(n).fill(V128);

function allFinite(): Code {
  // params: ptr 0, rows 1, n 2, ldb 3; locals: r 4, addr 5, end4 6, end 7, acc 8 (v128), d 9 (v128).
  // Inf - Inf and NaN - NaN are NaN; the tail of a row is checked one float (splat) at a time.
  const [PTR, ROWS, N, LDB, R, ADDR, END4, END, ACC, D] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const f = new Code();
  const check = (): void => {
    f.get(D).get(D).simdOp(SIMD_OP.f32x4Sub).set(D);
    f.get(ACC).get(D).get(D).simdOp(SIMD_OP.f32x4Ne).simdOp(SIMD_OP.v128Or).set(ACC);
  };
  f.block().loop();
  f.get(R).get(ROWS).geU().brIf(1);
  f.get(PTR).set(ADDR);
  f.get(PTR).get(N).i32(-4).and().i32(4).mul().add().set(END4);
  f.get(PTR).get(N).i32(4).mul().add().set(END);
  f.block().loop();
  f.get(ADDR).get(END4).geU().brIf(1);
  f.get(ADDR).v128Load(0, 0).set(D);
  check();
  f.get(ADDR).i32(16).add().set(ADDR).br(0);
  f.end().end();
  f.block().loop();
  f.get(ADDR).get(END).geU().brIf(1);
  f.get(ADDR).v128Load32Splat(0).set(D);
  check();
  f.get(ADDR).i32(4).add().set(ADDR).br(0);
  f.end().end();
  f.get(PTR).get(LDB).add().set(PTR);
  f.get(R).i32(1).add().set(R).br(0);
  f.end().end();
  f.get(ACC).simdOp(SIMD_OP.v128AnyTrue).eqz();
  return f;
}

/**
 * Emits: v = the 4 floats at `addr`; other |= any lane nonzero and not 1; leaves on the stack
 * whether any lane is nonzero (NaN counts as nonzero, -0 as zero).
 */
function emitGroupTest(f: Code, addr: number, v: number, other: number): void {
  f.get(addr).v128Load(0, 0).set(v);
  f.get(other).get(v).v128Zero().simdOp(SIMD_OP.f32x4Ne).get(v).f32x4Const(1).simdOp(SIMD_OP.f32x4Ne).simdOp(SIMD_OP.v128And);
  f.simdOp(SIMD_OP.v128AnyTrue).or().set(other);
  f.get(v).v128Zero().simdOp(SIMD_OP.f32x4Ne).simdOp(SIMD_OP.v128AnyTrue);
}

/** Emits: other |= val is nonzero and not 1 (one float of a row's or column's tail). */
function emitScalarTest(f: Code, val: number, other: number): void {
  f.get(other).get(val).f32Const(0).f32Ne().get(val).f32Const(1).f32Ne().and().or().set(other);
}

/**
 * listRows: for each of `rows` rows of A (lda bytes apart), the list of its nonzeros as
 * (p * ldb, A[i, p]) pairs at list + r * cap8, their count at counts + 4r. Four entries are tested
 * at once and a group of zeros skipped (the background of an image is zero in every step); within
 * a group every entry is written at the current end, which advances only for a nonzero (a
 * data-dependent branch mispredicts on spike trains about as often as it is taken). At
 * counts + 4 rows: 1 when every listed value is 1 (spikes), else 0.
 */
function listRowsKernel(): { params: ValType[]; locals: ValType[]; body: Code } {
  const [APTR, LDA, ROWS, K, LDB, LIST, CAP8, COUNTS] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [R, P, NNZ, ADDR, OFF, END4, VAL, OTHER, V] = [8, 9, 10, 11, 12, 13, 14, 15, 16];
  const f = new Code();
  const entry = (): void => {
    // list[nnz] = (off, *addr); nnz += *addr != 0; off += ldb; addr += 4
    f.get(LIST).get(NNZ).i32(8).mul().add().get(OFF).i32Store();
    f.get(LIST).get(NNZ).i32(8).mul().add().get(ADDR).f32Load().tee(VAL).f32Store(4);
    f.get(NNZ).get(VAL).f32Const(0).f32Ne().add().set(NNZ);
    f.get(OFF).get(LDB).add().set(OFF).get(ADDR).i32(4).add().set(ADDR);
  };
  f.block().loop(); // rows
  f.get(R).get(ROWS).geU().brIf(1);
  f.i32(0).set(NNZ).i32(0).set(OFF).get(APTR).set(ADDR);
  f.get(APTR).get(K).i32(-4).and().i32(4).mul().add().set(END4);
  f.block().loop(); // groups of four
  f.get(ADDR).get(END4).geU().brIf(1);
  emitGroupTest(f, ADDR, V, OTHER);
  f.if();
  for (let q = 0; q < 4; q++) entry();
  f.else();
  f.get(OFF).get(LDB).i32(4).mul().add().set(OFF).get(ADDR).i32(16).add().set(ADDR);
  f.end();
  f.br(0);
  f.end().end();
  f.i32(0).set(P);
  f.block().loop(); // the last k % 4
  f.get(P).get(K).i32(3).and().geU().brIf(1);
  entry();
  emitScalarTest(f, VAL, OTHER);
  f.get(P).i32(1).add().set(P).br(0);
  f.end().end();
  f.get(COUNTS).get(R).i32(4).mul().add().get(NNZ).i32Store();
  f.get(APTR).get(LDA).add().set(APTR);
  f.get(LIST).get(CAP8).add().set(LIST);
  f.get(R).i32(1).add().set(R).br(0);
  f.end().end();
  f.get(COUNTS).get(ROWS).i32(4).mul().add().get(OTHER).eqz().i32Store();
  return { params: i32s(8), locals: [...i32s(6), F32, I32, V128], body: f };
}

/**
 * listCols: for `pRows` rows of X (ldx bytes apart from xPtr) and their first `cols` columns, the
 * list of each column's nonzeros as (pOff + p * ldb, X[p, c]) pairs at list + c * cap8 in p
 * order (cap8 >= 8 pRows), their count at counts + 4c. Groups of four zeros are skipped;
 * otherwise every entry is written at its column's end, which advances only for a nonzero. At
 * counts + 4 cols: 1 when every listed value is 1 (spikes), else 0.
 */
function listColsKernel(): { params: ValType[]; locals: ValType[]; body: Code } {
  const [XPTR, LDX, PROWS, COLS, LDB, POFF, LIST, CAP8, COUNTS] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [P, C, ADDR, CNT, DST, N, END4, VAL, OTHER, V] = [9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
  const f = new Code();
  // counts = 0
  f.block().loop();
  f.get(C).get(COLS).geU().brIf(1);
  f.get(COUNTS).get(C).i32(4).mul().add().i32(0).i32Store();
  f.get(C).i32(1).add().set(C).br(0);
  f.end().end();
  const entry = (): void => {
    // n = *cnt; list[c][n] = (pOff, *addr); *cnt = n + (*addr != 0); next column
    f.get(CNT).i32Load().set(N);
    f.get(DST).get(N).i32(8).mul().add().get(POFF).i32Store();
    f.get(DST).get(N).i32(8).mul().add().get(ADDR).f32Load().tee(VAL).f32Store(4);
    f.get(CNT).get(N).get(VAL).f32Const(0).f32Ne().add().i32Store();
    f.get(ADDR).i32(4).add().set(ADDR).get(CNT).i32(4).add().set(CNT).get(DST).get(CAP8).add().set(DST);
  };
  f.block().loop(); // rows of X
  f.get(P).get(PROWS).geU().brIf(1);
  f.get(XPTR).set(ADDR).get(COUNTS).set(CNT).get(LIST).set(DST);
  f.get(XPTR).get(COLS).i32(-4).and().i32(4).mul().add().set(END4);
  f.block().loop(); // groups of four columns
  f.get(ADDR).get(END4).geU().brIf(1);
  emitGroupTest(f, ADDR, V, OTHER);
  f.if();
  for (let q = 0; q < 4; q++) entry();
  f.else();
  f.get(ADDR).i32(16).add().set(ADDR).get(CNT).i32(16).add().set(CNT).get(DST).get(CAP8).i32(4).mul().add().set(DST);
  f.end();
  f.br(0);
  f.end().end();
  f.i32(0).set(C);
  f.block().loop(); // the last cols % 4
  f.get(C).get(COLS).i32(3).and().geU().brIf(1);
  entry();
  emitScalarTest(f, VAL, OTHER);
  f.get(C).i32(1).add().set(C).br(0);
  f.end().end();
  f.get(XPTR).get(LDX).add().set(XPTR);
  f.get(POFF).get(LDB).add().set(POFF);
  f.get(P).i32(1).add().set(P).br(0);
  f.end().end();
  f.get(COUNTS).get(COLS).i32(4).mul().add().get(OTHER).eqz().i32Store();
  return { params: i32s(9), locals: [...i32s(7), F32, I32, V128], body: f };
}

/**
 * spmm: C's `rows` rows (ldc bytes apart) over nv vectors = the sum of the listed rows of B (each
 * entry's offset from bPtr) times the entry's value, in list order; with `accumulate`, onto C's
 * stored values. Blocks of BLOCK output vectors outermost: a block's slice of B stays in L2 while
 * every row reads it. When the list builder found every value 1 (the flag after the counts), the
 * rows of B are added without the multiply (x * 1 = x exactly), two entries per iteration.
 */
function spmmKernel(): { params: ValType[]; locals: ValType[]; body: Code } {
  const [LIST, CAP8, COUNTS, ROWS, BPTR, NV, CPTR, LDC, ACCUM] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [J, R, E, END, LROW, CROW, OFF, BJ, OFF2] = [9, 10, 11, 12, 13, 14, 15, 16, 17];
  const SPLAT = 18;
  const acc = (v: number) => 19 + v;
  const f = new Code();
  const emitBlock = (width: number, ones: boolean): void => {
    f.i32(0).set(R).get(LIST).set(LROW).get(CPTR).get(J).i32(16).mul().add().set(CROW);
    f.get(BPTR).get(J).i32(16).mul().add().set(BJ);
    f.block().loop(); // rows
    f.get(R).get(ROWS).geU().brIf(1);
    f.get(ACCUM).if();
    for (let v = 0; v < width; v++)
      f.get(CROW)
        .v128Load(16 * v, 0)
        .set(acc(v));
    f.else();
    for (let v = 0; v < width; v++) f.v128Zero().set(acc(v));
    f.end();
    f.get(LROW).set(E);
    f.get(LROW).get(COUNTS).get(R).i32(4).mul().add().i32Load().i32(8).mul().add().set(END);
    if (ones) {
      f.block().loop(); // pairs of entries
      f.get(E).i32(16).add().get(END).gtU().brIf(1);
      f.get(E).i32Load().get(BJ).add().set(OFF);
      f.get(E).i32Load(8).get(BJ).add().set(OFF2);
      for (let v = 0; v < width; v++)
        f.get(acc(v))
          .get(OFF)
          .v128Load(16 * v, 0)
          .f32x4Add()
          .get(OFF2)
          .v128Load(16 * v, 0)
          .f32x4Add()
          .set(acc(v));
      f.get(E).i32(16).add().set(E).br(0);
      f.end().end();
      f.get(E).get(END).ltU().if(); // a last odd entry
      f.get(E).i32Load().get(BJ).add().set(OFF);
      for (let v = 0; v < width; v++)
        f.get(acc(v))
          .get(OFF)
          .v128Load(16 * v, 0)
          .f32x4Add()
          .set(acc(v));
      f.end();
    } else {
      f.block().loop(); // the row's entries
      f.get(E).get(END).geU().brIf(1);
      f.get(E).i32Load().get(BJ).add().set(OFF);
      f.get(E).v128Load32Splat(4).set(SPLAT);
      for (let v = 0; v < width; v++)
        f.get(acc(v))
          .get(SPLAT)
          .get(OFF)
          .v128Load(16 * v, 0)
          .f32x4Mul()
          .f32x4Add()
          .set(acc(v));
      f.get(E).i32(8).add().set(E).br(0);
      f.end().end();
    }
    for (let v = 0; v < width; v++)
      f.get(CROW)
        .get(acc(v))
        .v128Store(16 * v, 0);
    f.get(LROW).get(CAP8).add().set(LROW).get(CROW).get(LDC).add().set(CROW);
    f.get(R).i32(1).add().set(R).br(0);
    f.end().end();
    f.get(J).i32(width).add().set(J);
  };
  const emitBlocks = (ones: boolean): void => {
    f.i32(0).set(J);
    f.block().loop(); // blocks of BLOCK vectors
    f.get(J).i32(BLOCK).add().get(NV).gtU().brIf(1);
    emitBlock(BLOCK, ones);
    f.br(0);
    f.end().end();
    // The last nv % BLOCK vectors: one block each of BLOCK / 2, BLOCK / 4, ..., 1 as needed.
    for (let width = BLOCK >> 1; width >= 1; width >>= 1) {
      f.get(J).i32(width).add().get(NV).gtU().eqz().if();
      emitBlock(width, ones);
      f.end();
    }
  };
  f.get(COUNTS).get(ROWS).i32(4).mul().add().i32Load().if();
  emitBlocks(true);
  f.else();
  emitBlocks(false);
  f.end();
  return { params: i32s(9), locals: [...i32s(9), ...v128s(1 + BLOCK)], body: f };
}

interface Sparse {
  module: WebAssembly.Module;
  exports: SparseExports;
  /** The helper thread: started with the first product large enough to split; null when there is none. */
  helper: CallThread | null;
  helperPending: boolean;
}

let wasm: Sparse | null | undefined;

function instance(): Sparse | null {
  if (wasm !== undefined) return wasm;
  if (!wasmSimdAvailable()) return (wasm = null);
  try {
    const r = listRowsKernel();
    const c = listColsKernel();
    const s = spmmKernel();
    const bytes = encodeModule(
      [
        { name: 'listRows', params: r.params, results: [], locals: r.locals, body: r.body },
        { name: 'listCols', params: c.params, results: [], locals: c.locals, body: c.body },
        { name: 'spmm', params: s.params, results: [], locals: s.locals, body: s.body },
        { name: 'allFinite', params: i32s(4), results: [I32], locals: [...i32s(4), V128, V128], body: allFinite() },
      ],
      16,
      arenaImport(),
    );
    const module = new WebAssembly.Module(bytes);
    const exports = new WebAssembly.Instance(module, { env: { memory: arenaMemory() } }).exports as unknown as SparseExports;
    wasm = { module, exports, helper: null, helperPending: defaultThreads() > 1 && arenaResidentCapable() };
  } catch {
    wasm = null;
  }
  return wasm;
}

function gcd(a: number, b: number): number {
  while (b !== 0) {
    const r = a % b;
    a = b;
    b = r;
  }
  return a;
}

/**
 * Entries sampled for the density estimate. Each is a cache miss more often than not (a transposed
 * operand read across its rows): 1024 cost ~14 us a product, a few percent of an M1 training
 * step; 256 estimate the density within about 3 points, enough to choose a kernel (both give the
 * same bits).
 */
const DENSITY_SAMPLES = 256;

/** Fraction of nonzeros among ~DENSITY_SAMPLES entries of the strided m x k operand, spread evenly. */
function sampleDensity(A: Float32Array, off: number, rs: number, cs: number, m: number, k: number): number {
  const total = m * k;
  // A step sharing a factor with k visits only some columns of each row (k = 32, step 24: 4 of
  // the 32 examples of x^T), so the estimate would follow a few examples; a step coprime with k
  // walks all of them.
  let step = Math.max(1, Math.floor(total / DENSITY_SAMPLES));
  while (gcd(step, k) > 1) step++;
  // The same samples as q = 0, step, 2 step, ... (row q / k, column q % k), walked without a
  // division per sample: this runs before every product of a training step.
  const di = Math.floor(step / k);
  const dj = step - di * k;
  let nz = 0;
  let n = 0;
  for (let i = 0, j = 0; i < m; n++) {
    if (A[off + i * rs + j * cs] !== 0) nz++;
    i += di;
    j += dj;
    if (j >= k) {
      j -= k;
      i++;
    }
  }
  return nz / n;
}

export const sparseStats = { calls: 0, split: 0 };
let enabled = true;
/** Turns the sparse path off or on (benchmarks and tests compare it with the dense kernel). */
export function setSparseMatmul(on: boolean): void {
  enabled = on;
}

const align64 = (bytes: number): number => Math.ceil(bytes / 64) * 64;

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
  if (!enabled || m * k * n < MIN_WORK || bColStride !== 1 || bRowStride < 0) return false;
  const form = aColStride === 1 && aRowStride >= 0 ? 'rows' : aRowStride === 1 && aColStride >= 0 ? 'outer' : null;
  if (form === null) return false;
  const density = sampleDensity(A, aOffset, aRowStride, aColStride, m, k);
  if (density > SPARSE_MAX_DENSITY[form]) return false;
  const sp = instance();
  if (sp === null) return false;
  const w = sp.exports;
  const memBytes = (): number => arenaMemory().buffer.byteLength;
  const nv = Math.ceil(n / 4);
  // Operands in the arena are read in place when every vector read stays inside the memory (a
  // row's last vector may read up to 12 bytes past it: arena blocks have 64 spare bytes).
  let bSrc = residentOffset(B, bOffset);
  if (bSrc >= 0 && bSrc + 4 * ((k - 1) * bRowStride + 4 * nv) > memBytes()) bSrc = -1;
  // X: A's rows (rows form) or A^T's rows (outer form), `lines` lines of `len` floats.
  const [lines, len, lineStride] = form === 'rows' ? [m, k, aRowStride] : [k, m, aColStride];
  let aSrc = residentOffset(A, aOffset);
  if (aSrc >= 0 && aSrc + 4 * ((lines - 1) * lineStride + len) + 16 > memBytes()) aSrc = -1;
  let cDirect = nv * 4 === n ? residentOffset(C, cOffset) : -1;
  const overlaps = (X: Float32Array): boolean =>
    X.buffer === C.buffer &&
    X.byteOffset < C.byteOffset + 4 * (cOffset + m * n) &&
    C.byteOffset + 4 * cOffset < X.byteOffset + X.byteLength;
  if (cDirect >= 0 && (overlaps(A) || overlaps(B))) cDirect = -1;

  const threaded = (sp.helper !== null || sp.helperPending) && density * m * k * n >= THREAD_MIN_WORK && m >= 8;
  if (threaded && sp.helperPending) {
    sp.helperPending = false;
    try {
      sp.helper = startCallThread(sp.module, arenaMemory(), NAMES);
    } catch {
      sp.helper = null;
    }
  }
  const parts = threaded && sp.helper !== null ? 2 : 1;
  // Per thread: the counts and lists of one chunk of C's rows.
  const partRows = Math.ceil(m / parts);
  const chunkRows = form === 'rows' ? Math.min(ROW_CHUNK, partRows) : partRows;
  const cap = form === 'rows' ? k : Math.min(P_CHUNK, k);
  const listBytes = align64(chunkRows * cap * 8);
  const countBytes = align64((chunkRows + 1) * 4);
  // Workspace: [B copy | A copy | C scratch | per part: counts, lists | the helper's calls].
  const bCopy = bSrc < 0 ? align64(4 * k * 4 * nv) : 0;
  const aCopy = aSrc < 0 ? align64(4 * lines * len) : 0;
  const cScratch = cDirect < 0 ? align64(4 * m * 4 * nv) : 0;
  const maxCalls = 2 * (Math.ceil(partRows / chunkRows) + Math.ceil(k / cap)) + 2;
  const callBytes = 4 * CALL_INTS * maxCalls;
  const bytes = bCopy + aCopy + cScratch + parts * (countBytes + listBytes) + callBytes;
  const ws = bytes > 0x7fff0000 ? -1 : arenaAlloc(bytes);
  if (ws < 0) return false;
  const h = arenaF32();
  let at = ws;
  const bAt = bSrc >= 0 ? bSrc : at;
  const ldb = bSrc >= 0 ? 4 * bRowStride : 16 * nv;
  if (bSrc < 0) {
    // B's rows, padded with zeros to whole vectors.
    for (let p = 0, d = at >> 2; p < k; p++, d += 4 * nv) {
      h.set(B.subarray(bOffset + p * bRowStride, bOffset + p * bRowStride + n), d);
      if (4 * nv !== n) h.fill(0, d + n, d + 4 * nv);
    }
    at += bCopy;
  }
  // B is checked finite before anything is written (see the module comment).
  if (w.allFinite(bAt, k, n, ldb) !== 1) {
    arenaFree(ws, bytes);
    return false;
  }
  const xAt = aSrc >= 0 ? aSrc : at;
  const ldx = aSrc >= 0 ? 4 * lineStride : 4 * len;
  if (aSrc < 0) {
    const step = form === 'rows' ? aRowStride : aColStride;
    if (step === len) h.set(A.subarray(aOffset, aOffset + lines * len), at >> 2);
    else for (let l = 0; l < lines; l++) h.set(A.subarray(aOffset + l * step, aOffset + l * step + len), (at >> 2) + l * len);
    at += aCopy;
  }
  const cAt = cDirect >= 0 ? cDirect : at;
  const ldc = cDirect >= 0 ? 4 * n : 16 * nv;
  at += cScratch;
  const partAt = at;
  const callsAt = partAt + parts * (countBytes + listBytes);

  // The calls of part `t` (C's rows [r0, r1)): lists of a chunk, then its sums.
  const partCalls = (t: number, emit: (op: number, args: number[]) => void): void => {
    const r0 = t * partRows;
    const r1 = Math.min(m, r0 + partRows);
    const counts = partAt + t * (countBytes + listBytes);
    const list = counts + countBytes;
    if (form === 'rows') {
      for (let c0 = r0; c0 < r1; c0 += chunkRows) {
        const rows = Math.min(chunkRows, r1 - c0);
        emit(OP_LIST_ROWS, [xAt + c0 * ldx, ldx, rows, k, ldb, list, cap * 8, counts]);
        emit(OP_SPMM, [list, cap * 8, counts, rows, bAt, nv, cAt + c0 * ldc, ldc, 0]);
      }
    } else {
      // C's rows are X's columns [r0, r1); X's rows in chunks of `cap`, each summed onto the last.
      for (let p0 = 0; p0 < k; p0 += cap) {
        const pRows = Math.min(cap, k - p0);
        emit(OP_LIST_COLS, [xAt + p0 * ldx + 4 * r0, ldx, pRows, r1 - r0, ldb, p0 * ldb, list, cap * 8, counts]);
        emit(OP_SPMM, [list, cap * 8, counts, r1 - r0, bAt, nv, cAt + r0 * ldc, ldc, p0 > 0 ? 1 : 0]);
      }
    }
  };
  const call = (op: number, a: number[]): void => {
    if (op === OP_LIST_ROWS) w.listRows(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    else if (op === OP_LIST_COLS) w.listCols(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
    else w.spmm(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
  };
  if (parts === 2 && sp.helper !== null) {
    const list = new Int32Array(arenaMemory().buffer, callsAt, CALL_INTS * maxCalls);
    let count = 0;
    partCalls(1, (op, a) => {
      list[CALL_INTS * count] = op;
      list.set(a, CALL_INTS * count + 1);
      count++;
    });
    const job = sp.helper.post(callsAt, count);
    sparseStats.split++;
    partCalls(0, call);
    // If the helper died, its part runs here (same rows, same values).
    if (!sp.helper.wait(job)) {
      sp.helper = null;
      for (let c = 0; c < count; c++) call(list[CALL_INTS * c], Array.from(list.subarray(CALL_INTS * c + 1, CALL_INTS * (c + 1))));
    }
  } else {
    for (let t = 0; t < parts; t++) partCalls(t, call);
  }
  if (cDirect < 0) {
    const c0 = cAt >> 2;
    const hh = arenaF32();
    if (4 * nv === n) C.set(hh.subarray(c0, c0 + m * n), cOffset);
    else for (let i = 0; i < m; i++) C.set(hh.subarray(c0 + i * 4 * nv, c0 + i * 4 * nv + n), cOffset + i * n);
  }
  arenaFree(ws, bytes);
  sparseStats.calls++;
  return true;
}
