/**
 * Blocked matmul over strided views. The loop order follows the operands' layouts so that the
 * inner loop always streams contiguous rows (no transposed copies for x^T @ g or g @ W^T), and
 * zero entries of the left operand are skipped: spike trains and relu outputs are mostly zeros.
 */
import { allocate, type TypedArray } from '../dtype.js';
import { makeView, NDArray } from '../ndarray.js';
import { contiguousStrides } from '../shape.js';
import { gemm as wasmGemm, matmulBackendName } from './wasm/index.js';
import { takeBuffer } from './pool.js';
import { sparseGemm } from './wasm/sparse.js';
import { outerProductsF32 } from './wasm/outer.js';

/**
 * Fewest columns of C for which the sparse kernel is tried: listing A's nonzeros costs about as
 * much per entry of A whatever n is, and the dense kernel's cost shrinks with n. Measured here on
 * a LIF network's readout (3200 x 1000 spikes, n = 10, one core, best of 21): h @ W 5.9 ms sparse
 * vs 2.3 ms dense at density 0.1 (7.9 vs 2.2 at 0.25); h^T @ g 7.8 vs 7.0 (12.6 vs 6.2); at n = 32
 * the row form won at density 0.25 (4.0 vs 5.9 ms) and the outer form did not (16 vs 12 ms).
 */
const SPARSE_MIN_N = { rows: 32, outer: 64 };

/** Columns of B per block: keeps a block of output rows and B rows in L1/L2. */
const BLOCK_N = 256;

export function matmulKernel(a: NDArray, b: NDArray): NDArray {
  const r = a.ndim;
  const m = a.shape[r - 2];
  const k = a.shape[r - 1];
  const n = b.shape[r - 1];
  const batchShape = a.shape.slice(0, r - 2);
  const batch = batchShape.reduce((p, c) => p * c, 1);
  if (k === 1 && a.dtype === 'float32') return outerProducts(a, b, batchShape, m, n);
  if (a.dtype === 'float32' && matmulBackendName() === 'wasm-simd') {
    // The SIMD kernel writes every element of C and never reads it.
    const out = takeBuffer('float32', batch * m * n);
    // WebAssembly SIMD kernel: any strides, IEEE semantics, ~50x the JS loop here.
    forEachBatch(batchShape, (t, idx) => {
      let ao = a.offset;
      let bo = b.offset;
      for (let d = 0; d < batchShape.length; d++) {
        ao += idx[d] * a.strides[d];
        bo += idx[d] * b.strides[d];
      }
      const args = [
        a.data as Float32Array,
        ao,
        a.strides[r - 2],
        a.strides[r - 1],
        b.data as Float32Array,
        bo,
        b.strides[r - 2],
        b.strides[r - 1],
        out as Float32Array,
        t * m * n,
        m,
        k,
        n,
      ] as const;
      // A mostly-zero left operand (spikes, relu outputs) visits only its nonzeros, bit-identically,
      // unless C is narrow (see SPARSE_MIN_N).
      if (n < SPARSE_MIN_N[a.strides[r - 1] === 1 ? 'rows' : 'outer'] || !sparseGemm(...args)) wasmGemm(...args);
    });
    const shape = [...batchShape, m, n];
    return new NDArray(makeView(out, shape, contiguousStrides(shape), 0), a.dtype);
  }
  const out = allocate(a.dtype, batch * m * n);
  // B must be row-contiguous for the streaming loops; copy it otherwise (it is the smaller operand
  // in every use here: weights, or a gradient block).
  let bv = b;
  if (b.strides[r - 1] !== 1 && n > 1) bv = new NDArray(makeView(b.toTyped(), b.shape.slice(), contiguousStrides(b.shape), 0), b.dtype);
  const sam = a.strides[r - 2];
  const sak = a.strides[r - 1];
  const sbk = bv.strides[r - 2];
  const A = a.data;
  const B = bv.data;
  // Skipping zeros of A is exact only when B holds no Inf/NaN (0 * Inf = NaN); check once.
  let bFinite = true;
  for (let i = 0; i < B.length && bFinite; i++) if (!Number.isFinite(B[i])) bFinite = false;
  const idx = new Array<number>(batchShape.length).fill(0);
  for (let t = 0; t < batch; t++) {
    let ao = a.offset;
    let bo = bv.offset;
    for (let d = 0; d < batchShape.length; d++) {
      ao += idx[d] * a.strides[d];
      bo += idx[d] * bv.strides[d];
    }
    gemm(A, ao, sam, sak, B, bo, sbk, out, t * m * n, m, k, n, bFinite);
    for (let d = batchShape.length - 1; d >= 0; d--) {
      if (++idx[d] < batchShape[d]) break;
      idx[d] = 0;
    }
  }
  const shape = [...batchShape, m, n];
  return new NDArray(makeView(out, shape, contiguousStrides(shape), 0), a.dtype);
}

/**
 * A contraction of length 1 is a batch of outer products (vmap's per-example weight gradients):
 * one multiply per element, written row by row (core/backend/wasm/outer.ts, or the JS loop below);
 * a gemm call per batch member spends its time in per-call setup here. Each element is the product
 * plus +0, exactly what the gemm's single multiply-add onto +0 gives (a -0 product comes out +0):
 * the float64 product of two float32 values rounds once to the float32 product.
 */
function outerProducts(a: NDArray, b: NDArray, batchShape: readonly number[], m: number, n: number): NDArray {
  const r = a.ndim;
  const batch = batchShape.reduce((p, c) => p * c, 1);
  const out = takeBuffer('float32', batch * m * n) as Float32Array;
  const A = a.data as Float32Array;
  const B = b.data as Float32Array;
  const sam = a.strides[r - 2];
  const sbn = b.strides[r - 1];
  const aOffsets = new Array<number>(batch);
  const bOffsets = new Array<number>(batch);
  forEachBatch(batchShape, (t, idx) => {
    let ao = a.offset;
    let bo = b.offset;
    for (let d = 0; d < batchShape.length; d++) {
      ao += idx[d] * a.strides[d];
      bo += idx[d] * b.strides[d];
    }
    aOffsets[t] = ao;
    bOffsets[t] = bo;
  });
  if (matmulBackendName() !== 'wasm-simd' || !outerProductsF32(A, aOffsets, sam, B, bOffsets, sbn, out, m, n)) {
    for (let t = 0, o = 0; t < batch; t++) {
      for (let i = 0; i < m; i++) {
        const ai = A[aOffsets[t] + i * sam];
        for (let j = 0, bj = bOffsets[t]; j < n; j++, bj += sbn) out[o++] = ai * B[bj] + 0;
      }
    }
  }
  const shape = [...batchShape, m, n];
  return new NDArray(makeView(out, shape, contiguousStrides(shape), 0), a.dtype);
}

function forEachBatch(batchShape: readonly number[], fn: (t: number, idx: number[]) => void): void {
  const batch = batchShape.reduce((p, c) => p * c, 1);
  const idx = new Array<number>(batchShape.length).fill(0);
  for (let t = 0; t < batch; t++) {
    fn(t, idx);
    for (let d = batchShape.length - 1; d >= 0; d--) {
      if (++idx[d] < batchShape[d]) break;
      idx[d] = 0;
    }
  }
}

/** C[m,n] = A[m,k] B[k,n]; B rows contiguous (stride 1 along n), A any strides. */
function gemm(
  A: TypedArray,
  ao: number,
  sam: number,
  sak: number,
  B: TypedArray,
  bo: number,
  sbk: number,
  C: TypedArray,
  co: number,
  m: number,
  k: number,
  n: number,
  skipZeros: boolean,
): void {
  for (let j0 = 0; j0 < n; j0 += BLOCK_N) {
    const j1 = Math.min(n, j0 + BLOCK_N);
    if (sak === 1 || sam !== 1) {
      // Row-major A: for each output row, accumulate a*B[kk,:] over kk.
      for (let i = 0; i < m; i++) {
        const crow = co + i * n;
        const arow = ao + i * sam;
        for (let kk = 0; kk < k; kk++) {
          const av = A[arow + kk * sak];
          if (av === 0 && skipZeros) continue;
          const brow = bo + kk * sbk;
          for (let j = j0; j < j1; j++) C[crow + j] += av * B[brow + j];
        }
      }
    } else {
      // Column-major A (a transposed view, as in x^T @ g): walk kk outermost so A is read contiguously.
      for (let kk = 0; kk < k; kk++) {
        const brow = bo + kk * sbk;
        const acol = ao + kk * sak;
        for (let i = 0; i < m; i++) {
          const av = A[acol + i];
          if (av === 0 && skipZeros) continue;
          const crow = co + i * n;
          for (let j = j0; j < j1; j++) C[crow + j] += av * B[brow + j];
        }
      }
    }
  }
}
