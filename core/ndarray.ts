import type ndarray from 'ndarray';
import { StridedView } from './strided-view.js';
import { allocate, coerceScalar, dtypeOfTyped, type DType, type TypedArray } from './dtype.js';
import { contiguousStrides, fmtShape, ShapeError, sizeOf, stridedOffsets } from './shape.js';
import { Tensor, type NestedArray } from './tensor.js';
import { backendNamed, getBackend, type DeviceBuffer, type DeviceMemory } from './backends.js';

/**
 * A view of `data` (no copy). The scijs `ndarray` package builds its view classes with
 * `new Function`, which a strict Content-Security-Policy forbids; StridedView has its interface.
 */
export function makeView(data: TypedArray, shape: readonly number[], stride: readonly number[], offset: number): NdView {
  return new StridedView(data, shape.slice(), stride.slice(), offset);
}

/** A scijs ndarray view over one of our typed arrays. */
export type NdView = ndarray.NdArray<TypedArray>;

/**
 * The caller's holds on memory that backends hand out, for `dispose` (core/dispose.ts). Per buffer
 * (a typed array, or a backend's DeviceBuffer): how many NDArray objects over it the caller may
 * still hold. A buffer is tracked from the moment a backend call returns it to the caller (the
 * results of an eager op or a jitted call, `toDevice`); from then on every NDArray made over it
 * outside a backend call adds one (views: reshape, slice, transpose, `fromTyped(x.data, ...)`), and
 * `dispose` takes one off per array and gives the memory back only at zero. So a view of a disposed
 * array keeps the buffer alive until it is disposed too (a view that is simply dropped keeps it
 * from being reused: the garbage collector frees it). A buffer never tracked (the caller's own
 * typed arrays) is never given back. NDArrays made while a backend call runs are its intermediates,
 * dead when it returns (its own reference counts recycle them), and are not counted.
 */
const holders = new WeakMap<object, number>();
/** Backend calls in progress (eager kernels and compiled programs; nested ones count too). */
let backendDepth = 0;

function addHolder(key: object): void {
  const n = holders.get(key);
  if (n !== undefined) holders.set(key, n + 1);
}

/** The buffer an array's values live in (shared by its views). */
function bufferOf(x: NDArray): object {
  return x.deviceBuffer ?? x.data;
}

/**
 * Internal (trace.ts `bind`, jit): runs a backend call on `inputs` (arguments and constants) and
 * counts its results as the caller's holds (see `holders`): a result over a buffer no input had
 * is a new buffer, held once per result object over it; a result over an input's buffer (a view)
 * adds one where that buffer is tracked; an input returned as is adds nothing. Nested calls (a
 * kernel that evaluates a jaxpr) leave the counting to the outermost one.
 */
export function backendCall(inputs: readonly NDArray[], run: () => NDArray[]): NDArray[] {
  backendDepth++;
  let outs: NDArray[];
  try {
    outs = run();
  } finally {
    backendDepth--;
  }
  if (backendDepth === 0) for (let i = 0; i < outs.length; i++) holdResult(inputs, outs, i);
  return outs;
}

function holdResult(inputs: readonly NDArray[], outs: readonly NDArray[], i: number): void {
  const o = outs[i];
  for (let j = 0; j < i; j++) if (outs[j] === o) return;
  for (const x of inputs) if (x === o) return;
  const key = bufferOf(o);
  for (const x of inputs) {
    if (bufferOf(x) === key) {
      addHolder(key);
      return;
    }
  }
  // A new buffer (perhaps recycled memory with a stale count from its previous life): its first
  // result sets the count, later results over it add one.
  for (let j = 0; j < i; j++) {
    if (bufferOf(outs[j]) === key) {
      addHolder(key);
      return;
    }
  }
  holders.set(key, 1);
}

/**
 * Internal (jit's donation): whether another array the caller may hold shares `x`'s buffer (a view
 * of it, or the array it is a view of), so the buffer must not be reused yet.
 */
export function sharesBuffer(x: NDArray): boolean {
  return (holders.get(bufferOf(x)) ?? 0) > 1;
}

/** Internal (`toDevice`): `x` holds a buffer just made for it. */
export function holdNewBuffer(x: NDArray): void {
  holders.set(bufferOf(x), 1);
}

/**
 * Internal (`dispose`): takes `x`'s hold off its buffer; true when that was the last one, so the
 * buffer may be reused. False for untracked buffers (their holders are unknown).
 */
export function dropHold(x: NDArray): boolean {
  const key = bufferOf(x);
  const n = holders.get(key);
  if (n === undefined) return false;
  if (n > 1) {
    holders.set(key, n - 1);
    return false;
  }
  holders.delete(key);
  return true;
}

/**
 * An immutable concrete array: a scijs `ndarray` view (data, shape, stride, offset) and a dtype.
 * Views (reshape of contiguous data, transpose, slice, broadcast with stride 0) share `data`.
 *
 * @example
 * const x = array([[1, 2], [3, 4]]);
 * x.shape; // [2, 2]
 * x.nd.get(1, 0); // 3
 */
export class NDArray extends Tensor {
  readonly dtype: DType;
  /** The host view; null while the values live only in a backend's memory (see `device`). */
  private view: NdView | null;
  private onDevice: DeviceValue | null;
  /**
   * Why the array is deleted, or null while it is usable: 'donated to jit(f)' (JAX deletes a
   * donated array, and so do we) or 'disposed' (`dispose`).
   */
  private deletedAs: string | null;

  constructor(nd: NdView, dtype?: DType) {
    super();
    this.view = nd;
    this.onDevice = null;
    this.deletedAs = null;
    this.dtype = dtype ?? dtypeOfTyped(nd.data);
    if (backendDepth === 0) addHolder(nd.data);
  }
  /** An array whose contiguous values are in `buffer`, in the memory of backend `backend`. */
  static fromDevice(backend: string, buffer: DeviceBuffer, shape: readonly number[]): NDArray {
    const memory = backendNamed(backend, 'NDArray.fromDevice').memory;
    if (memory === undefined) throw new Error(`NDArray.fromDevice: backend '${backend}' has no device memory`);
    if (buffer.size !== sizeOf(shape))
      throw new ShapeError(`NDArray.fromDevice: a buffer of ${buffer.size} elements does not fit shape ${fmtShape(shape)}`);
    const x = Object.create(NDArray.prototype) as NDArray;
    // Same fields in the same order as the constructor, so host and device arrays share one shape.
    x.view = null;
    x.onDevice = { backend, memory, buffer, shape: shape.slice() };
    x.deletedAs = null;
    (x as { dtype: DType }).dtype = buffer.dtype;
    if (backendDepth === 0) addHolder(buffer);
    return x;
  }
  /** The scijs view of the values on the host; a device array is read back (synchronously) first. */
  get nd(): NdView {
    const v = this.view;
    if (v !== null && this.deletedAs === null) return v;
    // A deleted array's memory may hold another array's values by now: never hand it out.
    if (this.deletedAs !== null) this.checkNotDeleted('NDArray (reading its values: nd, data, strides)');
    return this.readBackSync();
  }
  /** The backend whose memory holds the values, or null for host memory. */
  get device(): string | null {
    return this.onDevice === null ? null : this.onDevice.backend;
  }
  /** The device buffer holding the values (null for host arrays), for the backend that owns it. */
  get deviceBuffer(): DeviceBuffer | null {
    return this.onDevice === null ? null : this.onDevice.buffer;
  }
  /**
   * This array with its values on the host, on every backend: host arrays resolve at once, a
   * device array is read back asynchronously (the only way a WebGPU buffer can be read).
   */
  async read(): Promise<NDArray> {
    if (this.deletedAs !== null) this.checkNotDeleted('NDArray.read');
    const d = this.onDevice;
    if (d !== null && this.view === null) {
      const data = await d.memory.read(d.buffer);
      this.view ??= makeView(data, d.shape, contiguousStrides(d.shape), 0);
    }
    return this;
  }
  /**
   * A row-major copy of the values, read from any backend (see `read`): the asynchronous
   * `toTyped()`. (`data` is the host buffer itself, synchronous.)
   */
  async toTypedAsync(): Promise<TypedArray> {
    return (await this.read()).toTyped();
  }
  private readBackSync(): NdView {
    const d = this.onDevice!;
    if (d.memory.readSync === undefined) {
      throw new Error(
        `NDArray: the values live in backend '${d.backend}', which reads asynchronously; await x.read() (or x.toTypedAsync()) before using them synchronously`,
      );
    }
    const view = makeView(d.memory.readSync(d.buffer), d.shape, contiguousStrides(d.shape), 0);
    this.view = view;
    return view;
  }
  /** Internal (jit): marks the array deleted after donating it; reading its values then raises. */
  markDonated(where: string): void {
    this.deletedAs = `donated to ${where}`;
  }
  /** Internal (`dispose`): marks the array deleted; reading its values then raises. */
  markDisposed(): void {
    this.deletedAs = 'disposed';
  }
  /**
   * Whether the array was deleted: donated to a jitted call or disposed (`dispose`). Its memory may
   * hold another array's values by now, so any use of it raises.
   */
  get isDeleted(): boolean {
    return this.deletedAs !== null;
  }
  /**
   * Throws when the array was deleted (donated or disposed), naming `op`: its memory may already
   * hold a later result.
   */
  checkNotDeleted(op: string): void {
    const why = this.deletedAs;
    if (why === null) return;
    const what = `${op}: this ${this.dtype}${fmtShape(this.shape)} array was`;
    if (why === 'disposed')
      throw new TypeError(
        `${what} disposed (dispose() gave its memory back for reuse, so it may already hold another array's values); ` +
          'dispose an array only after its last use',
      );
    throw new TypeError(
      `${what} ${why} and deleted, as JAX deletes donated arrays ` +
        "(its memory may already hold a later result); use the call's outputs instead, or do not donate an array you still need",
    );
  }
  /** The same as checkNotDeleted (its name before `dispose` existed). */
  checkNotDonated(op: string): void {
    this.checkNotDeleted(op);
  }
  get shape(): readonly number[] {
    const v = this.view;
    return v !== null ? v.shape : this.onDevice!.shape;
  }
  get strides(): readonly number[] {
    return this.nd.stride;
  }
  get offset(): number {
    return this.nd.offset;
  }
  get data(): TypedArray {
    return this.nd.data;
  }
  concrete(): NDArray {
    return this;
  }
  /** True when the view is row-major contiguous (possibly with an offset). */
  isContiguous(): boolean {
    const expected = contiguousStrides(this.shape);
    for (let i = 0; i < expected.length; i++) if (this.shape[i] !== 1 && this.nd.stride[i] !== expected[i]) return false;
    return true;
  }
  override toTyped(): TypedArray {
    if (this.deletedAs !== null) this.checkNotDeleted('toTyped');
    const n = this.size;
    if (this.isContiguous()) return this.data.slice(this.offset, this.offset + n) as TypedArray;
    const out = allocate(this.dtype, n);
    const shape = this.shape;
    const stride = this.nd.stride;
    const rank = shape.length;
    const data = this.data;
    const inner = rank > 0 ? shape[rank - 1] : 1;
    const step = rank > 0 ? stride[rank - 1] : 0;
    const starts = stridedOffsets(shape.slice(0, -1), stride.slice(0, -1), this.offset);
    if (rank > 1 && step === 1 && inner >= 16) {
      // Contiguous rows (a transposed batch of vectors, a slice): copy them whole (memcpy); an
      // element loop costs ~10x more.
      for (let r = 0; r < starts.length; r++) out.set(data.subarray(starts[r], starts[r] + inner) as ArrayLike<number>, r * inner);
      return out;
    }
    for (let r = 0, i = 0; r < starts.length; r++) for (let c = 0, o = starts[r]; c < inner; c++, o += step) out[i++] = data[o];
    return out;
  }
  override toNested(): NestedArray {
    this.checkNotDeleted('toNested');
    const flat = this.toTyped();
    const shape = this.shape;
    if (shape.length === 0) return flat[0];
    let pos = 0;
    const build = (d: number): NestedArray[] => {
      const out: NestedArray[] = [];
      for (let i = 0; i < shape[d]; i++) out.push(d === shape.length - 1 ? flat[pos++] : build(d + 1));
      return out;
    };
    return build(0);
  }
  override toString(): string {
    if (this.deletedAs !== null) return `NDArray(${this.dtype}${fmtShape(this.shape)}, deleted: ${this.deletedAs})`;
    return `NDArray(${this.dtype}${fmtShape(this.shape)}, ${JSON.stringify(this.toNested())})`;
  }
}

/** Where a device array's values are: a buffer in one backend's memory. */
interface DeviceValue {
  readonly backend: string;
  readonly memory: DeviceMemory;
  readonly buffer: DeviceBuffer;
  readonly shape: readonly number[];
}

/**
 * A copy of `x` in the memory of backend `backend` (default: the active one), for backends that
 * have device memory; the values come back with `await y.read()` / `await y.toTypedAsync()`.
 */
export function toDevice(x: NDArray, backend: string = getBackend().name): NDArray {
  const memory = backendNamed(backend, 'toDevice').memory;
  if (memory === undefined) throw new Error(`toDevice: backend '${backend}' keeps arrays in host memory (no device memory)`);
  const y = NDArray.fromDevice(backend, memory.malloc(x.dtype, x.size, x.toTyped()), x.shape);
  holdNewBuffer(y);
  return y;
}

/** Wraps a contiguous typed array as an array of `shape`. */
export function fromTyped(data: TypedArray, shape: readonly number[], dtype?: DType): NDArray {
  if (data.length !== sizeOf(shape)) {
    throw new ShapeError(`array: ${data.length} values do not fit shape ${fmtShape(shape)} (${sizeOf(shape)} elements)`);
  }
  return new NDArray(makeView(data, shape.slice(), contiguousStrides(shape), 0), dtype);
}

/** Wraps a scijs ndarray (any strides) without copying. */
export function fromNdarray(nd: ndarray.NdArray<TypedArray>): NDArray {
  return new NDArray(new StridedView(nd.data, nd.shape.slice(), nd.stride.slice(), nd.offset));
}

export interface ArrayOptions {
  dtype?: DType;
  shape?: readonly number[];
}

function inferShape(value: NestedArray | readonly unknown[], where: string): number[] {
  const shape: number[] = [];
  let v: unknown = value;
  while (Array.isArray(v)) {
    shape.push(v.length);
    v = v[0];
  }
  void where;
  return shape;
}

/**
 * Creates a concrete array from a number, nested JS arrays, a typed array or an `ndarray`.
 * Numbers default to float32; typed arrays keep their dtype unless `dtype` is given.
 *
 * @example
 * array([[1, 2, 3]]).shape;           // [1, 3]
 * array(new Int32Array([1, 2]), { dtype: 'int32' });
 */
export function array(
  value: NestedArray | readonly NestedArray[] | TypedArray | NDArray | ndarray.NdArray<TypedArray>,
  options: ArrayOptions = {},
): NDArray {
  if (value instanceof NDArray)
    return options.dtype && options.dtype !== value.dtype ? fromTyped(convert(value.toTyped(), options.dtype), value.shape) : value;
  if (ArrayBuffer.isView(value)) {
    const typed = value as TypedArray;
    const shape = options.shape ?? [typed.length];
    const dtype = options.dtype ?? dtypeOfTyped(typed);
    return fromTyped(dtype === dtypeOfTyped(typed) ? typed : convert(typed, dtype), shape, dtype);
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'shape' in value && 'data' in value) {
    return fromNdarray(value as ndarray.NdArray<TypedArray>);
  }
  const dtype = options.dtype ?? 'float32';
  const shape = inferShape(value as NestedArray, 'array');
  const out = allocate(dtype, sizeOf(shape));
  let pos = 0;
  const fill = (v: unknown, d: number): void => {
    if (d === shape.length) {
      if (typeof v !== 'number' && typeof v !== 'boolean')
        throw new ShapeError(
          `array: expected a number at depth ${d}, got ${JSON.stringify(v)} (ragged nested array for shape ${fmtShape(shape)}?)`,
        );
      out[pos++] = coerceScalar(Number(v), dtype);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[d]) {
      throw new ShapeError(
        `array: ragged nested array: expected length ${shape[d]} at depth ${d} for shape ${fmtShape(shape)}, got ${Array.isArray(v) ? v.length : typeof v}`,
      );
    }
    for (const item of v) fill(item, d + 1);
  };
  fill(value, 0);
  const arr = fromTyped(out, shape, dtype);
  return options.shape ? reshapeView(arr, options.shape) : arr;
}

function convert(src: TypedArray, dtype: DType): TypedArray {
  const out = allocate(dtype, src.length);
  if (dtype === 'bool') for (let i = 0; i < src.length; i++) out[i] = src[i] ? 1 : 0;
  else out.set(src as ArrayLike<number>);
  return out;
}

/** A reshape that copies only when the view is not contiguous. */
export function reshapeView(x: NDArray, shape: readonly number[]): NDArray {
  if (sizeOf(shape) !== x.size)
    throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) to ${fmtShape(shape)}`);
  if (x.isContiguous()) return new NDArray(makeView(x.data, shape.slice(), contiguousStrides(shape), x.offset), x.dtype);
  return fromTyped(x.toTyped(), shape, x.dtype);
}

export function full(shape: readonly number[], value: number, dtype: DType = 'float32'): NDArray {
  const data = allocate(dtype, sizeOf(shape));
  if (!Object.is(value, 0)) data.fill(coerceScalar(value, dtype));
  return fromTyped(data, shape, dtype);
}
export function zeros(shape: readonly number[], dtype: DType = 'float32'): NDArray {
  return full(shape, 0, dtype);
}
export function ones(shape: readonly number[], dtype: DType = 'float32'): NDArray {
  return full(shape, 1, dtype);
}
export function scalar(value: number, dtype: DType = 'float32'): NDArray {
  return full([], value, dtype);
}
/** `[start, stop)` in steps of `step`, like numpy's arange. */
export function arange(start: number, stop?: number, step = 1, dtype: DType = 'int32'): NDArray {
  if (stop === undefined) [start, stop] = [0, start];
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const data = allocate(dtype, n);
  for (let i = 0; i < n; i++) data[i] = coerceScalar(start + i * step, dtype);
  return fromTyped(data, [n], dtype);
}

/**
 * Rows `indices` of a concrete array along axis 0, as a new array. Axes that are broadcast
 * (stride 0, e.g. a time axis made by tiling one image) stay broadcast: only the distinct data
 * is copied, so a batch of a time-tiled dataset costs what a batch of the images costs.
 *
 * With `{ donate: true }` the rows are copied into memory the active backend provides for inputs
 * passed *donated* to a jitted step (the CPU backend: pooled memory in its kernel arena, which
 * the step reads in place and recycles for the next batch instead of a fresh allocation per
 * step). Such a batch must not be used after it was donated.
 */
export function gatherRows(x: NDArray, indices: ArrayLike<number>, options: { readonly donate?: boolean } = {}): NDArray {
  if (x.ndim === 0) throw new ShapeError('gatherRows: cannot gather rows of a scalar');
  const n = x.shape[0];
  const broadcastAxes = x.shape.map((d, i) => i > 0 && d > 1 && x.strides[i] === 0);
  const compactShape = x.shape.map((d, i) => (broadcastAxes[i] ? 1 : d));
  const rowShape = compactShape.slice(1);
  const rowSize = sizeOf(rowShape);
  const backendBuffer = options.donate === true ? getBackend().inputBuffer : undefined;
  const out = backendBuffer ? backendBuffer(x.dtype, indices.length * rowSize) : allocate(x.dtype, indices.length * rowSize);
  const rowStrides = x.strides.slice(1).map((s, i) => (broadcastAxes[i + 1] ? 0 : s));
  const compactRow = makeView(out, [indices.length, ...rowShape], contiguousStrides([indices.length, ...rowShape]), 0);
  const expected = contiguousStrides(rowShape);
  if (rowShape.every((d, i) => d === 1 || rowStrides[i] === expected[i])) {
    // Contiguous rows (the usual dataset layout): one block copy per run of consecutive indices
    // when rows lie back to back (an unshuffled batch is one copy), else one per row.
    const rowsAdjacent = x.strides[0] === rowSize;
    for (let r = 0; r < indices.length;) {
      const i = indices[r];
      if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`gatherRows: index ${i} out of range for ${n} rows`);
      let run = 1;
      if (rowsAdjacent) while (r + run < indices.length && indices[r + run] === i + run && i + run < n) run++;
      const start = x.offset + i * x.strides[0];
      out.set(x.data.subarray(start, start + run * rowSize) as ArrayLike<number>, r * rowSize);
      r += run;
    }
  } else {
    for (let r = 0; r < indices.length; r++) {
      const i = indices[r];
      if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`gatherRows: index ${i} out of range for ${n} rows`);
      const src = makeView(x.data, rowShape, rowStrides, x.offset + i * x.strides[0]);
      const dst = compactRow.pick(r, ...new Array<null>(rowShape.length).fill(null));
      copyStrided(dst, src);
    }
  }
  const compact = new NDArray(compactRow, x.dtype);
  if (!broadcastAxes.some(Boolean)) return compact;
  const shape = [indices.length, ...x.shape.slice(1)];
  const strides = compact.strides.map((s, i) => (broadcastAxes[i] ? 0 : s));
  return new NDArray(makeView(out, shape, strides, 0), x.dtype);
}

function copyStrided(dst: NdView, src: NdView): void {
  const shape = src.shape;
  const rank = shape.length;
  const n = sizeOf(shape);
  const idx = new Array<number>(rank).fill(0);
  let s = src.offset;
  let d = dst.offset;
  for (let k = 0; k < n; k++) {
    dst.data[d] = src.data[s];
    for (let a = rank - 1; a >= 0; a--) {
      idx[a]++;
      s += src.stride[a];
      d += dst.stride[a];
      if (idx[a] < shape[a]) break;
      s -= src.stride[a] * shape[a];
      d -= dst.stride[a] * shape[a];
      idx[a] = 0;
    }
  }
}
