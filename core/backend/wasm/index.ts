/**
 * Float32 matmul for the CPU backend: a WebAssembly 128-bit SIMD kernel, generated at load time
 * (core/backend/wasm/kernel.ts, encoded by core/backend/wasm/encoder.ts), with a plain-JS fallback.
 *
 * All three entry points share one signature over strided 2-D views:
 *
 *   C[cOffset + i*n + j] = sum_p A[aOffset + i*aRowStride + p*aColStride] * B[bOffset + p*bRowStride + j*bColStride]
 *
 * for i < m, j < n, p < k; any strides (transposed views, stride 0 for broadcasts); C is written
 * as a contiguous row-major m x n block and never read. Every C[i, j] is accumulated in float32,
 * starting from +0, strictly in p order, with IEEE float32 products and sums (no zero skipping,
 * so 0 * Inf = NaN propagates): the SIMD kernel and the fallback give bit-identical results
 * (up to NaN payloads). C may share its buffer with A or B: the operands are packed before C is
 * written.
 *
 * @example
 * import { gemm, matmulBackendName } from './wasm/index.js';
 * // C (m x n) = A (m x k, row-major) @ B (k x n, row-major)
 * gemm(A, 0, k, 1, B, 0, n, 1, C, 0, m, k, n);
 * // A given transposed (stored k x m): aRowStride = 1, aColStride = m
 * gemm(At, 0, 1, m, B, 0, n, 1, C, 0, m, k, n);
 * matmulBackendName(); // 'wasm-simd' or 'js'
 */
import { DEFAULT_KERNEL, gemmModuleBytes, SIMD_PROBE, type KernelShape } from './kernel.js';

export type GemmF32 = (
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
) => void;

/** Largest K block: an MR x KC panel of A and a KC x NR panel of B stay in L1. */
const KC_MAX = 256;
/** Rows of A per M block (an MC x KC block of packed A stays in L2). */
const MC = 128;
const PAGE = 65536;

let simdProbe: boolean | undefined;

/** True when this engine validates a WebAssembly module that uses 128-bit SIMD. */
export function wasmSimdAvailable(): boolean {
  if (simdProbe === undefined) {
    try {
      simdProbe = typeof WebAssembly === 'object' && typeof WebAssembly.validate === 'function' && WebAssembly.validate(SIMD_PROBE);
    } catch {
      simdProbe = false;
    }
  }
  return simdProbe;
}

type BlockFn = (
  aPtr: number,
  bPtr: number,
  cPtr: number,
  mPanels: number,
  nPanels: number,
  kc: number,
  aPanelBytes: number,
  bPanelBytes: number,
  ldc: number,
  accumulate: number,
) => void;

export interface WasmGemmOptions extends Partial<KernelShape> {
  /** Largest K block (default 256). */
  kcMax?: number;
  /** Rows of A per M block (default 128). */
  mc?: number;
}

const align64 = (bytes: number) => Math.ceil(bytes / 64) * 64;

/**
 * Builds a SIMD matmul with its own module instance and linear memory (reused and grown between
 * calls). Returns null when WebAssembly SIMD is unavailable or the module does not build.
 * `gemmF32` is the default-configured one; other micro-tiles are for benchmarks and tests.
 */
export function createWasmGemm(options: WasmGemmOptions = {}): GemmF32 | null {
  if (!wasmSimdAvailable()) return null;
  const shape: KernelShape = { mr: options.mr ?? DEFAULT_KERNEL.mr, nr: options.nr ?? DEFAULT_KERNEL.nr, unroll: options.unroll ?? DEFAULT_KERNEL.unroll };
  const MR = shape.mr;
  const NR = shape.nr;
  const kcMax = Math.max(1, options.kcMax ?? KC_MAX);
  const mcPanels = Math.max(1, Math.floor((options.mc ?? MC) / MR));
  let memory: WebAssembly.Memory;
  let block: BlockFn;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(gemmModuleBytes(shape)), {});
    memory = instance.exports.memory as WebAssembly.Memory;
    block = instance.exports.block as unknown as BlockFn;
  } catch {
    return null;
  }
  /** f32 view of the whole memory; refreshed after every grow. */
  let heap = new Float32Array(memory.buffer);

  /** Makes the memory at least `bytes` long; false if it cannot grow that far. */
  function reserve(bytes: number): boolean {
    const have = memory.buffer.byteLength;
    if (bytes <= have) return true;
    // Grow geometrically so that a sequence of growing shapes reallocates O(log) times.
    const want = Math.max(Math.ceil(bytes / PAGE), Math.ceil((have * 1.5) / PAGE));
    try {
      memory.grow(want - have / PAGE);
    } catch {
      try {
        memory.grow(Math.ceil(bytes / PAGE) - have / PAGE);
      } catch {
        return false;
      }
    }
    heap = new Float32Array(memory.buffer);
    return true;
  }

  /** Packs A (m x k, strided) into MR-row panels at float index `dst`; rows past m are zero. */
  function packA(dst: number, A: Float32Array, ao: number, ars: number, acs: number, m: number, k: number): void {
    const h = heap;
    const panels = Math.ceil(m / MR);
    const panelSize = MR * k;
    if (ars === 1 && acs !== 1) {
      // Column-major A (a transposed view): read MR consecutive values per p.
      for (let ip = 0; ip < panels; ip++) {
        const i0 = ip * MR;
        const rows = Math.min(MR, m - i0);
        let d = dst + ip * panelSize;
        let s = ao + i0;
        for (let p = 0; p < k; p++, d += MR, s += acs) {
          let r = 0;
          for (; r < rows; r++) h[d + r] = A[s + r];
          for (; r < MR; r++) h[d + r] = 0;
        }
      }
      return;
    }
    // Row-major (or any other) A: stream each row, scatter with stride MR.
    for (let i = 0; i < m; i++) {
      const r = i % MR;
      let d = dst + (i - r) * k + r;
      let s = ao + i * ars;
      for (let p = 0; p < k; p++, d += MR, s += acs) h[d] = A[s];
    }
    for (let i = m; i < panels * MR; i++) {
      const r = i % MR;
      let d = dst + (i - r) * k + r;
      for (let p = 0; p < k; p++, d += MR) h[d] = 0;
    }
  }

  /** Packs B (k x n, strided) into NR-column panels at float index `dst`; columns past n are zero. */
  function packB(dst: number, B: Float32Array, bo: number, brs: number, bcs: number, k: number, n: number): void {
    const h = heap;
    const panels = Math.ceil(n / NR);
    const panelSize = NR * k;
    if (brs === 1 && bcs !== 1) {
      // Column-major B (a transposed view): stream each column, scatter with stride NR.
      for (let j = 0; j < n; j++) {
        const c = j % NR;
        let d = dst + (j - c) * k + c;
        let s = bo + j * bcs;
        for (let p = 0; p < k; p++, d += NR, s += brs) h[d] = B[s];
      }
      for (let j = n; j < panels * NR; j++) {
        const c = j % NR;
        let d = dst + (j - c) * k + c;
        for (let p = 0; p < k; p++, d += NR) h[d] = 0;
      }
      return;
    }
    // Row-major (or any other) B: copy NR consecutive columns of each row into each panel.
    for (let p = 0; p < k; p++) {
      const s0 = bo + p * brs;
      for (let jp = 0; jp < panels; jp++) {
        const j0 = jp * NR;
        const cols = Math.min(NR, n - j0);
        const d = dst + jp * panelSize + p * NR;
        let s = s0 + j0 * bcs;
        let c = 0;
        for (; c < cols; c++, s += bcs) h[d + c] = B[s];
        for (; c < NR; c++) h[d + c] = 0;
      }
    }
  }

  return (A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n) => {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
      C.fill(0, cOffset, cOffset + m * n);
      return;
    }
    const mPanels = Math.ceil(m / MR);
    const nPanels = Math.ceil(n / NR);
    const mPad = mPanels * MR;
    const nPad = nPanels * NR;
    const aBase = 0;
    const bBase = align64(aBase + mPad * k * 4);
    const cBase = align64(bBase + nPad * k * 4);
    const end = cBase + mPad * nPad * 4;
    if (end > 0xffff0000 || !reserve(end)) {
      // More than the 4 GiB a 32-bit memory can address (or the engine refuses to grow).
      gemmF32Fallback(A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n);
      return;
    }
    packA(aBase >> 2, A, aOffset, aRowStride, aColStride, m, k);
    packB(bBase >> 2, B, bOffset, bRowStride, bColStride, k, n);

    const ldc = nPad * 4;
    const nK = Math.ceil(k / kcMax);
    const kc = Math.ceil(k / nK);
    for (let ip0 = 0; ip0 < mPanels; ip0 += mcPanels) {
      const mp = Math.min(mcPanels, mPanels - ip0);
      for (let p0 = 0; p0 < k; p0 += kc) {
        const kcur = Math.min(kc, k - p0);
        block(aBase + (ip0 * MR * k + p0 * MR) * 4, bBase + p0 * NR * 4, cBase + ip0 * MR * ldc, mp, nPanels, kcur, MR * k * 4, NR * k * 4, ldc, p0 > 0 ? 1 : 0);
      }
    }

    const h = heap;
    const c0 = cBase >> 2;
    if (nPad === n) {
      C.set(h.subarray(c0, c0 + m * n), cOffset);
    } else {
      for (let i = 0; i < m; i++) {
        const s = c0 + i * nPad;
        const d = cOffset + i * n;
        for (let j = 0; j < n; j++) C[d + j] = h[s + j];
      }
    }
  };
}

/** undefined: not built yet; null: SIMD unavailable or the module failed to build. */
let defaultGemm: GemmF32 | null | undefined;

function getDefault(): GemmF32 | null {
  if (defaultGemm === undefined) defaultGemm = createWasmGemm();
  return defaultGemm;
}

/**
 * The WebAssembly SIMD matmul (see the module comment for the contract). Throws when SIMD
 * WebAssembly is unavailable; `gemm` picks this or the fallback.
 */
export function gemmF32(
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
): void {
  const g = getDefault();
  if (!g) throw new Error('gemmF32: WebAssembly SIMD is not available in this engine (use gemm or gemmF32Fallback)');
  g(A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n);
}

/**
 * Plain-JS matmul with the same contract and the same float32 rounding as `gemmF32` (products
 * rounded with Math.fround, sums rounded by the Float32Array store, p in order).
 */
export function gemmF32Fallback(
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
): void {
  if (m <= 0 || n <= 0) return;
  // Write into a scratch block when C may alias an operand.
  const alias = C.buffer === A.buffer || C.buffer === B.buffer;
  const out = alias ? new Float32Array(m * n) : C;
  const co = alias ? 0 : cOffset;
  out.fill(0, co, co + m * n);
  const fround = Math.fround;
  for (let i = 0; i < m; i++) {
    const crow = co + i * n;
    let a = aOffset + i * aRowStride;
    let brow = bOffset;
    for (let p = 0; p < k; p++, a += aColStride, brow += bRowStride) {
      const av = A[a];
      if (bColStride === 1) {
        for (let j = 0; j < n; j++) out[crow + j] += fround(av * B[brow + j]);
      } else {
        for (let j = 0, b = brow; j < n; j++, b += bColStride) out[crow + j] += fround(av * B[b]);
      }
    }
  }
  if (alias) C.set(out, cOffset);
}

export type GemmBackend = 'wasm-simd' | 'js';

let forced: GemmBackend | 'auto' = 'auto';

/**
 * Chooses the implementation `gemm` runs: 'auto' (the default: SIMD when available), or one of
 * them explicitly (forcing 'wasm-simd' where it is unavailable still runs 'js').
 */
export function setGemmBackend(choice: GemmBackend | 'auto'): void {
  forced = choice;
}

/** The implementation `gemm` runs now: 'wasm-simd' or 'js'. */
export function matmulBackendName(): GemmBackend {
  if (forced === 'js') return 'js';
  return getDefault() ? 'wasm-simd' : 'js';
}

/** Float32 matmul through the fastest available implementation (see `matmulBackendName`). */
export const gemm: GemmF32 = (A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n) => {
  const f = matmulBackendName() === 'wasm-simd' ? gemmF32 : gemmF32Fallback;
  f(A, aOffset, aRowStride, aColStride, B, bOffset, bRowStride, bColStride, C, cOffset, m, k, n);
};
