/**
 * Convolution and pooling layers (Keras's Conv1D/Conv2D, MaxPooling/AveragePooling 1D/2D, global
 * pools), channels-last by default. Inputs may carry extra leading axes (batch axes). Under
 * timeDistributed a time-tiled image is convolved once per image (nn/layers.ts).
 */
import {
  add,
  avgPool,
  conv1d as conv1dOp,
  conv2d as conv2dOp,
  convOutputShape,
  globalAvgPool,
  globalMaxPool,
  maxPool,
  random,
  reshape,
  ShapeError,
  Tensor,
  type DataFormat,
  type Padding,
} from '../../core/index.js';
import { activationName, resolveActivation, type ActivationFn, type ActivationName } from '../activations.js';
import { kernelFans, resolveInitializer, type Initializer, type InitializerName } from '../initializers.js';
import { uniqueName, type Layer, type LayerShape } from '../layer.js';
import type { Regularizer } from '../layers.js';

export interface ConvLayerOptions {
  strides?: number | readonly number[];
  /** 'valid' (default), 'same', 'causal' (1-D) or [low, high] per spatial axis. */
  padding?: Padding;
  /** Keras's dilation_rate. */
  dilation?: number | readonly number[];
  groups?: number;
  activation?: ActivationName | ActivationFn;
  useBias?: boolean;
  kernelInitializer?: Initializer | InitializerName;
  biasInitializer?: Initializer | InitializerName;
  kernelRegularizer?: Regularizer;
  activityRegularizer?: Regularizer;
  dataFormat?: DataFormat;
  name?: string;
}

/** A convolution layer's params: `kernel` ([...kernelSize, inChannels / groups, filters]) and, with `useBias`, `bias` ([filters]). */
export interface ConvLayerParams {
  readonly [k: string]: Tensor;
  readonly kernel: Tensor;
}

type Empty = Record<string, never>;
/** What `with` may change on a convolution layer: its options, `filters` and `kernelSize`. */
type ConvChanges = ConvLayerOptions & { filters?: number; kernelSize?: number | readonly number[] };

function perAxis(where: string, what: string, v: number | readonly number[] | undefined, r: number, fallback: number): number[] {
  const list = v === undefined ? new Array<number>(r).fill(fallback) : typeof v === 'number' ? new Array<number>(r).fill(v) : v.slice();
  if (list.length !== r || list.some((e) => !Number.isInteger(e) || e < 1))
    throw new RangeError(`${where}: ${what} must be ${r} positive integer(s), got ${JSON.stringify(v)}`);
  return list;
}

/** Splits a layer input shape (without batch) into spatial sizes and channels. */
function splitShape(
  where: string,
  shape: LayerShape,
  r: number,
  format: DataFormat,
): { spatial: (number | null)[]; channels: number | null } {
  if (shape.length !== r + 1) {
    const layout = format === 'channelsLast' ? `[...${r} spatial, channels]` : `[channels, ...${r} spatial]`;
    throw new ShapeError(
      `${where}: expected input shape ${layout} (without the batch axis), got ${JSON.stringify(shape)}; wrap it in timeDistributed for a time axis`,
    );
  }
  return format === 'channelsLast' ? { spatial: shape.slice(0, r), channels: shape[r] } : { spatial: shape.slice(1), channels: shape[0] };
}

/** Output spatial sizes, keeping unknown (null) axes unknown. */
function outSpatial(
  where: string,
  spatial: readonly (number | null)[],
  window: readonly number[],
  opts: { strides: number[]; padding: Padding; dilation: number[] },
): (number | null)[] {
  return spatial.map((d, i) =>
    d === null
      ? null
      : convOutputShape(
          [d],
          [window[i]],
          {
            strides: [opts.strides[i]],
            padding: typeof opts.padding === 'string' ? opts.padding : [opts.padding[i]],
            dilation: [opts.dilation[i]],
          },
          where,
        )[0],
  );
}

const joinShape = (spatial: readonly (number | null)[], channels: number | null, format: DataFormat): LayerShape =>
  format === 'channelsLast' ? [...spatial, channels] : [channels, ...spatial];

function convLayer(
  kind: 'Conv1D' | 'Conv2D',
  r: 1 | 2,
  filters: number,
  kernelSize: number | readonly number[],
  options: ConvLayerOptions,
): Layer<ConvLayerParams, Empty, ConvChanges> {
  const fn = kind === 'Conv1D' ? 'conv1d' : 'conv2d';
  const name = uniqueName(fn, options.name);
  const where = `${fn} '${name}'`;
  if (!Number.isInteger(filters) || filters <= 0) throw new RangeError(`${where}: filters must be a positive integer, got ${filters}`);
  const window = perAxis(where, 'kernelSize', kernelSize, r, 1);
  const strides = perAxis(where, 'strides', options.strides, r, 1);
  const dilation = perAxis(where, 'dilation', options.dilation, r, 1);
  const groups = options.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1 || filters % groups !== 0)
    throw new RangeError(`${where}: groups must be a positive integer dividing filters (${filters}), got ${groups}`);
  const padding = options.padding ?? 'valid';
  const format = options.dataFormat ?? 'channelsLast';
  const act = resolveActivation(options.activation, where);
  const useBias = options.useBias ?? true;
  const kernelInit = resolveInitializer(options.kernelInitializer ?? 'glorotUniform');
  const biasInit = resolveInitializer(options.biasInitializer ?? 'zeros');
  const op = kind === 'Conv1D' ? conv1dOp : conv2dOp;
  return {
    kind,
    name,
    config: {
      filters,
      kernelSize: window,
      strides,
      padding,
      dilation,
      groups,
      activation: activationName(options.activation),
      useBias,
      dataFormat: format,
    },
    // Not perStep: under timeDistributed a time-tiled input takes the once-per-example path
    // (nn/layers.ts), which keeps the bias, the activation and their gradients compact as well.
    // Every output sums window x (input channels per group) inputs.
    energy(inShape, outShape) {
      const channels = (format === 'channelsLast' ? inShape[inShape.length - 1] : inShape[0]) ?? 1;
      const outputs = outShape.reduce<number>((a, d) => a * (d ?? 1), 1);
      const fanIn = (window.reduce((a, k) => a * k, 1) * channels) / groups;
      return { connections: outputs * fanIn, neurons: activationName(options.activation) === 'linear' ? 0 : outputs, spiking: false };
    },
    init(key, inputShape) {
      const { spatial, channels } = splitShape(where, inputShape, r, format);
      if (channels === null || channels % groups !== 0)
        throw new ShapeError(
          `${where}: the channel axis must be known and divisible by groups (${groups}), got ${JSON.stringify(inputShape)}`,
        );
      const [k1, k2] = random.split(key);
      const kernelShape = [...window, channels / groups, filters];
      const layerFans = kernelFans(kernelShape);
      const params: Record<string, Tensor> = { kernel: kernelInit(k1, kernelShape, 'float32', layerFans) };
      if (useBias) params.bias = biasInit(k2, [filters], 'float32', layerFans);
      return {
        params: params as ConvLayerParams,
        state: {},
        outputShape: joinShape(outSpatial(where, spatial, window, { strides, padding, dilation }), filters, format),
      };
    },
    apply(params, x, _ctx, state) {
      const k = params.kernel;
      const channels = format === 'channelsLast' ? x.shape[x.ndim - 1] : x.shape[x.ndim - r - 1];
      if (x.ndim < r + 2 || channels !== k.shape[r] * groups) {
        throw new ShapeError(
          `${where}: expected input [batch, ...${format === 'channelsLast' ? `${r} spatial, ${k.shape[r] * groups} channels` : `${k.shape[r] * groups} channels, ${r} spatial`}], got shape [${x.shape.join(', ')}]`,
        );
      }
      let y = op(x, k, { strides, padding, dilation, groups, dataFormat: format });
      if (useBias) y = add(y, format === 'channelsLast' ? params.bias : reshape(params.bias, [filters, ...new Array<number>(r).fill(1)]));
      y = act(y);
      return { y, state, losses: options.activityRegularizer ? [options.activityRegularizer(y).div(y.shape[0])] : [] };
    },
    paramLosses: options.kernelRegularizer ? (p) => [options.kernelRegularizer!(p.kernel)] : undefined,
    with: ({ filters: newFilters, kernelSize: newKernelSize, ...changes }) =>
      convLayer(kind, r, newFilters ?? filters, newKernelSize ?? kernelSize, { ...options, ...changes, name }),
  };
}

/**
 * A 1-D convolution layer (Keras's Conv1D): (batch, length, channels) -> (batch, length', filters).
 *
 * @example
 * const layer = conv1d(16, 5, { padding: 'causal', dilation: 2 });
 */
export function conv1d(
  filters: number,
  kernelSize: number | readonly number[],
  options: ConvLayerOptions = {},
): Layer<ConvLayerParams, Empty, ConvChanges> {
  return convLayer('Conv1D', 1, filters, kernelSize, options);
}

/**
 * A 2-D convolution layer (Keras's Conv2D): (batch, h, w, channels) -> (batch, h', w', filters);
 * the kernel is [kh, kw, channels / groups, filters].
 *
 * @example
 * const model = sequential([conv2d(32, 3, { activation: 'relu' }), maxPooling2d(2), flatten(), dense(10)]);
 */
export function conv2d(
  filters: number,
  kernelSize: number | readonly number[],
  options: ConvLayerOptions = {},
): Layer<ConvLayerParams, Empty, ConvChanges> {
  return convLayer('Conv2D', 2, filters, kernelSize, options);
}

/** Options of maxPooling1d/2d and averagePooling1d/2d. */
export interface PoolingLayerOptions {
  /** Default: the pool size. */
  strides?: number | readonly number[];
  padding?: 'valid' | 'same';
  dataFormat?: DataFormat;
  name?: string;
}

/** What `with` may change on a pooling layer: its options and `poolSize`. */
type PoolingChanges = PoolingLayerOptions & { poolSize?: number | readonly number[] };

function poolingLayer(
  kind: 'MaxPooling1D' | 'MaxPooling2D' | 'AveragePooling1D' | 'AveragePooling2D',
  r: 1 | 2,
  poolSize: number | readonly number[],
  options: PoolingLayerOptions,
): Layer<Empty, Empty, PoolingChanges> {
  const fn = {
    MaxPooling1D: 'max_pooling1d',
    MaxPooling2D: 'max_pooling2d',
    AveragePooling1D: 'average_pooling1d',
    AveragePooling2D: 'average_pooling2d',
  }[kind];
  const name = uniqueName(fn, options.name);
  const where = `${kind.charAt(0).toLowerCase()}${kind.slice(1).replace('D', 'd')} '${name}'`;
  const window = perAxis(where, 'poolSize', poolSize, r, 1);
  const strides = options.strides === undefined ? window : perAxis(where, 'strides', options.strides, r, 1);
  const padding = options.padding ?? 'valid';
  const format = options.dataFormat ?? 'channelsLast';
  const op = kind.startsWith('Max') ? maxPool : avgPool;
  return {
    kind,
    name,
    config: { poolSize: window, strides, padding, dataFormat: format },
    // Average pooling sums its window: one synaptic operation per tap; max pooling compares only.
    energy: kind.startsWith('Average')
      ? (_inShape, outShape) => ({
          connections: outShape.reduce<number>((a, d) => a * (d ?? 1), 1) * window.reduce((a, k) => a * k, 1),
          neurons: 0,
          spiking: false,
        })
      : undefined,
    init(_key, inputShape) {
      const { spatial, channels } = splitShape(where, inputShape, r, format);
      return {
        params: {},
        state: {},
        outputShape: joinShape(outSpatial(where, spatial, window, { strides, padding, dilation: window.map(() => 1) }), channels, format),
      };
    },
    apply: (_params, x, _ctx, state) => {
      if (x.ndim < r + 2)
        throw new ShapeError(`${where}: expected input [batch, ...${r} spatial, channels], got shape [${x.shape.join(', ')}]`);
      return { y: op(x, window, { strides, padding, dataFormat: format }), state, losses: [] };
    },
    with: ({ poolSize: newPoolSize, ...changes }) => poolingLayer(kind, r, newPoolSize ?? poolSize, { ...options, ...changes, name }),
  };
}

/** Max pooling over one spatial axis (Keras's MaxPooling1D); the gradient goes to each window's first maximum. */
export const maxPooling1d = (poolSize: number = 2, options: PoolingLayerOptions = {}): Layer<Empty, Empty, PoolingChanges> =>
  poolingLayer('MaxPooling1D', 1, poolSize, options);
/** Max pooling over two spatial axes (Keras's MaxPooling2D). @example maxPooling2d(2) // (None, 26, 26, 32) -> (None, 13, 13, 32) */
export const maxPooling2d = (
  poolSize: number | readonly number[] = 2,
  options: PoolingLayerOptions = {},
): Layer<Empty, Empty, PoolingChanges> => poolingLayer('MaxPooling2D', 2, poolSize, options);
/** Average pooling over one spatial axis (Keras's AveragePooling1D). */
export const averagePooling1d = (poolSize: number = 2, options: PoolingLayerOptions = {}): Layer<Empty, Empty, PoolingChanges> =>
  poolingLayer('AveragePooling1D', 1, poolSize, options);
/** Average pooling over two spatial axes (Keras's AveragePooling2D; 'same' padding does not count padded positions). */
export const averagePooling2d = (
  poolSize: number | readonly number[] = 2,
  options: PoolingLayerOptions = {},
): Layer<Empty, Empty, PoolingChanges> => poolingLayer('AveragePooling2D', 2, poolSize, options);

function globalLayer(
  kind: 'GlobalAveragePooling2D' | 'GlobalMaxPooling1D' | 'GlobalMaxPooling2D',
  r: 1 | 2,
  options: { dataFormat?: DataFormat; name?: string },
): Layer<Empty, Empty, { dataFormat?: DataFormat }> {
  const fn = {
    GlobalAveragePooling2D: 'global_average_pooling2d',
    GlobalMaxPooling1D: 'global_max_pooling1d',
    GlobalMaxPooling2D: 'global_max_pooling2d',
  }[kind];
  const name = uniqueName(fn, options.name);
  const where = `${kind.charAt(0).toLowerCase()}${kind.slice(1).replace('D', 'd')} '${name}'`;
  const format = options.dataFormat ?? 'channelsLast';
  const op = kind === 'GlobalAveragePooling2D' ? globalAvgPool : globalMaxPool;
  return {
    kind,
    name,
    config: { dataFormat: format },
    init(_key, inputShape) {
      const { channels } = splitShape(where, inputShape, r, format);
      return { params: {}, state: {}, outputShape: [channels] };
    },
    apply: (_params, x, _ctx, state) => {
      if (x.ndim < r + 2)
        throw new ShapeError(`${where}: expected input [batch, ...${r} spatial, channels], got shape [${x.shape.join(', ')}]`);
      return { y: op(x, r, { dataFormat: format }), state, losses: [] };
    },
    with: (changes) => globalLayer(kind, r, { ...options, ...changes, name }),
  };
}

/** Mean over both spatial axes (Keras's GlobalAveragePooling2D): (batch, h, w, c) -> (batch, c). */
export const globalAveragePooling2d = (
  options: { dataFormat?: DataFormat; name?: string } = {},
): Layer<Empty, Empty, { dataFormat?: DataFormat }> => globalLayer('GlobalAveragePooling2D', 2, options);
/** Max over axis 1 (Keras's GlobalMaxPooling1D): (batch, steps, features) -> (batch, features). */
export const globalMaxPooling1d = (
  options: { dataFormat?: DataFormat; name?: string } = {},
): Layer<Empty, Empty, { dataFormat?: DataFormat }> => globalLayer('GlobalMaxPooling1D', 1, options);
/** Max over both spatial axes (Keras's GlobalMaxPooling2D): (batch, h, w, c) -> (batch, c). */
export const globalMaxPooling2d = (
  options: { dataFormat?: DataFormat; name?: string } = {},
): Layer<Empty, Empty, { dataFormat?: DataFormat }> => globalLayer('GlobalMaxPooling2D', 2, options);
