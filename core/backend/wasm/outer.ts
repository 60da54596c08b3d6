/**
 * Batches of float32 outer products (a matmul whose contraction has length 1) as a WebAssembly
 * SIMD kernel: vmap(grad) of a dense layer gives each example's weight gradient as one, so a batch
 * of 32 examples through a 784 x 128 kernel writes 32 x 784 x 128 products. The generic gemm costs
 * its per-call setup 32 times over, and a JS loop pays a float64 <-> float32 conversion per
 * element; this kernel streams each product row out with f32x4 lanes.
 *
 * Exactness: C[t, i, j] = (A[t, i] * B[t, j]) + 0, one IEEE float32 multiply and one add of +0,
 * which is exactly what the gemm computes for a contraction of length 1 (it sums from +0, so a
 * product of -0 comes out +0). Results are bit-identical to core/backend/wasm/index.ts's gemm and
 * to the JS fallback in core/backend/matmul.ts (NaN payloads aside).
 *
 * Where C goes: when it lives in the kernels' arena (a compiled program's intermediate) the rows
 * are written in place; otherwise (a program's result that leaves for the caller, or no shared
 * memory) rows are made a few tens of kB at a time in a scratch block that stays in cache and
 * copied out with TypedArray.set, so the result memory is written once.
 */
import { Code, encodeModule, I32, V128, type ValType } from './encoder.js';
import { arenaAlloc, arenaF32, arenaFree, arenaImport, residentOffset } from './kernel-cache.js';
import { simdKernel } from './index.js';

/** Floats of C made per chunk when C is not written in place (64 kB: stays in L2). */
const CHUNK_FLOATS = 16384;

/**
 * The kernel: run(m, nv, aPtr, aStrideBytes, bPtr, cPtr, cRowBytes) writes m rows, row i being
 * nv vectors of A[i] * B + 0 at cPtr + i * cRowBytes (B: nv contiguous vectors at bPtr; A[i] at
 * aPtr + i * aStrideBytes). A row whose length is not a multiple of 4 spills its last vector into
 * the next row's start, which that row then overwrites, or into the block's spare tail bytes.
 */
function kernelBytes(): Uint8Array<ArrayBuffer> {
  const [M, NV, A, AS, B, C, CR] = [0, 1, 2, 3, 4, 5, 6];
  const [I, J, BP, CP, S, ZERO] = [7, 8, 9, 10, 11, 12];
  const f = new Code();
  const emitVector = (offset: number): void => {
    f.get(CP).get(S).get(BP).v128Load(offset, 0).f32x4Mul().get(ZERO).f32x4Add().v128Store(offset, 0);
  };
  f.i32(0).set(I);
  f.block().loop();
  f.get(I).get(M).geU().brIf(1);
  f.get(A).v128Load32Splat().set(S);
  f.get(B).set(BP).get(C).set(CP).i32(0).set(J);
  // Four vectors per turn while four remain, then one at a time.
  f.block().loop();
  f.get(J).i32(4).add().get(NV).gtU().brIf(1);
  for (let v = 0; v < 4; v++) emitVector(16 * v);
  f.get(BP).i32(64).add().set(BP).get(CP).i32(64).add().set(CP).get(J).i32(4).add().set(J).br(0);
  f.end().end();
  f.block().loop();
  f.get(J).get(NV).geU().brIf(1);
  emitVector(0);
  f.get(BP).i32(16).add().set(BP).get(CP).i32(16).add().set(CP).get(J).i32(1).add().set(J).br(0);
  f.end().end();
  f.get(A).get(AS).add().set(A).get(C).get(CR).add().set(C).get(I).i32(1).add().set(I).br(0);
  f.end().end();
  const params: ValType[] = new Array<ValType>(7).fill(I32);
  // ZERO is never set: v128 locals start as all-zero bits, +0 in every lane.
  const locals: ValType[] = [I32, I32, I32, I32, V128, V128];
  return encodeModule([{ name: 'run', params, results: [], locals, body: f }], 1, arenaImport());
}

const outerKernel = simdKernel('outer', kernelBytes);

export const outerStats = { calls: 0, inPlace: 0 };

/**
 * C[t*m*n + i*n + j] = A[aOffsets[t] + i*aRowStride] * B[bOffsets[t] + j*bColStride] + 0 for every
 * batch member t, i < m, j < n (C contiguous from index 0); false (C untouched) when WebAssembly
 * SIMD is unavailable or the arena cannot grow, and the caller computes it otherwise.
 */
export function outerProductsF32(
  A: Float32Array,
  aOffsets: ArrayLike<number>,
  aRowStride: number,
  B: Float32Array,
  bOffsets: ArrayLike<number>,
  bColStride: number,
  C: Float32Array,
  m: number,
  n: number,
): boolean {
  const run = outerKernel();
  if (run === null) return false;
  const batch = aOffsets.length;
  if (batch === 0 || m === 0 || n === 0) return true;
  const nv = Math.ceil(n / 4);
  const cResident = residentOffset(C) >= 0;
  const aResident = residentOffset(A) >= 0;
  const bInPlace = residentOffset(B) >= 0 && bColStride === 1;
  const chunkRows = cResident ? 0 : Math.max(1, Math.min(m, Math.floor(CHUNK_FLOATS / n)));
  // Scratch: A's column and B's row of one member (when not read in place), and C's chunk.
  const aFloats = aResident ? 0 : m + 4;
  const bFloats = bInPlace ? 0 : nv * 4 + 4;
  const cFloats = chunkRows * n + 4;
  const bytes = (aFloats + bFloats + cFloats) * 4;
  const block = arenaAlloc(bytes);
  if (block < 0) return false;
  const h = arenaF32();
  const aAt = block >> 2;
  const bAt = aAt + aFloats;
  const cAt = bAt + bFloats;
  for (let t = 0; t < batch; t++) {
    const ao = aOffsets[t];
    const bo = bOffsets[t];
    let aPtr: number;
    let aStride: number;
    if (aResident) {
      aPtr = residentOffset(A, ao);
      aStride = aRowStride * 4;
    } else {
      if (aRowStride === 1) h.set(A.subarray(ao, ao + m), aAt);
      else for (let i = 0; i < m; i++) h[aAt + i] = A[ao + i * aRowStride];
      aPtr = aAt * 4;
      aStride = 4;
    }
    let bPtr: number;
    if (bInPlace) bPtr = residentOffset(B, bo);
    else {
      if (bColStride === 1) h.set(B.subarray(bo, bo + n), bAt);
      else for (let j = 0; j < n; j++) h[bAt + j] = B[bo + j * bColStride];
      bPtr = bAt * 4;
    }
    const co = t * m * n;
    if (cResident) {
      run(m, nv, aPtr, aStride, bPtr, residentOffset(C, co), n * 4);
      continue;
    }
    for (let i0 = 0; i0 < m; i0 += chunkRows) {
      const rows = Math.min(chunkRows, m - i0);
      run(rows, nv, aPtr + i0 * aStride, aStride, bPtr, cAt * 4, n * 4);
      C.set(h.subarray(cAt, cAt + rows * n), co + i0 * n);
    }
  }
  arenaFree(block, bytes);
  outerStats.calls++;
  if (cResident) outerStats.inPlace++;
  return true;
}
