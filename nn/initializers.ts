/** Weight initializers (Keras's definitions), driven by explicit PRNG keys. */
import { random, zeros, type DType, type Tensor } from '../core/index.js';

/**
 * The fans of the kernel a parameter belongs to. Layers pass them with every parameter they draw, so
 * a bias (whose own shape says nothing about its layer's inputs) can be scaled by its layer's fan-in.
 */
export interface LayerFans {
  readonly fanIn: number;
  readonly fanOut: number;
}

/**
 * Draws a parameter of `shape`. `layerFans` are the fans of the kernel of the layer drawing it (dense and
 * the convolutions pass them for kernel and bias); initializers that scale by a fan and are given no
 * `layerFans` compute the fans from `shape`, as Keras does.
 */
export type Initializer = (key: Tensor, shape: readonly number[], dtype?: DType, layerFans?: LayerFans) => Tensor;

/**
 * Keras's fans of a kernel shape: the last axis is the output, the one before it the input, and any
 * leading (window) axes multiply both; a 1-D shape has fanIn = fanOut = its length.
 */
export function kernelFans(shape: readonly number[]): LayerFans {
  const [fanIn, fanOut] = fans(shape);
  return { fanIn, fanOut };
}

function fans(shape: readonly number[]): [number, number] {
  if (shape.length < 1) return [1, 1];
  if (shape.length === 1) return [shape[0], shape[0]];
  const receptive = shape.slice(0, -2).reduce((a, c) => a * c, 1);
  return [shape[shape.length - 2] * receptive, shape[shape.length - 1] * receptive];
}

/** Uniform in [-l, l], l = sqrt(6 / (fanIn + fanOut)) (Keras's default kernel initializer). */
export const glorotUniform: Initializer = (key, shape, dtype = 'float32') => {
  const [fanIn, fanOut] = fans(shape);
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  return random.uniform(key, shape, { dtype, minval: -limit, maxval: limit });
};
/** Normal with std sqrt(2 / fanIn). */
export const heNormal: Initializer = (key, shape, dtype = 'float32') => {
  const [fanIn] = fans(shape);
  return random.normal(key, shape, { dtype }).mul(Math.sqrt(2 / fanIn));
};
/**
 * Uniform in [-b, b], b = 1 / sqrt(fanIn), with the fan-in of the layer the parameter belongs to:
 * PyTorch's default for both the weight and the bias of `nn.Linear` and `nn.ConvNd` (its
 * kaiming_uniform with a = sqrt(5) reduces to this bound). Use it for kernel and bias together to get
 * the network a PyTorch (snnTorch) script builds by default:
 * `dense(n, { kernelInitializer: 'fanInUniform', biasInitializer: 'fanInUniform' })`.
 * Called without `layerFans`, the fan-in comes from `shape` (for a 1-D shape that is its length, which
 * is not a layer's fan-in: pass `layerFans` when drawing a bias outside dense or a convolution).
 */
export const fanInUniform: Initializer = (key, shape, dtype = 'float32', layerFans) => {
  const fanIn = layerFans?.fanIn ?? fans(shape)[0];
  if (!(fanIn > 0)) throw new RangeError(`fanInUniform: the fan-in must be positive, got ${fanIn} (shape [${shape.join(', ')}])`);
  const bound = 1 / Math.sqrt(fanIn);
  return random.uniform(key, shape, { dtype, minval: -bound, maxval: bound });
};
export const zerosInit: Initializer = (_key, shape, dtype = 'float32') => zeros(shape, dtype);
export const constantInit =
  (value: number): Initializer =>
  (_key, shape, dtype = 'float32') =>
    zeros(shape, dtype).add(value);
export const uniformInit =
  (minval: number, maxval: number): Initializer =>
  (key, shape, dtype = 'float32') =>
    random.uniform(key, shape, { dtype, minval, maxval });

export const initializers = { glorotUniform, heNormal, fanInUniform, zeros: zerosInit, constant: constantInit, uniform: uniformInit };
export type InitializerName = 'glorotUniform' | 'heNormal' | 'fanInUniform' | 'zeros';
export function resolveInitializer(init: Initializer | InitializerName): Initializer {
  if (typeof init === 'function') return init;
  const table: Record<InitializerName, Initializer> = { glorotUniform, heNormal, fanInUniform, zeros: zerosInit };
  const f = table[init];
  if (!f) throw new RangeError(`initializer: unknown name '${init as string}'; known: ${Object.keys(table).join(', ')}`);
  return f;
}
