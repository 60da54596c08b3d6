/**
 * CPU kernels of the `conv` primitive (layout in core/primitives.ts: lhs [batch, ...spatial, C],
 * rhs [...window, C / groups, O]). Both read their operands through strides, so transposed and
 * sliced views (the VJP's operands) need no copy of the input.
 *
 * - `convDirect`: a plain loop accumulating each output in a JS number (float64), any float dtype.
 * - `convIm2col` (float32): the windows of a block of output positions are copied into rows of a
 *   patch matrix (zeros where the window reads padding or a dilation hole), which is multiplied by
 *   the kernel, viewed as a [window * C / groups, O] matrix, in the WebAssembly SIMD gemm (and its
 *   sparse variant when the patches are mostly zeros: spike trains).
 */
import { allocate, type TypedArray } from '../dtype.js';
import { makeView, NDArray } from '../ndarray.js';
import { convOutputSpatial, type ConvParams } from '../primitives.js';
import { contiguousStrides } from '../shape.js';
import { giveBuffer, takeBuffer } from './pool.js';
import { gemm } from './wasm/index.js';
import { sparseGemm } from './wasm/sparse.js';

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

/** Patch-matrix rows per block: a block's patches stay around a few MB. */
const PATCH_BLOCK_ELEMENTS = 1 << 20;

/** float32: im2col blocks multiplied by the kernel in the SIMD gemm. */
export function convIm2col(x: NDArray, w: NDArray, p: ConvParams): NDArray {
  const g = geometryOf(x, w, p);
  const r = p.strides.length;
  const { batch, positions, windowSize, groupIn, groupOut, outChannels, table } = g;
  const groups = p.featureGroupCount;
  const rows = batch * positions;
  const cols = windowSize * groupIn;
  const out = takeBuffer('float32', rows * outChannels) as Float32Array;
  // The kernel as a row-major [window * groupIn, O] matrix (small: copied when it is a view).
  const wContiguous = w.isContiguous() && w.offset === 0 ? w : null;
  const kernel = (wContiguous ? w.data : w.toTyped()) as Float32Array;
  const X = x.data as Float32Array;
  const xc = x.strides[r + 1];
  const blockRows = Math.max(1, Math.min(rows, Math.floor(PATCH_BLOCK_ELEMENTS / Math.max(1, cols))));
  const patches = takeBuffer('float32', blockRows * cols) as Float32Array;
  const partial = groups > 1 ? (takeBuffer('float32', blockRows * groupOut) as Float32Array) : null;
  for (let row0 = 0; row0 < rows; row0 += blockRows) {
    const m = Math.min(blockRows, rows - row0);
    for (let grp = 0; grp < groups; grp++) {
      // im2col for this block and group.
      for (let i = 0; i < m; i++) {
        const rowIndex = row0 + i;
        const n = Math.floor(rowIndex / positions);
        const pos = rowIndex - n * positions;
        const base = x.offset + n * x.strides[0] + grp * groupIn * xc;
        let dst = i * cols;
        for (let q = 0; q < windowSize; q++) {
          const off = table[pos * windowSize + q];
          if (off < 0) {
            patches.fill(0, dst, dst + groupIn);
          } else if (xc === 1) {
            patches.set(X.subarray(base + off, base + off + groupIn), dst);
          } else {
            for (let ci = 0, s = base + off; ci < groupIn; ci++, s += xc) patches[dst + ci] = X[s];
          }
          dst += groupIn;
        }
      }
      const target = partial ?? out;
      const targetOffset = partial ? 0 : row0 * outChannels;
      const args = [patches, 0, cols, 1, kernel, grp * groupOut, outChannels, 1, target, targetOffset, m, cols, groupOut] as const;
      if (!sparseGemm(...args)) gemm(...args);
      if (partial) {
        for (let i = 0; i < m; i++) out.set(partial.subarray(i * groupOut, (i + 1) * groupOut), (row0 + i) * outChannels + grp * groupOut);
      }
    }
  }
  giveBuffer(patches, 'float32');
  if (partial) giveBuffer(partial, 'float32');
  return result(out, g, 'float32');
}

/** The `conv` kernel: im2col + gemm for float32, the plain loop otherwise. */
export function convKernel(x: NDArray, w: NDArray, p: ConvParams): NDArray {
  return x.dtype === 'float32' ? convIm2col(x, w, p) : convDirect(x, w, p);
}
