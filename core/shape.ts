/** Shape utilities and the library's error types. */

export type Shape = readonly number[];

/** Thrown for shape or argument mismatches; the message names the op and the shapes. */
export class ShapeError extends Error {
  override name = 'ShapeError';
}

export function fmtShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Row-major strides of a contiguous array. */
export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** Numpy broadcasting of two shapes; throws a ShapeError naming `op` on mismatch. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together (axis ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Normalises a possibly negative axis; throws naming `op`. */
export function normalizeAxis(op: string, axis: number, ndim: number): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) {
    throw new ShapeError(`${op}: axis ${axis} is out of range for an array of rank ${ndim}`);
  }
  return a;
}

export function normalizeAxes(op: string, axes: number | readonly number[] | undefined, ndim: number): number[] {
  if (axes === undefined) return Array.from({ length: ndim }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : axes;
  const out = list.map((a) => normalizeAxis(op, a, ndim));
  if (new Set(out).size !== out.length) throw new ShapeError(`${op}: repeated axis in ${JSON.stringify(list)}`);
  return out.sort((x, y) => x - y);
}

/**
 * The flat offsets of every position of a strided view over `shape` (row-major order), starting
 * at `offset`: with a view's outer axes, the start of each of its rows.
 */
export function stridedOffsets(shape: Shape, strides: readonly number[], offset: number): Int32Array {
  const out = new Int32Array(sizeOf(shape));
  const idx = new Array<number>(shape.length).fill(0);
  let o = offset;
  for (let r = 0; r < out.length; r++) {
    out[r] = o;
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d]++;
      o += strides[d];
      if (idx[d] < shape[d]) break;
      o -= strides[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Strides that give `shape` the same elements, in row-major order, as a view of `shape0` with
 * `strides0` (numpy's no-copy reshape): possible when every group of old axes that merges into
 * new ones is laid out as one run of equal steps (each axis's stride is the next one's times its
 * size), e.g. splitting an axis of a cropped or transposed view. Null when a copy is needed.
 */
export function reshapeStrides(shape0: readonly number[], strides0: readonly number[], shape: readonly number[]): number[] | null {
  const size = shape0.reduce((a, d) => a * d, 1);
  if (size === 0) return contiguousStrides(shape);
  // Size-1 axes carry no layout: drop them from the old view, give them any stride in the new one.
  const oldShape: number[] = [];
  const oldStrides: number[] = [];
  shape0.forEach((d, i) => {
    if (d !== 1) {
      oldShape.push(d);
      oldStrides.push(strides0[i]);
    }
  });
  const out = new Array<number>(shape.length).fill(0);
  let oi = 0;
  let ni = 0;
  while (ni < shape.length && oi < oldShape.length) {
    // The smallest runs of old axes [oi, oj) and new axes [ni, nj) with equal sizes.
    let np = shape[ni];
    let op = oldShape[oi];
    let nj = ni + 1;
    let oj = oi + 1;
    while (np !== op) {
      if (np < op) np *= shape[nj++];
      else op *= oldShape[oj++];
    }
    for (let k = oi; k < oj - 1; k++) if (oldStrides[k] !== oldStrides[k + 1] * oldShape[k + 1]) return null;
    out[nj - 1] = oldStrides[oj - 1];
    for (let k = nj - 1; k > ni; k--) out[k - 1] = out[k] * shape[k];
    ni = nj;
    oi = oj;
  }
  // Trailing size-1 new axes: a stride that keeps them harmless.
  for (let k = ni; k < shape.length; k++) out[k] = 1;
  return out;
}
