/**
 * Convolutions and pooling: the user ops over the `conv` primitive (channels-last like Keras by
 * default, channels-first accepted), the transposed convolutions its VJP is made of, and
 * max / average / sum pooling composed from gathers and reductions (so their gradients, and the
 * gradients of those, come from the existing rules).
 */
import { promoteTypes } from './dtype.js';
import { arange, fromTyped } from './ndarray.js';
import * as ops from './ops.js';
import { convOutputSpatial, type ConvParams } from './primitives.js';
import { fmtShape, ShapeError, sizeOf } from './shape.js';
import { Tensor } from './tensor.js';
import { bind1, broadcastSourceOf } from './trace.js';

/** 'valid' (no padding), 'same' (output size ceil(input / stride)), 'causal' (all padding before), or [low, high] per spatial axis. */
export type Padding = 'valid' | 'same' | 'causal' | readonly (readonly [number, number])[];
/** Where the channel axis sits: last ([batch, ...spatial, channels], the default) or first ([batch, channels, ...spatial]). */
export type DataFormat = 'channelsLast' | 'channelsFirst';

export interface ConvOptions {
  /** Window steps per spatial axis (a number applies to every axis). Default 1. */
  strides?: number | readonly number[];
  /** Default 'valid' (Keras's default). */
  padding?: Padding;
  /** Gaps between the window's taps (Keras's dilation_rate, XLA's rhs dilation). Default 1. */
  dilation?: number | readonly number[];
  /** Zeros inserted between input elements (a transposed convolution's stride). Default 1. */
  lhsDilation?: number | readonly number[];
  /** Channel groups: input and output channels split into this many independent convolutions. */
  groups?: number;
  /** Where the channels are: 'channelsLast' [..., spatial, C] (default) or 'channelsFirst' [..., C, spatial]. */
  dataFormat?: DataFormat;
}

function perAxis(op: string, name: string, v: number | readonly number[] | undefined, r: number, fallback: number): number[] {
  if (v === undefined) return new Array<number>(r).fill(fallback);
  const list = typeof v === 'number' ? new Array<number>(r).fill(v) : v.slice();
  if (list.length !== r) throw new ShapeError(`${op}: ${name} needs ${r} entries (one per spatial axis), got ${JSON.stringify(v)}`);
  if (list.some((e) => !Number.isInteger(e) || e < 1))
    throw new RangeError(`${op}: ${name} must be positive integers, got ${JSON.stringify(v)}`);
  return list;
}

/** Padding per spatial axis as [low, high] lists (TensorFlow's 'same': the odd element goes high). */
function resolvePadding(
  op: string,
  padding: Padding,
  inSpatial: readonly number[],
  window: readonly number[],
  strides: readonly number[],
  dilation: readonly number[],
  lhsDilation: readonly number[],
): [number[], number[]] {
  const r = inSpatial.length;
  if (typeof padding !== 'string') {
    if (
      !Array.isArray(padding) ||
      padding.length !== r ||
      padding.some((p: readonly number[]) => p.length !== 2 || !p.every((e) => Number.isInteger(e)))
    ) {
      throw new ShapeError(
        `${op}: padding must be 'valid', 'same', 'causal' or ${r} [low, high] integer pairs, got ${JSON.stringify(padding)}`,
      );
    }
    return [padding.map((p) => p[0]), padding.map((p) => p[1])];
  }
  const effective = window.map((k, i) => (k - 1) * dilation[i] + 1);
  if (padding === 'valid') return [new Array<number>(r).fill(0), new Array<number>(r).fill(0)];
  if (padding === 'causal') {
    if (r !== 1) throw new ShapeError(`${op}: 'causal' padding is for one spatial axis, got ${r}`);
    return [[effective[0] - 1], [0]];
  }
  if (padding !== 'same')
    throw new ShapeError(`${op}: unknown padding '${padding}' (expected 'valid', 'same', 'causal' or [low, high] pairs)`);
  const low: number[] = [];
  const high: number[] = [];
  inSpatial.forEach((d, i) => {
    const dilated = (d - 1) * lhsDilation[i] + 1;
    const out = Math.ceil(dilated / strides[i]);
    const total = Math.max((out - 1) * strides[i] + effective[i] - dilated, 0);
    low.push(Math.floor(total / 2));
    high.push(total - Math.floor(total / 2));
  });
  return [low, high];
}

/** Moves channels last (channelsFirst input) or back; identity for channelsLast. */
function channelsToLast(x: Tensor, r: number, format: DataFormat): Tensor {
  if (format === 'channelsLast') return x;
  const lead = x.ndim - r - 1;
  const perm = [...Array.from({ length: lead }, (_, i) => i), ...Array.from({ length: r }, (_, i) => lead + 1 + i), lead];
  return ops.transpose(x, perm);
}
function channelsFromLast(y: Tensor, r: number, format: DataFormat): Tensor {
  if (format === 'channelsLast') return y;
  const lead = y.ndim - r - 1;
  const perm = [...Array.from({ length: lead }, (_, i) => i), lead + r, ...Array.from({ length: r }, (_, i) => lead + i)];
  return ops.transpose(y, perm);
}

function checkFormat(op: string, format: string): DataFormat {
  if (format !== 'channelsLast' && format !== 'channelsFirst')
    throw new RangeError(`${op}: dataFormat must be 'channelsLast' or 'channelsFirst', got '${format}'`);
  return format;
}

/**
 * Convolution (cross-correlation, as in every deep learning library) with as many spatial axes as
 * the kernel has beyond its last two: x [...batch, ...spatial, C] (channelsLast) or
 * [...batch, C, ...spatial] (channelsFirst), kernel [...window, C / groups, outChannels] (Keras's
 * layout in both formats). Any number of leading batch axes; a batch axis along which x is a
 * broadcast (a time-tiled image) is convolved once and broadcast back.
 *
 * @example
 * const y = convGeneral(images, kernel, { strides: 2, padding: 'same' }); // [N, 28, 28, 1] -> [N, 14, 14, O]
 */
export function convGeneral(x: Tensor, kernel: Tensor, options: ConvOptions = {}): Tensor {
  return convImpl('convGeneral', x, kernel, options);
}

/** 1-D convolution: x [...batch, length, C], kernel [width, C / groups, O]. */
export function conv1d(x: Tensor, kernel: Tensor, options: ConvOptions = {}): Tensor {
  if (kernel.ndim !== 3) throw new ShapeError(`conv1d: expected a kernel [width, in, out], got ${fmtShape(kernel.shape)}`);
  return convImpl('conv1d', x, kernel, options);
}

/** 2-D convolution: x [...batch, height, width, C], kernel [kh, kw, C / groups, O]. */
export function conv2d(x: Tensor, kernel: Tensor, options: ConvOptions = {}): Tensor {
  if (kernel.ndim !== 4) throw new ShapeError(`conv2d: expected a kernel [height, width, in, out], got ${fmtShape(kernel.shape)}`);
  return convImpl('conv2d', x, kernel, options);
}

function convImpl(op: string, input: Tensor, kernelIn: Tensor, options: ConvOptions): Tensor {
  if (!(input instanceof Tensor) || !(kernelIn instanceof Tensor))
    throw new TypeError(`${op}: expected tensors for the input and the kernel`);
  const r = kernelIn.ndim - 2;
  if (r < 1) throw new ShapeError(`${op}: the kernel needs at least 3 axes [...window, in, out], got ${fmtShape(kernelIn.shape)}`);
  if (input.ndim < r + 2)
    throw new ShapeError(
      `${op}: a kernel ${fmtShape(kernelIn.shape)} has ${r} spatial axes, so the input needs at least ${r + 2} axes [batch, ...spatial, channels], got ${fmtShape(input.shape)}`,
    );
  const format = checkFormat(op, options.dataFormat ?? 'channelsLast');
  const dtype = promoteTypes(input.dtype, kernelIn.dtype);
  const x = channelsToLast(ops.cast(input, dtype), r, format);
  const kernel = ops.cast(kernelIn, dtype);
  const groups = options.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw new RangeError(`${op}: groups must be a positive integer, got ${groups}`);
  const channels = x.shape[x.ndim - 1];
  if (kernel.shape[r] * groups !== channels) {
    throw new ShapeError(
      `${op}: the kernel ${fmtShape(kernel.shape)} takes ${kernel.shape[r]} input channels per group (${groups} group(s)), but the input ${fmtShape(input.shape)} has ${channels} channels`,
    );
  }
  const strides = perAxis(op, 'strides', options.strides, r, 1);
  const dilation = perAxis(op, 'dilation', options.dilation, r, 1);
  const lhsDilation = perAxis(op, 'lhsDilation', options.lhsDilation, r, 1);
  const spatial = x.shape.slice(x.ndim - r - 1, x.ndim - 1);
  const window = kernel.shape.slice(0, r);
  const [padLow, padHigh] = resolvePadding(op, options.padding ?? 'valid', spatial, window, strides, dilation, lhsDilation);
  const params: ConvParams = { strides, padLow, padHigh, lhsDilation, rhsDilation: dilation, featureGroupCount: groups };
  const outSpatial = convOutputSpatial(spatial, window, params);
  if (typeof outSpatial === 'string')
    throw new ShapeError(`${op}: input ${fmtShape(input.shape)}, kernel ${fmtShape(kernel.shape)}: ${outSpatial}`);
  const lead = x.shape.slice(0, x.ndim - r - 1);
  const outShape = [...lead, ...outSpatial, kernel.shape[r + 1]];
  const b = lead.length > 0 ? broadcastSourceOf(x) : null;
  let y: Tensor;
  if (b !== null && b.axes.every((a) => a < lead.length)) {
    // Copies along broadcast batch axes (a time-tiled image) are convolved once: exact, and the
    // kernel's gradient then sums over those axes before its convolution.
    y = ops.broadcastTo(convFlat(b.source, kernel, params, r), outShape);
  } else {
    y = convFlat(x, kernel, params, r);
  }
  return channelsFromLast(y, r, format);
}

/**
 * The output spatial sizes of `convGeneral` (or a pooling op, whose window is a kernel's) for an
 * input with these spatial sizes, without computing anything: for layers' output shapes.
 */
export function convOutputShape(
  spatial: readonly number[],
  window: readonly number[],
  options: Omit<ConvOptions, 'groups' | 'dataFormat'> = {},
  op = 'convOutputShape',
): number[] {
  const r = window.length;
  if (spatial.length !== r) throw new ShapeError(`${op}: ${spatial.length} spatial sizes for a ${r}-D window`);
  const strides = perAxis(op, 'strides', options.strides, r, 1);
  const dilation = perAxis(op, 'dilation', options.dilation, r, 1);
  const lhsDilation = perAxis(op, 'lhsDilation', options.lhsDilation, r, 1);
  const [padLow, padHigh] = resolvePadding(op, options.padding ?? 'valid', spatial, window, strides, dilation, lhsDilation);
  const out = convOutputSpatial(spatial, window, { strides, padLow, padHigh, lhsDilation, rhsDilation: dilation, featureGroupCount: 1 });
  if (typeof out === 'string') throw new ShapeError(`${op}: spatial sizes ${fmtShape(spatial)}, window ${fmtShape(window)}: ${out}`);
  return out;
}

/** The primitive over leading axes flattened into one batch axis. */
function convFlat(x: Tensor, kernel: Tensor, params: ConvParams, r: number): Tensor {
  const lead = x.shape.slice(0, x.ndim - r - 1);
  const flat = lead.length === 1 ? x : ops.reshape(x, [sizeOf(lead), ...x.shape.slice(lead.length)]);
  const y = bind1('conv', [flat, kernel], params);
  return lead.length === 1 ? y : ops.reshape(y, [...lead, ...y.shape.slice(1)]);
}

// ----------------------------------------------------------------------------- the VJP's convolutions

/** The kernel reversed along its window axes (a gather, so it is differentiable). */
function flipWindow(kernel: Tensor, r: number): Tensor {
  let k = kernel;
  for (let d = 0; d < r; d++) if (k.shape[d] > 1) k = ops.take(k, arange(k.shape[d] - 1, -1, -1), d);
  return k;
}

/**
 * The cotangent of a conv's input: a transposed convolution of the output cotangent with the
 * flipped kernel, input and output channels exchanged within each group (JAX's conv VJP).
 */
export function convInputGrad(ct: Tensor, inShape: readonly number[], kernel: Tensor, p: ConvParams): Tensor {
  const r = p.strides.length;
  const g = p.featureGroupCount;
  const window = kernel.shape.slice(0, r);
  const groupIn = kernel.shape[r];
  const groupOut = kernel.shape[r + 1] / g;
  // [...K, Cg, G, Og] -> [...K, Og, G, Cg] -> [...K, Og, G * Cg]
  const split = ops.reshape(kernel, [...window, groupIn, g, groupOut]);
  const swapped = ops.transpose(split, [...Array.from({ length: r }, (_, i) => i), r + 2, r + 1, r]);
  const transposedKernel = flipWindow(ops.reshape(swapped, [...window, groupOut, g * groupIn]), r);
  const outSpatial = ct.shape.slice(1, r + 1);
  const padLow: number[] = [];
  const padHigh: number[] = [];
  for (let d = 0; d < r; d++) {
    const dilatedIn = (inShape[d + 1] - 1) * p.lhsDilation[d] + 1;
    const dilatedWindow = (window[d] - 1) * p.rhsDilation[d] + 1;
    const dilatedOut = (outSpatial[d] - 1) * p.strides[d] + 1;
    const before = dilatedWindow - p.padLow[d] - 1;
    padLow.push(before);
    padHigh.push(dilatedIn + dilatedWindow - 1 - dilatedOut - before);
  }
  return bind1('conv', [ct, transposedKernel], {
    strides: p.lhsDilation.slice(),
    padLow,
    padHigh,
    lhsDilation: p.strides.slice(),
    rhsDilation: p.rhsDilation.slice(),
    featureGroupCount: g,
  });
}

/**
 * The cotangent of a conv's kernel: per group, a convolution of the input (channels as the batch,
 * the batch as channels) with the output cotangent as the kernel, strides and kernel dilation
 * exchanged.
 */
export function convKernelGrad(ct: Tensor, x: Tensor, kernelShape: readonly number[], p: ConvParams): Tensor {
  const r = p.strides.length;
  const g = p.featureGroupCount;
  const window = kernelShape.slice(0, r);
  const groupIn = kernelShape[r];
  const groupOut = kernelShape[r + 1] / g;
  const spatialAxes = Array.from({ length: r }, (_, i) => i + 1);
  const outSpatial = ct.shape.slice(1, r + 1);
  const padHigh = window.map((k, d) => {
    const dilatedIn = (x.shape[d + 1] - 1) * p.lhsDilation[d] + 1;
    const dilatedWindow = (k - 1) * p.rhsDilation[d] + 1;
    const dilatedOut = (outSpatial[d] - 1) * p.strides[d] + 1;
    return dilatedOut - dilatedIn + dilatedWindow - p.padLow[d] - 1;
  });
  const params: ConvParams = {
    strides: p.rhsDilation.slice(),
    padLow: p.padLow.slice(),
    padHigh,
    lhsDilation: p.lhsDilation.slice(),
    rhsDilation: p.strides.slice(),
    featureGroupCount: 1,
  };
  const parts: Tensor[] = [];
  for (let k = 0; k < g; k++) {
    const xs = g === 1 ? x : ops.slice(x, [...new Array<number>(r + 1).fill(0), k * groupIn], [...x.shape.slice(0, r + 1), groupIn]);
    const cs = g === 1 ? ct : ops.slice(ct, [...new Array<number>(r + 1).fill(0), k * groupOut], [...ct.shape.slice(0, r + 1), groupOut]);
    const lhs = ops.transpose(xs, [r + 1, ...spatialAxes, 0]); // [Cg, ...S, N]
    const rhs = ops.transpose(cs, [...spatialAxes, 0, r + 1]); // [...O, N, Og]
    const y = bind1('conv', [lhs, rhs], params); // [Cg, ...K, Og]
    parts.push(ops.transpose(y, [...spatialAxes, 0, r + 1]));
  }
  return g === 1 ? parts[0] : ops.concatenate(parts, r + 1);
}

// ----------------------------------------------------------------------------- pooling

export interface PoolOptions {
  /** Window steps (default: the window size, non-overlapping windows). */
  strides?: number | readonly number[];
  /** Default 'valid'. Padded positions are never the max and do not count in an average. */
  padding?: Padding;
  /** Gaps between the window's taps. Default 1. */
  dilation?: number | readonly number[];
  dataFormat?: DataFormat;
}

type PoolKind = 'max' | 'sum' | 'avg';

/**
 * Reduces `v` over `axis` to its max, with the gradient going to the first maximal entry (as
 * JAX's max pooling does), not shared among ties: spike trains tie all the time. A NaN wins.
 */
function maxRouted(v: Tensor, axis: number): Tensor {
  const at = ops.argmax(v, axis);
  const iota = ops.reshape(
    arange(v.shape[axis]),
    v.shape.map((d, i) => (i === axis ? d : 1)),
  );
  const pick = ops.equal(ops.expandDims(at, axis), iota);
  return ops.sum(ops.where(pick, v, 0), axis);
}

/** For output position p and window position q, the flat spatial index read, or `size` for padding. */
function poolTable(
  inSpatial: readonly number[],
  outSpatial: readonly number[],
  window: readonly number[],
  strides: readonly number[],
  padLow: readonly number[],
  dilation: readonly number[],
): Int32Array {
  const size = sizeOf(inSpatial);
  const r = inSpatial.length;
  const positions = sizeOf(outSpatial);
  const taps = sizeOf(window);
  const table = new Int32Array(positions * taps);
  const o = new Array<number>(r).fill(0);
  for (let p = 0; p < positions; p++) {
    let rest = p;
    for (let d = r - 1; d >= 0; d--) {
      o[d] = rest % outSpatial[d];
      rest = Math.floor(rest / outSpatial[d]);
    }
    for (let q = 0; q < taps; q++) {
      let qr = q;
      let flat = 0;
      let stride = 1;
      let inside = true;
      for (let d = r - 1; d >= 0; d--) {
        const k = qr % window[d];
        qr = Math.floor(qr / window[d]);
        const i = o[d] * strides[d] + k * dilation[d] - padLow[d];
        if (i < 0 || i >= inSpatial[d]) inside = false;
        flat += i * stride;
        stride *= inSpatial[d];
      }
      table[p * taps + q] = inside ? flat : size;
    }
  }
  return table;
}

function poolImpl(
  op: string,
  kind: PoolKind,
  input: Tensor,
  windowIn: number | readonly number[],
  r: number,
  options: PoolOptions,
): Tensor {
  if (!(input instanceof Tensor)) throw new TypeError(`${op}: expected a tensor`);
  const window = perAxis(op, 'window', windowIn, r, 1);
  if (input.ndim < r + 2)
    throw new ShapeError(
      `${op}: expected an input [batch, ...${r} spatial, channels] (at least ${r + 2} axes), got ${fmtShape(input.shape)}`,
    );
  const format = checkFormat(op, options.dataFormat ?? 'channelsLast');
  const x0 = channelsToLast(input, r, format);
  const strides = perAxis(op, 'strides', options.strides, r, 0).map((s, i) => s || window[i]);
  const dilation = perAxis(op, 'dilation', options.dilation, r, 1);
  const lead = x0.shape.slice(0, x0.ndim - r - 1);
  const spatial = x0.shape.slice(lead.length, lead.length + r);
  const channels = x0.shape[x0.ndim - 1];
  const [padLow, padHigh] = resolvePadding(
    op,
    options.padding ?? 'valid',
    spatial,
    window,
    strides,
    dilation,
    new Array<number>(r).fill(1),
  );
  const outSpatial = convOutputSpatial(spatial, window, {
    strides,
    padLow,
    padHigh,
    lhsDilation: new Array<number>(r).fill(1),
    rhsDilation: dilation,
    featureGroupCount: 1,
  });
  if (typeof outSpatial === 'string')
    throw new ShapeError(`${op}: input ${fmtShape(input.shape)}, window ${fmtShape(window)}: ${outSpatial}`);
  const b = lead.length > 1 ? broadcastSourceOf(x0) : null;
  if (b !== null && b.axes.every((a) => a < lead.length)) {
    // Copies along broadcast batch axes are pooled once (exact), as convolutions are.
    const y = poolImpl(op, kind, b.source, window, r, { ...options, strides, dilation, dataFormat: 'channelsLast' });
    return channelsFromLast(ops.broadcastTo(y, [...lead, ...y.shape.slice(lead.length)]), r, format);
  }
  const n = sizeOf(lead);
  const x = ops.reshape(x0, [n, ...spatial, channels]);
  const taps = sizeOf(window);
  let y: Tensor;
  const tiled =
    padLow.every((v) => v === 0) &&
    padHigh.every((v) => v === 0) &&
    dilation.every((v) => v === 1) &&
    strides.every((s, i) => s === window[i]);
  if (tiled) {
    // Non-overlapping windows: a crop and a reshape put each window on axes of its own (views).
    const cropped = ops.slice(x, new Array<number>(r + 2).fill(0), [n, ...outSpatial.map((o, i) => o * window[i]), channels]);
    const split = ops.reshape(cropped, [n, ...outSpatial.flatMap((o, i) => [o, window[i]]), channels]);
    const windowAxes = Array.from({ length: r }, (_, i) => 2 + 2 * i);
    if (kind === 'max') {
      const outAxes = Array.from({ length: r }, (_, i) => 1 + 2 * i);
      const moved = ops.transpose(split, [0, ...outAxes, r * 2 + 1, ...windowAxes]);
      y = maxRouted(ops.reshape(moved, [n, ...outSpatial, channels, taps]), r + 2);
    } else {
      y = ops.sum(split, windowAxes);
    }
  } else {
    // Any geometry: gather every window's taps (padding reads an appended fill row), then reduce.
    const size = sizeOf(spatial);
    const rows = ops.reshape(x, [n, size, channels]);
    const fill = ops.fullLike(ops.slice(rows, [0, 0, 0], [n, 1, channels]), kind === 'max' ? -Infinity : 0);
    const padded = ops.concatenate([rows, fill], 1);
    const table = poolTable(spatial, outSpatial, window, strides, padLow, dilation);
    const picked = ops.take(padded, fromTyped(table, [table.length], 'int32'), 1);
    const windows = ops.reshape(picked, [n, ...outSpatial, taps, channels]);
    y = kind === 'max' ? maxRouted(windows, r + 1) : ops.sum(windows, r + 1);
  }
  if (kind === 'avg') {
    if (tiled || (padLow.every((v) => v === 0) && padHigh.every((v) => v === 0))) {
      y = ops.div(y, taps);
    } else {
      const table = poolTable(spatial, outSpatial, window, strides, padLow, dilation);
      const size = sizeOf(spatial);
      const counts = new Float64Array(sizeOf(outSpatial));
      for (let p = 0; p < counts.length; p++) for (let q = 0; q < taps; q++) if (table[p * taps + q] !== size) counts[p]++;
      const countArray = ops.cast(fromTyped(counts, [...outSpatial, 1], 'float64'), y.dtype);
      y = ops.div(y, countArray);
    }
  }
  return channelsFromLast(ops.reshape(y, [...lead, ...outSpatial, channels]), r, format);
}

/**
 * Max pooling over `window.length` spatial axes (N-D): x [...batch, ...spatial, C]. The gradient
 * goes to the first maximum of each window.
 *
 * @example
 * maxPool(x, [2, 2]); // [N, 28, 28, C] -> [N, 14, 14, C]
 */
export function maxPool(x: Tensor, window: readonly number[], options: PoolOptions = {}): Tensor {
  return poolImpl('maxPool', 'max', x, window, window.length, options);
}
/** Average pooling (N-D); with 'same' padding, padded positions do not count (Keras's behaviour). */
export function avgPool(x: Tensor, window: readonly number[], options: PoolOptions = {}): Tensor {
  return poolImpl('avgPool', 'avg', x, window, window.length, options);
}
/** Sum pooling (N-D). */
export function sumPool(x: Tensor, window: readonly number[], options: PoolOptions = {}): Tensor {
  return poolImpl('sumPool', 'sum', x, window, window.length, options);
}
/** Max pooling over one spatial axis: x [...batch, length, C]. */
export const maxPool1d = (x: Tensor, window: number, options: PoolOptions = {}): Tensor =>
  poolImpl('maxPool1d', 'max', x, window, 1, options);
/** Max pooling over two spatial axes: x [...batch, height, width, C]. */
export const maxPool2d = (x: Tensor, window: number | readonly number[], options: PoolOptions = {}): Tensor =>
  poolImpl('maxPool2d', 'max', x, window, 2, options);
export const avgPool1d = (x: Tensor, window: number, options: PoolOptions = {}): Tensor =>
  poolImpl('avgPool1d', 'avg', x, window, 1, options);
export const avgPool2d = (x: Tensor, window: number | readonly number[], options: PoolOptions = {}): Tensor =>
  poolImpl('avgPool2d', 'avg', x, window, 2, options);
export const sumPool1d = (x: Tensor, window: number, options: PoolOptions = {}): Tensor =>
  poolImpl('sumPool1d', 'sum', x, window, 1, options);
export const sumPool2d = (x: Tensor, window: number | readonly number[], options: PoolOptions = {}): Tensor =>
  poolImpl('sumPool2d', 'sum', x, window, 2, options);

function globalAxes(op: string, x: Tensor, r: number, format: DataFormat): number[] {
  if (x.ndim < r + 2) throw new ShapeError(`${op}: expected an input [batch, ...${r} spatial, channels], got ${fmtShape(x.shape)}`);
  const first = format === 'channelsLast' ? x.ndim - r - 1 : x.ndim - r;
  return Array.from({ length: r }, (_, i) => first + i);
}

/** Mean over the `spatialAxes` spatial axes: [...batch, ...spatial, C] -> [...batch, C]. */
export function globalAvgPool(x: Tensor, spatialAxes = 2, options: { dataFormat?: DataFormat } = {}): Tensor {
  return ops.mean(x, globalAxes('globalAvgPool', x, spatialAxes, checkFormat('globalAvgPool', options.dataFormat ?? 'channelsLast')));
}

/** Max over the `spatialAxes` spatial axes (gradient to the first maximum): [...batch, ...spatial, C] -> [...batch, C]. */
export function globalMaxPool(x: Tensor, spatialAxes = 2, options: { dataFormat?: DataFormat } = {}): Tensor {
  const format = checkFormat('globalMaxPool', options.dataFormat ?? 'channelsLast');
  const axes = globalAxes('globalMaxPool', x, spatialAxes, format);
  const kept = x.shape.filter((_, i) => !axes.includes(i));
  const moved = ops.transpose(x, [...x.shape.map((_, i) => i).filter((i) => !axes.includes(i)), ...axes]);
  return maxRouted(ops.reshape(moved, [...kept, sizeOf(axes.map((a) => x.shape[a]))]), kept.length);
}
