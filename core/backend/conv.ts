/**
 * CPU kernels of the `conv` primitive (layout in core/primitives.ts: lhs [batch, ...spatial, C],
 * rhs [...window, C / groups, O]). Both read their operands through strides, so transposed and
 * sliced views (the VJP's operands) need no copy of the input.
 *
 * - `convDirect`: a plain loop accumulating each output in a JS number (float64), any float dtype.
 * - `convIm2col` (float32): the windows of a block of output positions are copied into rows of a
 *   patch matrix (zeros where the window reads padding or a dilation hole), which is multiplied by
 *   the kernel, viewed as a [window * C / groups, O] matrix, in the WebAssembly SIMD gemm (and its
 *   sparse variant when the patches are mostly zeros: spike trains). When the input's batch axis
 *   is the contiguous one (the kernel gradient's transposed input), the patch matrix is built
 *   transposed instead, so that every copy is still a contiguous run (see `convIm2col`).
 */
import { allocate, type TypedArray } from '../dtype.js';
import { makeView, NDArray } from '../ndarray.js';
import { convOutputSpatial, type ConvParams } from '../primitives.js';
import { contiguousStrides } from '../shape.js';
import { giveBuffer, takeBuffer } from './pool.js';
import { gemm } from './wasm/index.js';
import { sparseGemm } from './wasm/sparse.js';
import { copyRuns, RunList } from './wasm/copy-runs.js';

/** The patch runs of one block (reused: it grows to the largest block seen). */
const runs = new RunList();
/** Runs shorter than this are copied element by element (an entry costs more than a few floats). */
const MIN_RUN = 8;

/** Everything about a call that depends only on shapes, the input's strides and the params. */
interface Geometry {
  readonly batch: number;
  readonly outSpatial: readonly number[];
  /** Output positions per example and window positions. */
  readonly positions: number;
  readonly windowSize: number;
  readonly groupIn: number;
  readonly groupOut: number;
  readonly outChannels: number;
  /**
   * For output position p and window position q, the offset of the input pixel the window reads
   * (relative to the example's base, before the channel), or -1 where it reads padding or a hole.
   */
  readonly table: Int32Array;
}

const geometryCache = new Map<string, Geometry>();

function geometryOf(x: NDArray, w: NDArray, p: ConvParams): Geometry {
  const key = `${x.shape.join(',')}|${x.strides.join(',')}|${w.shape.join(',')}|${p.strides.join(',')}|${p.padLow.join(',')}|${p.padHigh.join(',')}|${p.lhsDilation.join(',')}|${p.rhsDilation.join(',')}|${p.featureGroupCount}`;
  const cached = geometryCache.get(key);
  if (cached !== undefined) return cached;
  const r = p.strides.length;
  const inSpatial = x.shape.slice(1, r + 1);
  const window = w.shape.slice(0, r);
  const outSpatial = convOutputSpatial(inSpatial, window, p) as number[];
  // Built one spatial axis at a time: positions and window positions both row-major.
  let table = new Int32Array([0]);
  let positions = 1;
  let windowSize = 1;
  for (let d = 0; d < r; d++) {
    const od = outSpatial[d];
    const kd = window[d];
    const axis = new Int32Array(od * kd);
    for (let o = 0; o < od; o++) {
      for (let k = 0; k < kd; k++) {
        const at = o * p.strides[d] + k * p.rhsDilation[d] - p.padLow[d];
        const i = at / p.lhsDilation[d];
        axis[o * kd + k] = at < 0 || !Number.isInteger(i) || i >= inSpatial[d] ? -1 : i * x.strides[d + 1];
      }
    }
    const next = new Int32Array(positions * od * windowSize * kd);
    for (let pp = 0; pp < positions; pp++) {
      for (let o = 0; o < od; o++) {
        for (let q = 0; q < windowSize; q++) {
          const before = table[pp * windowSize + q];
          const row = ((pp * od + o) * windowSize + q) * kd;
          for (let k = 0; k < kd; k++) {
            const here = axis[o * kd + k];
            next[row + k] = before < 0 || here < 0 ? -1 : before + here;
          }
        }
      }
    }
    table = next;
    positions *= od;
    windowSize *= kd;
  }
  const groups = p.featureGroupCount;
  const geometry: Geometry = {
    batch: x.shape[0],
    outSpatial,
    positions,
    windowSize,
    groupIn: x.shape[r + 1] / groups,
    groupOut: w.shape[r + 1] / groups,
    outChannels: w.shape[r + 1],
    table,
  };
  if (geometryCache.size > 256) geometryCache.clear();
  geometryCache.set(key, geometry);
  return geometry;
}

function result(data: TypedArray, g: Geometry, dtype: NDArray['dtype']): NDArray {
  const shape = [g.batch, ...g.outSpatial, g.outChannels];
  return new NDArray(makeView(data, shape, contiguousStrides(shape), 0), dtype);
}

/** Offsets of each window position's first kernel entry (the kernel read through its strides). */
function windowOffsets(w: NDArray, r: number): Int32Array {
  const window = w.shape.slice(0, r);
  const size = window.reduce((a, c) => a * c, 1);
  const out = new Int32Array(size);
  for (let q = 0; q < size; q++) {
    let rest = q;
    let off = w.offset;
    for (let d = r - 1; d >= 0; d--) {
      off += (rest % window[d]) * w.strides[d];
      rest = Math.floor(rest / window[d]);
    }
    out[q] = off;
  }
  return out;
}

/** The plain loop: each output is one sum in a JS number, rounded once when stored. */
export function convDirect(x: NDArray, w: NDArray, p: ConvParams): NDArray {
  const g = geometryOf(x, w, p);
  const r = p.strides.length;
  const { batch, positions, windowSize, groupIn, groupOut, outChannels, table } = g;
  const out = allocate(x.dtype, batch * positions * outChannels);
  const X = x.data;
  const W = w.data;
  const xc = x.strides[r + 1];
  const wi = w.strides[r];
  const wo = w.strides[r + 1];
  const wq = windowOffsets(w, r);
  for (let n = 0; n < batch; n++) {
    const base = x.offset + n * x.strides[0];
    for (let pos = 0; pos < positions; pos++) {
      const row = (n * positions + pos) * outChannels;
      for (let co = 0; co < outChannels; co++) {
        const channel0 = base + Math.floor(co / groupOut) * groupIn * xc;
        let acc = 0;
        for (let q = 0; q < windowSize; q++) {
          const off = table[pos * windowSize + q];
          if (off < 0) continue;
          const xb = channel0 + off;
          const wb = wq[q] + co * wo;
          for (let ci = 0; ci < groupIn; ci++) acc += X[xb + ci * xc] * W[wb + ci * wi];
        }
        out[row + co] = acc;
      }
    }
  }
  return result(out, g, x.dtype);
}

/** Patch-matrix elements per block: a block's patches stay around a few MB. */
const PATCH_BLOCK_ELEMENTS = 1 << 20;

/**
 * The kernel as a matrix with one row per (window position, input channel) of a group and one
 * column per output channel, rows in the order the patches' columns use: window-major (`qc`, the
 * forward im2col's order) or channel-major (`cq`, the transposed im2col's). Read in place when
 * the kernel's strides make that order one uniform row stride (a contiguous kernel in `qc`, the
 * kernel gradient's transposed cotangent in `cq`), else gathered once into a scratch buffer.
 */
interface KernelMatrix {
  readonly data: Float32Array;
  readonly offset: number;
  readonly rowStride: number;
  readonly scratch: boolean;
}

function kernelMatrix(w: NDArray, r: number, order: 'qc' | 'cq'): KernelMatrix {
  const wq = windowOffsets(w, r);
  const windowSize = wq.length;
  const channels = w.shape[r];
  const outChannels = w.shape[r + 1];
  const wi = w.strides[r];
  const wo = w.strides[r + 1];
  const rowOffset = (row: number): number =>
    order === 'qc' ? wq[Math.floor(row / channels)] + (row % channels) * wi : wq[row % windowSize] + Math.floor(row / windowSize) * wi;
  const rows = windowSize * channels;
  const stride = rows > 1 ? rowOffset(1) - rowOffset(0) : outChannels;
  let uniform = wo === 1 && stride >= outChannels;
  for (let row = 0; uniform && row < rows; row++) uniform = rowOffset(row) === rowOffset(0) + row * stride;
  const W = w.data as Float32Array;
  if (uniform) return { data: W, offset: rowOffset(0), rowStride: stride, scratch: false };
  const data = takeBuffer('float32', rows * outChannels) as Float32Array;
  for (let row = 0; row < rows; row++) {
    const src = rowOffset(row);
    for (let o = 0; o < outChannels; o++) data[row * outChannels + o] = W[src + o * wo];
  }
  return { data, offset: 0, rowStride: outChannels, scratch: true };
}

/** C[0, len) += P[0, len): a block's partial product added to the accumulator. */
function addInto(acc: Float32Array, partial: Float32Array, len: number): void {
  for (let i = 0; i < len; i++) acc[i] += partial[i];
}

/**
 * Patch density below which the sparse gemm is tried. Lower than the sparse kernel's own
 * break-even (measured on a 784 x 128 weight): a convolution's products are narrow (32-64 output
 * channels), where each nonzero's row update does less work, and an input gradient's patches are
 * dense cotangents with padding zeros, which the sparse kernel ran 1.5x slower than the dense one.
 */
const SPARSE_PATCH_DENSITY = 0.25;

/** The fraction of nonzeros among about 4096 evenly spread entries of the m x k matrix A. */
function density(A: Float32Array, offset: number, rowStride: number, colStride: number, m: number, k: number): number {
  const total = m * k;
  const step = Math.max(1, Math.floor(total / 4096));
  let nonzero = 0;
  let seen = 0;
  for (let e = 0; e < total; e += step, seen++) {
    const i = Math.floor(e / k);
    if (A[offset + i * rowStride + (e - i * k) * colStride] !== 0) nonzero++;
  }
  return nonzero / Math.max(1, seen);
}

/** `gemm` through the sparse kernel when A is mostly zeros (spikes), the dense SIMD one otherwise. */
function multiply(...args: Parameters<typeof gemm>): void {
  const [A, aOffset, aRowStride, aColStride, , , , , , , m, k] = args;
  if (density(A, aOffset, aRowStride, aColStride, m, k) <= SPARSE_PATCH_DENSITY && sparseGemm(...args)) return;
  gemm(...args);
}

/**
 * float32: im2col blocks multiplied by the kernel in the SIMD gemm. Two layouts, chosen by where
 * the input's channels sit in memory:
 *
 * - channels contiguous (NHWC, every forward and input-gradient convolution): one patch row per
 *   output position, `window x channels` columns; each tap's channels are a contiguous run, and
 *   taps that continue each other in memory (stride 1 along the last spatial axis) are one run.
 * - batch contiguous, channels strided (the kernel gradient's operand, the input transposed to
 *   [C, ...spatial, N]): the patches are built transposed, one row per (channel, window position)
 *   and one column per (output position, example), so every copy is a run over the examples, and
 *   the transposed patches enter the gemm as a transposed A. The kernel (the transposed output
 *   cotangent) is then read in place in channel-major order, and the blocks run along the long
 *   summed axis, their products added up.
 */
export function convIm2col(x: NDArray, w: NDArray, p: ConvParams): NDArray {
  const g = geometryOf(x, w, p);
  const r = p.strides.length;
  const batchInner = p.featureGroupCount === 1 && x.strides[r + 1] !== 1 && (x.shape[0] === 1 || x.strides[0] === 1);
  const out = batchInner ? convBatchInner(x, w, g, r) : convChannelsInner(x, w, p, g, r);
  return result(out, g, 'float32');
}

function convChannelsInner(x: NDArray, w: NDArray, p: ConvParams, g: Geometry, r: number): Float32Array {
  const { batch, positions, windowSize, groupIn, groupOut, outChannels, table } = g;
  const groups = p.featureGroupCount;
  const rows = batch * positions;
  const cols = windowSize * groupIn;
  const out = takeBuffer('float32', rows * outChannels) as Float32Array;
  const kernel = kernelMatrix(w, r, 'qc');
  const X = x.data as Float32Array;
  const xb = x.strides[0];
  const xc = x.strides[r + 1];
  const blockRows = Math.max(1, Math.min(rows, Math.floor(PATCH_BLOCK_ELEMENTS / Math.max(1, cols))));
  const patches = takeBuffer('float32', blockRows * cols) as Float32Array;
  const partial = groups > 1 ? (takeBuffer('float32', blockRows * groupOut) as Float32Array) : null;
  for (let row0 = 0; row0 < rows; row0 += blockRows) {
    const m = Math.min(blockRows, rows - row0);
    for (let grp = 0; grp < groups; grp++) {
      if (xc === 1) {
        // Contiguous channels: the block's patches as runs (copyRuns), taps whose channels follow
        // each other in memory merged into one run, and padding taps into one run of zeros.
        runs.clear();
        for (let i = 0; i < m; i++) {
          const rowIndex = row0 + i;
          const n = Math.floor(rowIndex / positions);
          const t0 = (rowIndex - n * positions) * windowSize;
          const base = x.offset + n * xb + grp * groupIn;
          let dst = i * cols;
          let q = 0;
          while (q < windowSize) {
            const off = table[t0 + q];
            let len = groupIn;
            q++;
            if (off < 0) {
              while (q < windowSize && table[t0 + q] < 0) {
                len += groupIn;
                q++;
              }
              runs.push(-1, dst, len);
            } else {
              while (q < windowSize && table[t0 + q] === off + len) {
                len += groupIn;
                q++;
              }
              runs.push(base + off, dst, len);
            }
            dst += len;
          }
        }
        copyRuns(X, patches, runs);
      } else {
        for (let i = 0; i < m; i++) {
          const rowIndex = row0 + i;
          const n = Math.floor(rowIndex / positions);
          const t0 = (rowIndex - n * positions) * windowSize;
          const base = x.offset + n * xb + grp * groupIn * xc;
          let dst = i * cols;
          for (let q = 0; q < windowSize; q++, dst += groupIn) {
            const off = table[t0 + q];
            if (off < 0) patches.fill(0, dst, dst + groupIn);
            else for (let ci = 0, s = base + off; ci < groupIn; ci++, s += xc) patches[dst + ci] = X[s];
          }
        }
      }
      const target = partial ?? out;
      const targetOffset = partial ? 0 : row0 * outChannels;
      multiply(
        patches,
        0,
        cols,
        1,
        kernel.data,
        kernel.offset + grp * groupOut,
        kernel.rowStride,
        1,
        target,
        targetOffset,
        m,
        cols,
        groupOut,
      );
      if (partial) {
        for (let i = 0; i < m; i++) out.set(partial.subarray(i * groupOut, (i + 1) * groupOut), (row0 + i) * outChannels + grp * groupOut);
      }
    }
  }
  giveBuffer(patches, 'float32');
  if (partial) giveBuffer(partial, 'float32');
  if (kernel.scratch) giveBuffer(kernel.data, 'float32');
  return out;
}

function convBatchInner(x: NDArray, w: NDArray, g: Geometry, r: number): Float32Array {
  const { batch, positions, windowSize, groupIn: channels, outChannels, table } = g;
  // Columns of the transposed patches (and rows of the product): (output position, example).
  const cols = positions * batch;
  const depth = channels * windowSize;
  const kernel = kernelMatrix(w, r, 'cq');
  const X = x.data as Float32Array;
  const xc = x.strides[r + 1];
  const blockDepth = Math.max(1, Math.min(depth, Math.floor(PATCH_BLOCK_ELEMENTS / cols)));
  const patches = takeBuffer('float32', blockDepth * cols) as Float32Array;
  const acc = takeBuffer('float32', cols * outChannels) as Float32Array;
  const partial = blockDepth < depth ? (takeBuffer('float32', cols * outChannels) as Float32Array) : null;
  for (let k0 = 0; k0 < depth; k0 += blockDepth) {
    const kb = Math.min(blockDepth, depth - k0);
    // Each (channel, tap) row: one run of `batch` floats per output position (copyRuns), or
    // element by element when the runs are too short to pay for an entry each (one channel: the
    // first convolution's kernel gradient).
    if (batch >= MIN_RUN) runs.clear();
    for (let kk = 0; kk < kb; kk++) {
      const c = Math.floor((k0 + kk) / windowSize);
      const q = k0 + kk - c * windowSize;
      const base = x.offset + c * xc;
      let dst = kk * cols;
      for (let pos = 0; pos < positions; pos++, dst += batch) {
        const off = table[pos * windowSize + q];
        if (batch >= MIN_RUN) runs.push(off < 0 ? -1 : base + off, dst, batch);
        else if (off < 0) patches.fill(0, dst, dst + batch);
        else for (let b = 0, s = base + off; b < batch; b++) patches[dst + b] = X[s + b];
      }
    }
    if (batch >= MIN_RUN) copyRuns(X, patches, runs);
    const target = k0 === 0 ? acc : partial!;
    multiply(
      patches,
      0,
      1,
      cols,
      kernel.data,
      kernel.offset + k0 * kernel.rowStride,
      kernel.rowStride,
      1,
      target,
      0,
      cols,
      kb,
      outChannels,
    );
    if (k0 > 0) addInto(acc, partial!, cols * outChannels);
  }
  // (position, example) rows back to the output's (example, position) order.
  const out = takeBuffer('float32', batch * positions * outChannels) as Float32Array;
  for (let pos = 0; pos < positions; pos++) {
    for (let b = 0; b < batch; b++) {
      const src = (pos * batch + b) * outChannels;
      out.set(acc.subarray(src, src + outChannels), (b * positions + pos) * outChannels);
    }
  }
  giveBuffer(patches, 'float32');
  giveBuffer(acc, 'float32');
  if (partial) giveBuffer(partial, 'float32');
  if (kernel.scratch) giveBuffer(kernel.data, 'float32');
  return out;
}

/** The `conv` kernel: im2col + gemm for float32, the plain loop otherwise. */
export function convKernel(x: NDArray, w: NDArray, p: ConvParams): NDArray {
  return x.dtype === 'float32' ? convIm2col(x, w, p) : convDirect(x, w, p);
}
