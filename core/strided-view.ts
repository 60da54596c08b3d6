/**
 * A strided view (data, shape, stride, offset) with the scijs `ndarray` interface. The scijs
 * package builds its view classes with `new Function`, which a page's Content-Security-Policy
 * without 'unsafe-eval' forbids; this one class covers every rank and element type instead.
 */
import type ndarray from 'ndarray';
import type { TypedArray } from './dtype.js';

type DataTypeName = ndarray.DataType<TypedArray>;

function dataTypeName(data: TypedArray): DataTypeName {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint32Array) return 'uint32';
  return 'uint8';
}

export class StridedView implements ndarray.NdArray<TypedArray> {
  data: TypedArray;
  shape: number[];
  stride: number[];
  offset: number;

  constructor(data: TypedArray, shape: number[], stride: number[], offset: number) {
    this.data = data;
    this.shape = shape;
    this.stride = stride;
    this.offset = offset | 0;
  }

  get dtype(): DataTypeName {
    return dataTypeName(this.data);
  }
  get dimension(): number {
    return this.shape.length;
  }
  get size(): number {
    let n = 1;
    for (let i = 0; i < this.shape.length; i++) n *= this.shape[i];
    return n;
  }
  /** Axes from the smallest |stride| to the largest. */
  get order(): number[] {
    return this.stride
      .map((s, i) => [Math.abs(s), i])
      .sort((a, b) => a[0] - b[0] || a[1] - b[1])
      .map((p) => p[1]);
  }

  index(...idx: number[]): number {
    let p = this.offset;
    for (let i = 0; i < this.stride.length; i++) p += this.stride[i] * idx[i];
    return p;
  }
  get(...idx: number[]): number {
    return this.data[this.index(...idx)];
  }
  set(...idxAndValue: number[]): number {
    const value = idxAndValue[this.shape.length];
    this.data[this.index(...idxAndValue)] = value;
    return value;
  }

  /** Drops the first `i[d]` entries of axis d (negative or missing: keep the axis whole). */
  lo(...idx: number[]): StridedView {
    const shape = this.shape.slice();
    let offset = this.offset;
    for (let d = 0; d < shape.length; d++) {
      const i = idx[d];
      if (typeof i === 'number' && i >= 0) {
        offset += this.stride[d] * (i | 0);
        shape[d] -= i | 0;
      }
    }
    return new StridedView(this.data, shape, this.stride.slice(), offset);
  }
  /** Keeps the first `i[d]` entries of axis d (negative or missing: keep the axis whole). */
  hi(...idx: number[]): StridedView {
    const shape = this.shape.map((n, d) => (typeof idx[d] === 'number' && idx[d] >= 0 ? idx[d] | 0 : n));
    return new StridedView(this.data, shape, this.stride.slice(), this.offset);
  }
  /** Every `i[d]`-th entry of axis d; a negative step walks the axis backwards. */
  step(...idx: number[]): StridedView {
    const shape = this.shape.slice();
    const stride = this.stride.slice();
    let offset = this.offset;
    for (let d = 0; d < shape.length; d++) {
      const i = idx[d];
      if (typeof i !== 'number') continue;
      const s = i | 0;
      if (s < 0) {
        offset += stride[d] * (shape[d] - 1);
        shape[d] = Math.ceil(-shape[d] / s);
      } else {
        shape[d] = Math.ceil(shape[d] / s);
      }
      stride[d] *= s;
    }
    return new StridedView(this.data, shape, stride, offset);
  }
  /** Axis k of the result is axis `perm[k]` of this view (missing entries keep their axis). */
  transpose(...perm: number[]): StridedView {
    const axes = this.shape.map((_, k) => (perm[k] === undefined ? k : perm[k] | 0));
    return new StridedView(
      this.data,
      axes.map((a) => this.shape[a]),
      axes.map((a) => this.stride[a]),
      this.offset,
    );
  }
  get T(): StridedView {
    return this.transpose(...this.shape.map((_, k) => this.shape.length - 1 - k));
  }
  /** Fixes axis d at `i[d]` (a number >= 0) and drops it; other axes stay. */
  pick(...idx: (number | null)[]): StridedView {
    const shape: number[] = [];
    const stride: number[] = [];
    let offset = this.offset;
    for (let d = 0; d < this.shape.length; d++) {
      const i = idx[d];
      if (typeof i === 'number' && i >= 0) offset += this.stride[d] * (i | 0);
      else {
        shape.push(this.shape[d]);
        stride.push(this.stride[d]);
      }
    }
    return new StridedView(this.data, shape, stride, offset);
  }
}

/**
 * Copies `src` into `dst` element by element (equal shapes, any strides), as scijs
 * `ndarray-ops.assign` does.
 */
export function assignStrided(dst: ndarray.NdArray<TypedArray>, src: ndarray.NdArray<TypedArray>): void {
  const rank = dst.shape.length;
  const shape = dst.shape;
  for (let d = 0; d < rank; d++) {
    if (src.shape[d] !== shape[d]) throw new Error(`assignStrided: shapes differ ([${src.shape.join(', ')}] into [${shape.join(', ')}])`);
    if (shape[d] === 0) return;
  }
  const dd = dst.data;
  const sd = src.data;
  if (rank === 0) {
    dd[dst.offset] = sd[src.offset];
    return;
  }
  const last = rank - 1;
  const n = shape[last];
  const ds = dst.stride[last];
  const ss = src.stride[last];
  const counter = new Array<number>(rank).fill(0);
  let dp = dst.offset;
  let sp = src.offset;
  // Contiguous rows of one array type (a time-major scan output transposed to batch-major) are
  // copied with TypedArray.set, a memcpy: the element loop ran a 25x128x1000 float32 copy ~4x slower.
  const bulk = ds === 1 && ss === 1 && n >= 16 && Object.getPrototypeOf(dd) === Object.getPrototypeOf(sd);
  for (;;) {
    if (bulk) dd.set(sd.subarray(sp, sp + n), dp);
    else for (let i = 0, a = dp, b = sp; i < n; i++, a += ds, b += ss) dd[a] = sd[b];
    // Odometer over the outer axes: advance the innermost one that has room, rewind the ones after it.
    let d = last - 1;
    while (d >= 0) {
      counter[d]++;
      dp += dst.stride[d];
      sp += src.stride[d];
      if (counter[d] < shape[d]) break;
      dp -= dst.stride[d] * shape[d];
      sp -= src.stride[d] * shape[d];
      counter[d] = 0;
      d--;
    }
    if (d < 0) return;
  }
}
