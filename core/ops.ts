/**
 * The user-facing array operations (numpy names and broadcasting), composed from primitives.
 * Binary ops promote dtypes and broadcast by explicit cast/reshape/broadcast_to, so primitives
 * only ever see equal shapes.
 */
import { isFloat, promoteTypes, type DType } from './dtype.js';
import { arange, scalar } from './ndarray.js';
import type { BinaryPrim, ComparePrim, UnaryPrim } from './primitives.js';
import { broadcastShapes, fmtShape, normalizeAxes, normalizeAxis, ShapeError, shapesEqual, sizeOf } from './shape.js';
import { Tensor } from './tensor.js';
import { bind1, broadcastSourceOf } from './trace.js';

/** Anything an op accepts: a tensor or a JS number (which takes the other operand's dtype). */
export type TensorLike = Tensor | number;

function asTensor(x: TensorLike, dtype: DType = 'float32'): Tensor {
  return typeof x === 'number' ? scalar(x, dtype) : x;
}

/** Converts two operands to one dtype; a JS number adopts the tensor's dtype (weak typing). */
function coerce(op: string, a: TensorLike, b: TensorLike): [Tensor, Tensor] {
  if (typeof a === 'number' && typeof b === 'number') return [scalar(a), scalar(b)];
  if (typeof a === 'number') return [scalar(a, (b as Tensor).dtype), b as Tensor];
  if (typeof b === 'number') return [a, scalar(b, a.dtype)];
  if (!(a instanceof Tensor) || !(b instanceof Tensor))
    throw new TypeError(`${op}: expected tensors or numbers, got ${typeof a} and ${typeof b}`);
  const dt = promoteTypes(a.dtype, b.dtype);
  return [cast(a, dt), cast(b, dt)];
}

/** Broadcasts `x` to `shape` (numpy rules): a reshape adding leading axes, then broadcast_to. */
export function broadcastTo(x: TensorLike, shape: readonly number[]): Tensor {
  const t = asTensor(x);
  if (shapesEqual(t.shape, shape)) return t;
  if (t.ndim > shape.length)
    throw new ShapeError(`broadcastTo: cannot broadcast ${fmtShape(t.shape)} to ${fmtShape(shape)} (rank ${t.ndim} > ${shape.length})`);
  broadcastShapes('broadcastTo', t.shape, shape);
  const padded = [...new Array<number>(shape.length - t.ndim).fill(1), ...t.shape];
  if (padded.some((d, i) => d !== 1 && d !== shape[i]))
    throw new ShapeError(`broadcastTo: cannot broadcast ${fmtShape(t.shape)} to ${fmtShape(shape)}`);
  const r = t.ndim === shape.length ? t : reshape(t, padded);
  return shapesEqual(r.shape, shape) ? r : bind1('broadcast_to', [r], { shape: shape.slice() });
}

/** The public function behind a primitive whose name differs, for error messages. */
const PUBLIC_NAME: Partial<Record<BinaryPrim | ComparePrim, string>> = {
  max: 'maximum',
  min: 'minimum',
  gt: 'greater',
  ge: 'greaterEqual',
  lt: 'less',
  le: 'lessEqual',
  eq: 'equal',
  ne: 'notEqual',
};

function binary(prim: BinaryPrim | ComparePrim, a: TensorLike, b: TensorLike): Tensor {
  const name = PUBLIC_NAME[prim] ?? prim;
  const [x, y] = coerce(name, a, b);
  const shape = broadcastShapes(name, x.shape, y.shape);
  return bind1(prim, [broadcastTo(x, shape), broadcastTo(y, shape)], {});
}

const unary =
  (prim: UnaryPrim) =>
  (x: TensorLike): Tensor =>
    bind1(prim, [asTensor(x)], {});

/** Elementwise a + b with broadcasting. @example add(array([1, 2]), 1) // [2, 3] */
export const add = (a: TensorLike, b: TensorLike): Tensor => binary('add', a, b);
export const sub = (a: TensorLike, b: TensorLike): Tensor => binary('sub', a, b);
export const mul = (a: TensorLike, b: TensorLike): Tensor => binary('mul', a, b);
/** True division: integer operands are promoted to float32 first (numpy's / and jnp.divide). */
export const div = (a: TensorLike, b: TensorLike): Tensor => {
  const [x, y] = coerce('div', a, b);
  return isFloat(x.dtype) ? binary('div', x, y) : binary('div', cast(x, 'float32'), cast(y, 'float32'));
};
export const maximum = (a: TensorLike, b: TensorLike): Tensor => binary('max', a, b);
export const minimum = (a: TensorLike, b: TensorLike): Tensor => binary('min', a, b);
export const pow = (a: TensorLike, b: TensorLike): Tensor => binary('pow', a, b);
export const less = (a: TensorLike, b: TensorLike): Tensor => binary('lt', a, b);
export const lessEqual = (a: TensorLike, b: TensorLike): Tensor => binary('le', a, b);
export const greater = (a: TensorLike, b: TensorLike): Tensor => binary('gt', a, b);
export const greaterEqual = (a: TensorLike, b: TensorLike): Tensor => binary('ge', a, b);
export const equal = (a: TensorLike, b: TensorLike): Tensor => binary('eq', a, b);
export const notEqual = (a: TensorLike, b: TensorLike): Tensor => binary('ne', a, b);

export const neg = unary('neg');
export const exp = unary('exp');
export const log = unary('log');
/** log(1 + x), accurate for tiny x (where 1 + x rounds to 1). */
export const log1p = unary('log1p');
export const sqrt = unary('sqrt');
export const tanh = unary('tanh');
/** The logistic function 1 / (1 + e^-x). */
export const sigmoid = unary('logistic');
export const abs = unary('abs');
export const sign = unary('sign');
export const floor = unary('floor');
export const square = (x: TensorLike): Tensor => mul(x, x);
export const reciprocal = (x: TensorLike): Tensor => div(1, asTensor(x));

/** Elementwise select: cond ? x : y, all three broadcast together. */
export function where(cond: Tensor, x: TensorLike, y: TensorLike): Tensor {
  if (cond.dtype !== 'bool') throw new TypeError(`where: condition must be bool, got ${cond.dtype}`);
  const [a, b] = coerce('where', x, y);
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, a.shape), b.shape);
  return bind1('where', [broadcastTo(cond, shape), broadcastTo(a, shape), broadcastTo(b, shape)], {});
}

/**
 * max(x, 0); its derivative is 0 at 0, like JAX's relu. NaN stays NaN (`x <= 0` is false for
 * NaN, so the select keeps x), as in JAX and PyTorch.
 */
export const relu = (x: TensorLike): Tensor => {
  const t = asTensor(x);
  return where(lessEqual(t, 0), 0, t);
};
/**
 * log(1 + e^x): log1p(e^x) for x <= 0 (accurate in float32 down to where it underflows) and
 * x + log1p(e^-x) above. Each branch sees only its own side's x, so neither overflows, and the
 * branch at 0 is smooth there: the derivative at 0 is 0.5 and the second 0.25, as JAX's.
 */
export const softplus = (x: TensorLike): Tensor => {
  const t = asTensor(x);
  const positive = greater(t, 0);
  const low = where(positive, 0, t);
  const high = where(positive, t, 0);
  return where(positive, add(high, log1p(exp(neg(high)))), log1p(exp(low)));
};

export function cast(x: TensorLike, dtype: DType): Tensor {
  const t = asTensor(x, dtype);
  return t.dtype === dtype ? t : bind1('cast', [t], { dtype });
}

/** Identity forward; blocks gradients backward. */
export const stopGradient = (x: TensorLike): Tensor => bind1('stop_gradient', [asTensor(x)], {});

// ----------------------------------------------------------------------------- shape ops

/** Reshape; one dimension may be -1. Copies nothing when the data is contiguous. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const neg1 = shape.filter((d) => d === -1).length;
  if (neg1 > 1) throw new ShapeError(`reshape: at most one -1 in ${fmtShape(shape)}`);
  let target = shape.slice();
  if (neg1 === 1) {
    const known = sizeOf(shape.filter((d) => d !== -1));
    if (known === 0 || x.size % known !== 0)
      throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) to ${fmtShape(shape)}`);
    target = shape.map((d) => (d === -1 ? x.size / known : d));
  }
  if (shapesEqual(target, x.shape)) return x;
  return bind1('reshape', [x], { shape: target });
}

export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const p = perm ? perm.map((a) => normalizeAxis('transpose', a, x.ndim)) : x.shape.map((_, i) => x.ndim - 1 - i);
  if (p.every((a, i) => a === i)) return x;
  return bind1('transpose', [x], { perm: p });
}

/** Swaps the last two axes (matrix transpose of a batch). */
export function matrixTranspose(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  [perm[x.ndim - 2], perm[x.ndim - 1]] = [perm[x.ndim - 1], perm[x.ndim - 2]];
  return transpose(x, perm);
}

export function expandDims(x: Tensor, axis: number): Tensor {
  const a = normalizeAxis('expandDims', axis, x.ndim + 1);
  const shape = x.shape.slice();
  shape.splice(a, 0, 1);
  return reshape(x, shape);
}

export function squeeze(x: Tensor, axis?: number | readonly number[]): Tensor {
  const axes =
    axis === undefined ? x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0) : normalizeAxes('squeeze', axis, x.ndim);
  for (const a of axes)
    if (x.shape[a] !== 1) throw new ShapeError(`squeeze: axis ${a} of ${fmtShape(x.shape)} has size ${x.shape[a]}, not 1`);
  return reshape(
    x,
    x.shape.filter((_, i) => !axes.includes(i)),
  );
}

/**
 * Slices `x`: `starts[i]` to `starts[i] + sizes[i]` along each axis (missing axes taken whole).
 * @example slice(array([[1, 2, 3]]), [0, 1], [1, 2]) // [[2, 3]]
 */
export function slice(x: Tensor, starts: readonly number[], sizes?: readonly number[]): Tensor {
  const st = x.shape.map((_, i) => starts[i] ?? 0);
  const lim = x.shape.map((d, i) => (sizes && sizes[i] !== undefined && sizes[i] >= 0 ? st[i] + sizes[i] : d));
  if (st.every((s) => s === 0) && lim.every((l, i) => l === x.shape[i])) return x;
  return bind1('slice', [x], { starts: st, limits: lim });
}

/** Element `index` along `axis`, removing that axis (a view). */
export function indexAxis(x: Tensor, axis: number, index: number): Tensor {
  const a = normalizeAxis('indexAxis', axis, x.ndim);
  const i = index < 0 ? index + x.shape[a] : index;
  if (i < 0 || i >= x.shape[a]) throw new ShapeError(`indexAxis: index ${index} out of range for axis ${a} of ${fmtShape(x.shape)}`);
  const starts = x.shape.map((_, k) => (k === a ? i : 0));
  const sizes = x.shape.map((d, k) => (k === a ? 1 : d));
  return squeeze(slice(x, starts, sizes), a);
}

export function pad(x: Tensor, low: readonly number[], high: readonly number[]): Tensor {
  return bind1('pad', [x], { low: low.slice(), high: high.slice() });
}

export function concatenate(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError('concatenate: needs at least one array');
  const a = normalizeAxis('concatenate', axis, xs[0].ndim);
  if (xs.length === 1) return xs[0];
  const dt = xs.map((x) => x.dtype).reduce(promoteTypes);
  return bind1(
    'concatenate',
    xs.map((x) => cast(x, dt)),
    { axis: a },
  );
}

export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError('stack: needs at least one array');
  const a = normalizeAxis('stack', axis, xs[0].ndim + 1);
  for (const x of xs)
    if (!shapesEqual(x.shape, xs[0].shape)) throw new ShapeError(`stack: shapes differ: ${fmtShape(xs[0].shape)} and ${fmtShape(x.shape)}`);
  return concatenate(
    xs.map((x) => expandDims(x, a)),
    a,
  );
}

// ----------------------------------------------------------------------------- reductions

export interface ReduceOptions {
  keepdims?: boolean;
}

function reduce(
  prim: 'reduce_sum' | 'reduce_max' | 'reduce_min',
  x: Tensor,
  axis: number | readonly number[] | undefined,
  keepdims: boolean,
): Tensor {
  const axes = normalizeAxes(prim, axis, x.ndim);
  const r = axes.length === 0 ? x : bind1(prim, [x], { axes });
  return keepdims
    ? reshape(
        r,
        x.shape.map((d, i) => (axes.includes(i) ? 1 : d)),
      )
    : r;
}

/** Sum over `axis` (all axes when omitted). */
export const sum = (x: Tensor, axis?: number | readonly number[], opts: ReduceOptions = {}): Tensor =>
  reduce('reduce_sum', x, axis, opts.keepdims ?? false);
export const max = (x: Tensor, axis?: number | readonly number[], opts: ReduceOptions = {}): Tensor =>
  reduce('reduce_max', x, axis, opts.keepdims ?? false);
export const min = (x: Tensor, axis?: number | readonly number[], opts: ReduceOptions = {}): Tensor =>
  reduce('reduce_min', x, axis, opts.keepdims ?? false);
export function mean(x: Tensor, axis?: number | readonly number[], opts: ReduceOptions = {}): Tensor {
  const axes = normalizeAxes('mean', axis, x.ndim);
  const count = axes.reduce((a, i) => a * x.shape[i], 1);
  return div(sum(isFloat(x.dtype) ? x : cast(x, 'float32'), axes, opts), count);
}
export function argmax(x: Tensor, axis = -1): Tensor {
  return bind1('argmax', [x], { axis: normalizeAxis('argmax', axis, x.ndim) });
}
/** log(sum(exp(x))) along axis, shifted by the max for stability. */
export function logsumexp(x: Tensor, axis: number | readonly number[] = -1, opts: ReduceOptions = {}): Tensor {
  // Shift by the max for stability; a row whose max is infinite shifts by 0, so an all -Infinity
  // row gives -Infinity and a row holding +Infinity gives +Infinity (as JAX), not inf - inf = NaN.
  const mx = max(x, axis, { keepdims: true });
  const m = stopGradient(where(equal(abs(mx), Infinity), 0, mx));
  const s = log(sum(exp(sub(x, m)), axis, { keepdims: true }));
  const out = add(s, m);
  return opts.keepdims ? out : squeeze(out, normalizeAxes('logsumexp', axis, x.ndim));
}
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return sub(x, logsumexp(x, axis, { keepdims: true }));
}
export function softmax(x: Tensor, axis = -1): Tensor {
  return exp(logSoftmax(x, axis));
}

// ----------------------------------------------------------------------------- linear algebra

/**
 * Matrix product with numpy semantics: 1-D operands are promoted, leading (batch) axes broadcast.
 * A rank-2 right operand is applied to the flattened leading axes of the left in one product.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 0 || b.ndim === 0)
    throw new ShapeError(`matmul: operands must have rank >= 1, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  const [x, y] = coerce('matmul', a, b);
  const x2 = x.ndim === 1 ? reshape(x, [1, x.shape[0]]) : x;
  const y2 = y.ndim === 1 ? reshape(y, [y.shape[0], 1]) : y;
  const k = x2.shape[x2.ndim - 1];
  if (k !== y2.shape[y2.ndim - 2])
    throw new ShapeError(`matmul: inner dimensions differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)} (${k} vs ${y2.shape[y2.ndim - 2]})`);
  let out: Tensor;
  const xb = y2.ndim === 2 && x2.ndim > 2 ? broadcastSourceOf(x2) : null;
  if (xb !== null && !xb.axes.includes(x2.ndim - 1)) {
    // Rows that are copies along broadcast axes (a time-tiled input) are multiplied once; the
    // result is broadcast back. Exact, and the gradient of y2 then sums before its matmul too.
    return finishMatmul(broadcastTo(matmul(xb.source, y2), [...x2.shape.slice(0, -1), y2.shape[1]]), a, b);
  }
  if (y2.ndim === 2 && x2.ndim > 2) {
    const lead = x2.shape.slice(0, -1);
    const flat = bind1('matmul', [reshape(x2, [sizeOf(lead), k]), y2], {});
    out = reshape(flat, [...lead, y2.shape[1]]);
  } else {
    let batch: number[];
    try {
      batch = broadcastShapes('matmul', x2.shape.slice(0, -2), y2.shape.slice(0, -2));
    } catch {
      throw new ShapeError(`matmul: batch dimensions of ${fmtShape(a.shape)} and ${fmtShape(b.shape)} do not broadcast`);
    }
    const xb = broadcastTo(x2, [...batch, ...x2.shape.slice(-2)]);
    const yb = broadcastTo(y2, [...batch, ...y2.shape.slice(-2)]);
    out = bind1('matmul', [xb, yb], {});
  }
  return finishMatmul(out, a, b);
}

function finishMatmul(out: Tensor, a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 1) out = squeeze(out, out.ndim - 2);
  if (b.ndim === 1) out = squeeze(out, out.ndim - 1);
  return out;
}

// ----------------------------------------------------------------------------- indexing

export function takeAlongAxis(x: Tensor, indices: Tensor, axis: number): Tensor {
  const a = normalizeAxis('takeAlongAxis', axis, x.ndim);
  return bind1('take_along_axis', [x, cast(indices, 'int32')], { axis: a });
}

/** Elements of `x` at integer `indices` along `axis` (numpy's take). */
export function take(x: Tensor, indices: Tensor, axis = 0): Tensor {
  const a = normalizeAxis('take', axis, x.ndim);
  const flat = reshape(cast(indices, 'int32'), [indices.size]);
  const idxShape = x.shape.map((d, i) => (i === a ? indices.size : 1));
  const target = x.shape.map((d, i) => (i === a ? indices.size : d));
  const picked = takeAlongAxis(x, broadcastTo(reshape(flat, idxShape), target), a);
  return reshape(picked, [...x.shape.slice(0, a), ...indices.shape, ...x.shape.slice(a + 1)]);
}

export function argsort(x: Tensor, axis = -1): Tensor {
  return bind1('argsort', [x], { axis: normalizeAxis('argsort', axis, x.ndim) });
}

export function sort(x: Tensor, axis = -1): Tensor {
  return takeAlongAxis(x, argsort(x, axis), axis);
}

/** One-hot rows for integer labels: shape [...labels.shape, numClasses]. */
export function oneHot(labels: Tensor, numClasses: number, dtype: DType = 'float32'): Tensor {
  const iota = arange(numClasses);
  return cast(equal(expandDims(cast(labels, 'int32'), -1), iota), dtype);
}

// ----------------------------------------------------------------------------- creation helpers

export function zerosLike(x: Tensor, dtype: DType = x.dtype): Tensor {
  return broadcastTo(scalar(0, dtype), x.shape);
}
export function onesLike(x: Tensor, dtype: DType = x.dtype): Tensor {
  return broadcastTo(scalar(1, dtype), x.shape);
}
export function fullLike(x: Tensor, value: number, dtype: DType = x.dtype): Tensor {
  return broadcastTo(scalar(value, dtype), x.shape);
}

// ----------------------------------------------------------------------------- fluent methods

declare module './tensor.js' {
  interface Tensor {
    add(other: TensorLike): Tensor;
    sub(other: TensorLike): Tensor;
    mul(other: TensorLike): Tensor;
    div(other: TensorLike): Tensor;
    pow(other: TensorLike): Tensor;
    neg(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    matmul(other: Tensor): Tensor;
    sum(axis?: number | readonly number[], opts?: ReduceOptions): Tensor;
    mean(axis?: number | readonly number[], opts?: ReduceOptions): Tensor;
    max(axis?: number | readonly number[], opts?: ReduceOptions): Tensor;
    min(axis?: number | readonly number[], opts?: ReduceOptions): Tensor;
    argmax(axis?: number): Tensor;
    reshape(shape: readonly number[]): Tensor;
    transpose(perm?: readonly number[]): Tensor;
    astype(dtype: DType): Tensor;
  }
}

Object.assign(Tensor.prototype, {
  add(this: Tensor, o: TensorLike) {
    return add(this, o);
  },
  sub(this: Tensor, o: TensorLike) {
    return sub(this, o);
  },
  mul(this: Tensor, o: TensorLike) {
    return mul(this, o);
  },
  div(this: Tensor, o: TensorLike) {
    return div(this, o);
  },
  pow(this: Tensor, o: TensorLike) {
    return pow(this, o);
  },
  neg(this: Tensor) {
    return neg(this);
  },
  exp(this: Tensor) {
    return exp(this);
  },
  log(this: Tensor) {
    return log(this);
  },
  matmul(this: Tensor, o: Tensor) {
    return matmul(this, o);
  },
  sum(this: Tensor, axis?: number | readonly number[], opts?: ReduceOptions) {
    return sum(this, axis, opts);
  },
  mean(this: Tensor, axis?: number | readonly number[], opts?: ReduceOptions) {
    return mean(this, axis, opts);
  },
  max(this: Tensor, axis?: number | readonly number[], opts?: ReduceOptions) {
    return max(this, axis, opts);
  },
  min(this: Tensor, axis?: number | readonly number[], opts?: ReduceOptions) {
    return min(this, axis, opts);
  },
  argmax(this: Tensor, axis?: number) {
    return argmax(this, axis);
  },
  reshape(this: Tensor, shape: readonly number[]) {
    return reshape(this, shape);
  },
  transpose(this: Tensor, perm?: readonly number[]) {
    return transpose(this, perm);
  },
  astype(this: Tensor, dtype: DType) {
    return cast(this, dtype);
  },
});
