/** Weight initializers (Keras's definitions), driven by explicit PRNG keys. */
import { random, zeros, type DType, type Tensor } from '../core/index.js';

export type Initializer = (key: Tensor, shape: readonly number[], dtype?: DType) => Tensor;

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
export const zerosInit: Initializer = (_key, shape, dtype = 'float32') => zeros(shape, dtype);
export const constantInit =
  (value: number): Initializer =>
  (_key, shape, dtype = 'float32') =>
    zeros(shape, dtype).add(value);
export const uniformInit =
  (minval: number, maxval: number): Initializer =>
  (key, shape, dtype = 'float32') =>
    random.uniform(key, shape, { dtype, minval, maxval });

export const initializers = { glorotUniform, heNormal, zeros: zerosInit, constant: constantInit, uniform: uniformInit };
export type InitializerName = 'glorotUniform' | 'heNormal' | 'zeros';
export function resolveInitializer(init: Initializer | InitializerName): Initializer {
  if (typeof init === 'function') return init;
  const table: Record<InitializerName, Initializer> = { glorotUniform, heNormal, zeros: zerosInit };
  const f = table[init];
  if (!f) throw new RangeError(`initializer: unknown name '${init as string}'; known: ${Object.keys(table).join(', ')}`);
  return f;
}
