/**
 * Generates the WebAssembly SIMD matmul kernel module.
 *
 * Operands in linear memory (f32, byte addresses):
 * - A: any layout with a constant byte step between rows (`aRow`) and between k steps (`aCol`):
 *   a row-major copy of A (aRow = 4 * lda, aCol = 4), or MR-row panels packed by `packCopy` from
 *   a transposed A (aRow = 4, aCol = 4 * MR). Micro-panels are `aPanel` bytes apart.
 * - B: NR-column panels; panel `jp` holds, for every p, the NR values B[p, jp*NR + c]
 *   contiguously (`packCopy` from a row-major B, `packInterleave` from a transposed B).
 * - C: row-major mPad x nPad (`ldc` bytes per row).
 * Rows of A past m and columns of B past n hold whatever the buffers held (they only reach rows
 * and columns of C that are never copied out).
 *
 * Exports:
 * - `micro(ap, aRow, aCol, bp, cp, kc, ldc, accumulate)`: the register-blocked MR x NR
 *   micro-kernel. MR * NR / 4 f32x4 accumulators live in locals (registers); per k step it loads
 *   NR / 4 vectors of B, splats MR values of A, and does MR * NR / 4 f32x4.mul + f32x4.add (no
 *   FMA in base SIMD). Accumulators start at +0, or from C when `accumulate` (the next K block),
 *   so each C[i, j] is summed strictly in p order, exactly as the JS fallback does.
 * - `block(aPtr, aRow, aCol, aPanel, bPtr, bPanel, cPtr, ldc, mPanels, nPanels, kc, accumulate)`:
 *   one K block of one M x N block: for each B micro-panel (kept in L1), the micro-kernel over
 *   all A micro-panels of the block (kept in L2).
 * - `packCopyA` / `packCopyB(src, ld, dst, lines, panels, panelBytes)`: for each of `lines` rows
 *   of a row-major source (ld bytes apart), copies consecutive W-float chunks into successive
 *   panels (W = MR for a transposed A, W = NR for a row-major B).
 * - `packInterleaveB(src, ld, dst, lines, k, panelBytes)`: source line `l` (k contiguous floats)
 *   becomes lane `l % NR` of panel `l / NR` (a transposed B).
 * - `compact(c, ldc, rowBytes, m)`: moves rows 1..m-1 of C from stride ldc to stride rowBytes.
 * - `blockRows{r}` / `blockStridedBRows{r}` for r = 1..MR-1: `block` / `blockStridedB` over panels
 *   of r rows (the last panel of A when MR does not divide m), writing only those r rows of C.
 * - `packSkipA`, `blockSkip`, `blockSkipRows{r}`: a transposed A's panels without the k steps
 *   where all their rows are zero, and the block loop over them (a weight gradient x^T @ g, whose
 *   images leave a third of the steps of a 5-pixel panel empty); `finiteRows` checks B first,
 *   since skipping a step is exact only when B is finite.
 *
 * Tile choice (V8 / TurboFan on x64, kernel alone, 320x784x128): 5 x 8 ran ~52 GFLOP/s, 4 x 8
 * and 2 x 16 ~44, 6 x 8 ~28 (10 accumulators + 2 B vectors + the A splat + one product fit the
 * 15 allocatable xmm registers; 12 accumulators spill). Unrolling the k loop made it slower (~30):
 * TurboFan hoists the loads of all unrolled steps and spills accumulators, so unroll is 1.
 */
import { Code, encodeModule, I32, SIMD_OP, V128, type FuncDef, type ValType } from './encoder.js';

export interface KernelShape {
  /** Rows of the micro-tile. */
  mr: number;
  /** Columns of the micro-tile (a multiple of 4). */
  nr: number;
  /** Unroll factor of the k loop. */
  unroll: number;
  /**
   * Multiply-add with relaxed SIMD's f32x4.relaxed_madd (one rounding where the engine fuses it)
   * instead of f32x4.mul + f32x4.add: opt-in, results differ from the unfused kernel's (see
   * docs/architecture.md, "Matmul and fused multiply-add").
   */
  fma?: boolean;
}

export const DEFAULT_KERNEL: KernelShape = { mr: 5, nr: 8, unroll: 1 };

const i32s = (count: number): ValType[] => new Array<ValType>(count).fill(I32);

/**
 * Where the micro-kernel reads B's row for each step:
 * - 'packed': from NR-column panels, consecutive steps NR floats apart;
 * - 'strided': in place, from a row-major B whose rows are LDB bytes apart (the extra last
 *   parameter): for products with few rows of A, where packing B would cost as much as the product;
 * - 'skip': from a packed panel, at the byte offset listed for the step (the extra last parameter
 *   is the list's address): A's panel holds only the steps where one of its rows is nonzero
 *   (`packSkipA`), the others contribute nothing (see `packSkipA` for why that is exact).
 */
export type BMode = 'packed' | 'strided' | 'skip';

/** The MR x NR micro-kernel, reading B as `bMode` says (k steps unrolled `unroll` times when packed). */
function microKernel({ mr, nr, unroll, fma = false }: KernelShape, bMode: BMode = 'packed', name?: string): FuncDef {
  const stridedB = bMode === 'strided';
  const skip = bMode === 'skip';
  const nv = nr / 4;
  // Params.
  const AP = 0;
  const A_ROW = 1;
  const A_COL = 2;
  const BP = 3;
  const CP = 4;
  const KC = 5;
  const LDC = 6;
  const ACC = 7;
  const LDB = 8; // strided only
  const IDX = 8; // skip only: the address of the steps' list of B offsets
  const nParams = stridedB || skip ? 9 : 8;
  // i32 locals: a row pointer into C, the step's B row (skip), then the byte offsets r * aRow of
  // A's rows 2.. (row 1 is aRow).
  const RP = nParams;
  const BK = nParams + 1;
  const rowOff = (r: number) => (r === 1 ? A_ROW : nParams + 2 + (r - 2));
  const nOff = Math.max(0, mr - 2);
  const v0 = nParams + 2 + nOff;
  const acc = (r: number, c: number) => v0 + r * nv + c;
  const bv = (c: number) => v0 + mr * nv + c;
  const av = v0 + mr * nv + nv;
  const locals: ValType[] = [...i32s(2 + nOff), ...new Array<ValType>(mr * nv + nv + 1).fill(V128)];

  const f = new Code();
  for (let r = 2; r < mr; r++) f.get(A_ROW).i32(r).mul().set(rowOff(r));
  // Accumulators: from C, or +0.
  f.get(ACC).if();
  f.get(CP).set(RP);
  for (let r = 0; r < mr; r++) {
    for (let c = 0; c < nv; c++)
      f.get(RP)
        .v128Load(16 * c)
        .set(acc(r, c));
    if (r < mr - 1) f.get(RP).get(LDC).add().set(RP);
  }
  f.else();
  for (let r = 0; r < mr; r++) for (let c = 0; c < nv; c++) f.v128Zero().set(acc(r, c));
  f.end();

  // One k step; `u` is the step within an unrolled group (A is addressed through the pointer,
  // advanced by aCol after every step; B through constant offsets).
  const step = (u: number) => {
    // skip: this step's row of B is at BP + the listed offset.
    if (skip) f.get(BP).get(IDX).i32Load().add().set(BK);
    for (let c = 0; c < nv; c++)
      f.get(skip ? BK : BP)
        .v128Load(4 * (u * nr + 4 * c))
        .set(bv(c));
    for (let r = 0; r < mr; r++) {
      f.get(AP);
      if (r > 0) f.get(rowOff(r)).add();
      f.v128Load32Splat().set(av);
      for (let c = 0; c < nv; c++) {
        if (fma) f.get(av).get(bv(c)).get(acc(r, c)).f32x4RelaxedMadd().set(acc(r, c));
        else f.get(acc(r, c)).get(av).get(bv(c)).f32x4Mul().f32x4Add().set(acc(r, c));
      }
    }
    f.get(AP).get(A_COL).add().set(AP);
  };

  if (unroll > 1 && bMode === 'packed') {
    f.block();
    f.get(KC).i32(unroll).ltU().brIf(0);
    f.loop();
    for (let u = 0; u < unroll; u++) step(u);
    f.get(BP)
      .i32(4 * nr * unroll)
      .add()
      .set(BP);
    f.get(KC).i32(unroll).sub().tee(KC);
    f.i32(unroll).geU().brIf(0);
    f.end();
    f.end();
  }
  f.block();
  f.get(KC).eqz().brIf(0);
  f.loop();
  step(0);
  if (stridedB) f.get(BP).get(LDB).add().set(BP);
  else if (skip) f.get(IDX).i32(4).add().set(IDX);
  else
    f.get(BP)
      .i32(4 * nr)
      .add()
      .set(BP);
  f.get(KC).i32(1).sub().tee(KC);
  f.brIf(0);
  f.end();
  f.end();

  // Store the tile.
  f.get(CP).set(RP);
  for (let r = 0; r < mr; r++) {
    for (let c = 0; c < nv; c++)
      f.get(RP)
        .get(acc(r, c))
        .v128Store(16 * c);
    if (r < mr - 1) f.get(RP).get(LDC).add().set(RP);
  }
  return { name: name ?? (stridedB ? 'microStridedB' : skip ? 'microSkip' : 'micro'), params: i32s(nParams), results: [], locals, body: f };
}

/**
 * The loop over micro-panels of one block, reading B as `bMode` says:
 * - 'packed' / 'strided': one K block of `kc` steps for every A panel ('strided': B's row stride
 *   LDB is the 13th parameter);
 * - 'skip': A panels packed by `packSkipA`: panel i has `counts[i]` steps (an i32 at
 *   COUNTS + 4 i, the 11th parameter in place of `kc`) and its list of B offsets at
 *   LISTS + i * LIST_PANEL (the 13th and 14th parameters); the lists cover all of k.
 */
function blockLoop({ mr, nr }: KernelShape, microIndex: number, bMode: BMode = 'packed', name?: string): FuncDef {
  const skip = bMode === 'skip';
  // Params.
  const A_PTR = 0;
  const A_ROW = 1;
  const A_COL = 2;
  const A_PANEL = 3;
  const B_PTR = 4;
  const B_PANEL = 5;
  const C_PTR = 6;
  const LDC = 7;
  const M_PANELS = 8;
  const N_PANELS = 9;
  const KC = 10; // skip: COUNTS
  const ACC = 11;
  const LDB = 12; // strided only; skip: LISTS
  const LIST_PANEL = 13; // skip only
  const nParams = bMode === 'packed' ? 12 : bMode === 'strided' ? 13 : 14;
  // Locals (skip: the current panel's list and count pointers too).
  const JP = nParams;
  const IP = nParams + 1;
  const AP = nParams + 2;
  const BP = nParams + 3;
  const C_COL = nParams + 4;
  const CP = nParams + 5;
  const C_ROW_STEP = nParams + 6;
  const LP = nParams + 7;
  const NP = nParams + 8;

  const f = new Code();
  f.get(LDC).i32(mr).mul().set(C_ROW_STEP);
  f.i32(0).set(JP);
  f.get(B_PTR).set(BP);
  f.get(C_PTR).set(C_COL);
  f.loop(); // over B micro-panels (nPanels >= 1)
  {
    f.i32(0).set(IP);
    f.get(A_PTR).set(AP);
    f.get(C_COL).set(CP);
    if (skip) f.get(LDB).set(LP).get(KC).set(NP);
    f.loop(); // over A micro-panels (mPanels >= 1)
    {
      f.get(AP).get(A_ROW).get(A_COL).get(BP).get(CP);
      if (skip) f.get(NP).i32Load();
      else f.get(KC);
      f.get(LDC).get(ACC);
      if (bMode === 'strided') f.get(LDB);
      if (skip) f.get(LP);
      f.call(microIndex);
      f.get(AP).get(A_PANEL).add().set(AP);
      f.get(CP).get(C_ROW_STEP).add().set(CP);
      if (skip) {
        f.get(LP).get(LIST_PANEL).add().set(LP);
        f.get(NP).i32(4).add().set(NP);
      }
      f.get(IP).i32(1).add().tee(IP);
      f.get(M_PANELS).ltU().brIf(0);
    }
    f.end();
    f.get(BP).get(B_PANEL).add().set(BP);
    f.get(C_COL)
      .i32(4 * nr)
      .add()
      .set(C_COL);
    f.get(JP).i32(1).add().tee(JP);
    f.get(N_PANELS).ltU().brIf(0);
  }
  f.end();
  const fallback = { packed: 'block', strided: 'blockStridedB', skip: 'blockSkip' }[bMode];
  return { name: name ?? fallback, params: i32s(nParams), results: [], locals: i32s(skip ? 9 : 7), body: f };
}

/**
 * `packCopyA` for the zero-skipping kernels: panel by panel, copies only the lines (k steps) where
 * one of the first `lanes` values is nonzero (any bits but the sign), and lists `line * bStep` (the
 * step's byte offset in a packed B panel) for each line kept; the count goes to CNT + 4 * panel.
 *
 * Why skipping is exact: a skipped step adds products 0 * B[p, j], which are +-0 when B is finite
 * (the caller checks it, `finiteRows`), and adding +-0 leaves any sum unchanged except -0, which a
 * sum that starts at +0 never is (in round-to-nearest x + y is -0 only when both are -0).
 */
function packSkipA(width: number): FuncDef {
  const SRC = 0;
  const LD = 1;
  const DST = 2;
  const LINES = 3;
  const PANELS = 4;
  const PANEL_BYTES = 5;
  const IDX = 6;
  const IDX_PANEL = 7;
  const CNT = 8;
  const LANES = 9;
  const B_STEP = 10;
  const S = 11;
  const D = 12;
  const L = 13;
  const I = 14;
  const N = 15;
  const KEEP = 16;
  const mask = (r: number) => 17 + r; // 0x7fffffff for tested lanes, 0 for the others
  const f = new Code();
  for (let r = 0; r < width; r++) {
    f.i32(0).set(mask(r));
    f.get(LANES).i32(r).gtU().if();
    f.i32(0x7fffffff).set(mask(r));
    f.end();
  }
  f.loop(); // panels >= 1
  {
    f.get(SRC).set(S);
    f.get(DST).set(D);
    f.get(IDX).set(I);
    f.i32(0).set(L);
    f.i32(0).set(N);
    f.loop(); // lines >= 1
    {
      // Branch-free (which lines are empty follows the data: a branch on it mispredicted often
      // enough to make this pass cost 33 us of an M1 step): every line is written at the next free
      // slot, which advances only past the lines kept. A line left behind is overwritten by the
      // next one, and stays inside the panel (fewer than k lines were kept before it).
      copyChunk(f, S, D, 4 * width);
      f.get(I).get(L).get(B_STEP).mul().i32Store();
      for (let r = 0; r < width; r++) {
        f.get(S)
          .i32Load(4 * r)
          .get(mask(r))
          .and();
        if (r > 0) f.or();
      }
      f.i32(0).ne().set(KEEP);
      f.get(D)
        .get(KEEP)
        .i32(4 * width)
        .mul()
        .add()
        .set(D);
      f.get(I).get(KEEP).i32(4).mul().add().set(I);
      f.get(N).get(KEEP).add().set(N);
      f.get(S).get(LD).add().set(S);
      f.get(L).i32(1).add().tee(L);
      f.get(LINES).ltU().brIf(0);
    }
    f.end();
    f.get(CNT).get(N).i32Store();
    f.get(CNT).i32(4).add().set(CNT);
    f.get(SRC)
      .i32(4 * width)
      .add()
      .set(SRC);
    f.get(DST).get(PANEL_BYTES).add().set(DST);
    f.get(IDX).get(IDX_PANEL).add().set(IDX);
    f.get(PANELS).i32(1).sub().tee(PANELS);
    f.brIf(0);
  }
  f.end();
  return { name: 'packSkipA', params: i32s(11), results: [], locals: i32s(6 + width), body: f };
}

/** finiteRows(ptr, rows, n, ld): 1 when the rows x n floats (rows ld bytes apart from ptr) hold no Inf or NaN (x - x is +0 exactly for finite x). */
function finiteRows(): FuncDef {
  const PTR = 0;
  const ROWS = 1;
  const N = 2;
  const LD = 3;
  const P = 4;
  const E = 5;
  const ACC = 6;
  const X = 7;
  const f = new Code();
  const orNonFinite = () => {
    f.set(X);
    f.get(ACC).get(X).get(X).simdOp(SIMD_OP.f32x4Sub).simdOp(SIMD_OP.v128Or).set(ACC);
  };
  f.v128Zero().set(ACC);
  f.block();
  f.get(ROWS).eqz().brIf(0);
  f.loop();
  {
    f.get(PTR).set(P);
    f.get(PTR).get(N).i32(4).mul().add().set(E);
    // Whole vectors, then the last floats one at a time (into lane 0 of a zero vector).
    f.block();
    f.loop();
    f.get(P).i32(16).add().get(E).gtU().brIf(1);
    f.get(P).v128Load(0, 2);
    orNonFinite();
    f.get(P).i32(16).add().set(P);
    f.br(0);
    f.end();
    f.end();
    f.block();
    f.loop();
    f.get(P).get(E).geU().brIf(1);
    f.get(P).v128Load32Zero();
    orNonFinite();
    f.get(P).i32(4).add().set(P);
    f.br(0);
    f.end();
    f.end();
    f.get(PTR).get(LD).add().set(PTR);
    f.get(ROWS).i32(1).sub().tee(ROWS);
    f.brIf(0);
  }
  f.end();
  f.end();
  f.get(ACC).simdOp(SIMD_OP.v128AnyTrue).eqz();
  return { name: 'finiteRows', params: i32s(4), results: [I32], locals: [I32, I32, V128, V128], body: f };
}

/** Copies `bytes` bytes from the address in local `s` to the one in local `d`, in 16/8/4-byte moves. */
function copyChunk(f: Code, s: number, d: number, bytes: number): void {
  let o = 0;
  for (; o + 16 <= bytes; o += 16) f.get(d).get(s).v128Load(o, 0).v128Store(o, 0);
  for (; o + 8 <= bytes; o += 8) f.get(d).get(s).i64Load(o).i64Store(o);
  for (; o + 4 <= bytes; o += 4) f.get(d).get(s).i32Load(o).i32Store(o);
}

function packCopy(name: string, width: number): FuncDef {
  const SRC = 0;
  const LD = 1;
  const DST = 2;
  const LINES = 3;
  const PANELS = 4;
  const PANEL_BYTES = 5;
  const S = 6;
  const D = 7;
  const P = 8;
  const f = new Code();
  // Panel by panel: the writes are contiguous, and the source lines' cache lines are reused by the
  // next panel (for narrow panels) while they are still in L1.
  f.loop(); // panels >= 1
  {
    f.get(SRC).set(S);
    f.get(DST).set(D);
    f.get(LINES).set(P);
    f.loop(); // lines >= 1
    {
      copyChunk(f, S, D, 4 * width);
      f.get(S).get(LD).add().set(S);
      f.get(D)
        .i32(4 * width)
        .add()
        .set(D);
      f.get(P).i32(1).sub().tee(P);
      f.brIf(0);
    }
    f.end();
    f.get(SRC)
      .i32(4 * width)
      .add()
      .set(SRC);
    f.get(DST).get(PANEL_BYTES).add().set(DST);
    f.get(PANELS).i32(1).sub().tee(PANELS);
    f.brIf(0);
  }
  f.end();
  return { name, params: i32s(6), results: [], locals: i32s(3), body: f };
}

function packInterleave(name: string, width: number): FuncDef {
  const SRC = 0;
  const LD = 1;
  const DST = 2;
  const LINES = 3;
  const K = 4;
  const PANEL_BYTES = 5;
  const S = 6;
  const D = 7;
  const P = 8;
  const R = 9;
  const f = new Code();
  f.i32(0).set(R);
  f.loop(); // lines >= 1
  {
    f.get(SRC).set(S);
    f.get(DST).get(R).i32(4).mul().add().set(D);
    f.get(K).set(P);
    f.loop(); // k >= 1
    {
      f.get(D).get(S).i32Load().i32Store();
      f.get(S).i32(4).add().set(S);
      f.get(D)
        .i32(4 * width)
        .add()
        .set(D);
      f.get(P).i32(1).sub().tee(P);
      f.brIf(0);
    }
    f.end();
    f.get(SRC).get(LD).add().set(SRC);
    // Next lane; after the last lane, the next panel.
    f.get(R).i32(1).add().tee(R);
    f.i32(width).eq().if();
    f.i32(0).set(R);
    f.get(DST).get(PANEL_BYTES).add().set(DST);
    f.end();
    f.get(LINES).i32(1).sub().tee(LINES);
    f.brIf(0);
  }
  f.end();
  return { name, params: i32s(6), results: [], locals: i32s(4), body: f };
}

function compact(): FuncDef {
  const C = 0;
  const LDC = 1;
  const ROW_BYTES = 2;
  const M = 3;
  const S = 4;
  const D = 5;
  const Q = 6;
  const I = 7;
  const SRC = 8;
  const DST = 9;
  const f = new Code();
  // Rows move to lower addresses, front to back, 16 bytes at a time: every chunk is loaded
  // before any store can reach it (the destination never passes the source).
  f.block();
  f.get(M).i32(2).ltU().brIf(0);
  f.i32(1).set(I);
  f.get(C).get(LDC).add().set(SRC);
  f.get(C).get(ROW_BYTES).add().set(DST);
  f.loop();
  {
    f.get(SRC).set(S);
    f.get(DST).set(D);
    f.get(ROW_BYTES).i32(15).add().i32(16).sub().set(Q); // bytes left after this chunk, rounded up
    f.loop();
    {
      f.get(D).get(S).v128Load(0, 0).v128Store(0, 0);
      f.get(S).i32(16).add().set(S);
      f.get(D).i32(16).add().set(D);
      f.get(Q).i32(16).ltU().eqz(); // another chunk while q >= 16
      f.get(Q).i32(16).sub().set(Q);
      f.brIf(0);
    }
    f.end();
    f.get(SRC).get(LDC).add().set(SRC);
    f.get(DST).get(ROW_BYTES).add().set(DST);
    f.get(I).i32(1).add().tee(I);
    f.get(M).ltU().brIf(0);
  }
  f.end();
  f.end();
  return { name: 'compact', params: i32s(4), results: [], locals: i32s(6), body: f };
}

/**
 * The kernel module's bytes for a micro-tile shape: with its own memory, or (`memoryImport`)
 * importing one (the kernels' arena; shared, so that worker threads run blocks on the same operands).
 */
export function gemmModuleBytes(
  shape: KernelShape = DEFAULT_KERNEL,
  memoryImport: boolean | { readonly sharedMaxPages: number } = false,
): Uint8Array<ArrayBuffer> {
  if (shape.nr % 4 !== 0 || shape.nr < 4 || shape.mr < 1 || shape.unroll < 1)
    throw new Error(`gemm kernel: bad micro-tile ${JSON.stringify(shape)}`);
  const funcs = [
    microKernel(shape),
    blockLoop(shape, 0),
    packCopy('packCopyA', shape.mr),
    packCopy('packCopyB', shape.nr),
    packInterleave('packInterleaveB', shape.nr),
    compact(),
    microKernel(shape, 'strided'),
    blockLoop(shape, 6, 'strided'),
  ];
  // The last, partial panel of r = m % MR rows runs an r-row tile instead of a full one whose
  // extra rows are thrown away (32 rows of A as 6 x 5 + 2, not 7 x 5: 9% less work).
  for (let r = 1; r < shape.mr; r++) {
    const rs = { ...shape, mr: r };
    const at = funcs.length;
    funcs.push(microKernel(rs, 'packed', `micro${r}`), microKernel(rs, 'strided', `microStridedB${r}`));
    funcs.push(blockLoop(rs, at, 'packed', `blockRows${r}`), blockLoop(rs, at + 1, 'strided', `blockStridedBRows${r}`));
  }
  // The zero-skipping kernels: blockSkip, then blockSkipRows{r} for the last panel.
  funcs.push(packSkipA(shape.mr), finiteRows());
  for (let r = shape.mr; r >= 1; r--) {
    const rs = { ...shape, mr: r };
    const at = funcs.length;
    funcs.push(microKernel(rs, 'skip', r === shape.mr ? 'microSkip' : `microSkip${r}`));
    funcs.push(blockLoop(rs, at, 'skip', r === shape.mr ? 'blockSkip' : `blockSkipRows${r}`));
  }
  return encodeModule(funcs, 1, memoryImport);
}

// prettier-ignore
/**
 * The smallest module using relaxed SIMD: `(func (param v128 v128 v128) (result v128)
 * f32x4.relaxed_madd)`. Node 20's V8 rejects it unless started with --experimental-wasm-relaxed-simd;
 * Chrome 114+ and Node 22+ accept it.
 */
export const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type section: (v128 v128 v128) -> v128
  0x03, 0x02, 0x01, 0x00, // function section
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02, 0x0b, // local.get 0 1 2; f32x4.relaxed_madd
]);

// prettier-ignore
/**
 * The smallest module using SIMD: `(func (result v128) i32.const 0 i8x16.splat)`. Engines without
 * the SIMD proposal reject it in `WebAssembly.validate`.
 */
export const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
  0x03, 0x02, 0x01, 0x00, // function section
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0x0b, // code: i32.const 0; i8x16.splat; end
]);
