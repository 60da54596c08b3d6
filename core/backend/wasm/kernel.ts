/**
 * Generates the WebAssembly SIMD matmul kernel.
 *
 * Layout in linear memory (all f32, byte addresses):
 * - packed A: panels of MR rows; panel `ip` holds, for every p in 0..k, the MR values
 *   A[ip*MR + r, p] contiguously (rows past m are zero);
 * - packed B: panels of NR columns; panel `jp` holds, for every p, the NR values B[p, jp*NR + c]
 *   contiguously (columns past n are zero);
 * - C: row-major mPad x nPad (ldc bytes per row).
 *
 * Exports:
 * - `micro(ap, bp, cp, kc, ldc, accumulate)`: the register-blocked MR x NR micro-kernel. It keeps
 *   MR * NR / 4 f32x4 accumulators in locals (registers), and per step p loads NR / 4 vectors of B,
 *   splats MR values of A, and does MR * NR / 4 f32x4.mul + f32x4.add (no FMA in base SIMD). The
 *   p loop is unrolled UNROLL times with constant memarg offsets. Accumulators start at +0 or
 *   from C (`accumulate`), so every C[i, j] is summed strictly in p order, like the JS fallback.
 * - `block(aPtr, bPtr, cPtr, mPanels, nPanels, kc, aPanelBytes, bPanelBytes, ldc, accumulate)`:
 *   one K block of one M block: for each B micro-panel (kept in L1), run the micro-kernel over
 *   all A micro-panels of the block (kept in L2).
 */
import { Code, encodeModule, I32, V128, type FuncDef, type ValType } from './encoder.js';

export interface KernelShape {
  /** Rows of the micro-tile. */
  mr: number;
  /** Columns of the micro-tile (a multiple of 4). */
  nr: number;
  /** Unroll factor of the p loop. */
  unroll: number;
}

export const DEFAULT_KERNEL: KernelShape = { mr: 4, nr: 8, unroll: 4 };

function microKernel({ mr, nr, unroll }: KernelShape): FuncDef {
  const nv = nr / 4;
  // Params.
  const AP = 0;
  const BP = 1;
  const CP = 2;
  const KC = 3;
  const LDC = 4;
  const ACC = 5;
  // Locals.
  const RP = 6;
  const acc = (r: number, c: number) => 7 + r * nv + c;
  const bv = (c: number) => 7 + mr * nv + c;
  const av = 7 + mr * nv + nv;
  const locals: ValType[] = [I32, ...new Array<ValType>(mr * nv + nv + 1).fill(V128)];

  const f = new Code();
  // Accumulators: from C, or +0.
  f.get(ACC).if();
  f.get(CP).set(RP);
  for (let r = 0; r < mr; r++) {
    for (let c = 0; c < nv; c++) f.get(RP).v128Load(16 * c).set(acc(r, c));
    if (r < mr - 1) f.get(RP).get(LDC).add().set(RP);
  }
  f.else();
  for (let r = 0; r < mr; r++) for (let c = 0; c < nv; c++) f.v128Zero().set(acc(r, c));
  f.end();

  const step = (u: number) => {
    for (let c = 0; c < nv; c++) f.get(BP).v128Load(4 * (u * nr + 4 * c)).set(bv(c));
    for (let r = 0; r < mr; r++) {
      f.get(AP).v128Load32Splat(4 * (u * mr + r)).set(av);
      for (let c = 0; c < nv; c++) f.get(acc(r, c)).get(av).get(bv(c)).f32x4Mul().f32x4Add().set(acc(r, c));
    }
  };

  // Unrolled main loop: while kc >= unroll.
  if (unroll > 1) {
    f.block();
    f.get(KC).i32(unroll).ltU().brIf(0);
    f.loop();
    for (let u = 0; u < unroll; u++) step(u);
    f.get(AP).i32(4 * mr * unroll).add().set(AP);
    f.get(BP).i32(4 * nr * unroll).add().set(BP);
    f.get(KC).i32(unroll).sub().tee(KC);
    f.i32(unroll).geU().brIf(0);
    f.end();
    f.end();
  }
  // Remainder: one p at a time.
  f.block();
  f.get(KC).eqz().brIf(0);
  f.loop();
  step(0);
  f.get(AP).i32(4 * mr).add().set(AP);
  f.get(BP).i32(4 * nr).add().set(BP);
  f.get(KC).i32(1).sub().tee(KC);
  f.brIf(0);
  f.end();
  f.end();

  // Store the tile.
  f.get(CP).set(RP);
  for (let r = 0; r < mr; r++) {
    for (let c = 0; c < nv; c++) f.get(RP).get(acc(r, c)).v128Store(16 * c);
    if (r < mr - 1) f.get(RP).get(LDC).add().set(RP);
  }
  return { name: 'micro', params: [I32, I32, I32, I32, I32, I32], results: [], locals, body: f };
}

function blockLoop({ mr, nr }: KernelShape, microIndex: number): FuncDef {
  // Params.
  const A_PTR = 0;
  const B_PTR = 1;
  const C_PTR = 2;
  const M_PANELS = 3;
  const N_PANELS = 4;
  const KC = 5;
  const A_PANEL_BYTES = 6;
  const B_PANEL_BYTES = 7;
  const LDC = 8;
  const ACC = 9;
  // Locals.
  const JP = 10;
  const IP = 11;
  const AP = 12;
  const BP = 13;
  const C_COL = 14;
  const CP = 15;
  const C_ROW_STEP = 16;

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
    f.loop(); // over A micro-panels (mPanels >= 1)
    {
      f.get(AP).get(BP).get(CP).get(KC).get(LDC).get(ACC).call(microIndex);
      f.get(AP).get(A_PANEL_BYTES).add().set(AP);
      f.get(CP).get(C_ROW_STEP).add().set(CP);
      f.get(IP).i32(1).add().tee(IP);
      f.get(M_PANELS).ltU().brIf(0);
    }
    f.end();
    f.get(BP).get(B_PANEL_BYTES).add().set(BP);
    f.get(C_COL).i32(4 * nr).add().set(C_COL);
    f.get(JP).i32(1).add().tee(JP);
    f.get(N_PANELS).ltU().brIf(0);
  }
  f.end();
  return {
    name: 'block',
    params: new Array<ValType>(10).fill(I32),
    results: [],
    locals: new Array<ValType>(7).fill(I32),
    body: f,
  };
}

/** The kernel module's bytes for a micro-tile shape. */
export function gemmModuleBytes(shape: KernelShape = DEFAULT_KERNEL): Uint8Array<ArrayBuffer> {
  if (shape.nr % 4 !== 0 || shape.nr < 4 || shape.mr < 1 || shape.unroll < 1) throw new Error(`gemm kernel: bad micro-tile ${JSON.stringify(shape)}`);
  return encodeModule([microKernel(shape), blockLoop(shape, 0)]);
}

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
