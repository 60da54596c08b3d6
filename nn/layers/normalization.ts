/** Dropout, batch normalization and layer normalization (Keras's definitions and defaults). */
import {
  add,
  cast,
  div,
  mean,
  mul,
  ones,
  random,
  reshape,
  ShapeError,
  sqrt,
  stopGradient,
  sub,
  where,
  zeros,
  type Tensor,
} from '../../core/index.js';
import { uniqueName, type Layer } from '../layer.js';

type Empty = Record<string, never>;

/**
 * Zeroes each input with probability `rate` while training and scales the rest by 1 / (1 - rate)
 * (inverted dropout); the identity at inference. The mask comes from the apply context's key
 * (fit, evaluate and predict give each layer its own key per batch).
 *
 * @example
 * sequential([dense(128, { activation: 'relu' }), dropout(0.2), dense(10)]);
 */
export function dropout(rate: number, options: { name?: string } = {}): Layer<Empty, Empty, { rate?: number }> {
  const name = uniqueName('dropout', options.name);
  if (!(rate >= 0 && rate < 1)) throw new RangeError(`dropout '${name}': rate must be in [0, 1), got ${rate}`);
  return {
    kind: 'Dropout',
    name,
    config: { rate },
    init: (_key, inputShape) => ({ params: {}, state: {}, outputShape: inputShape }),
    apply(_params, x, ctx, state) {
      if (!ctx.training || rate === 0) return { y: x, state, losses: [] };
      if (ctx.key === undefined)
        throw new RangeError(`dropout '${name}': training needs a PRNG key in the apply context ({ training: true, key })`);
      const keep = random.bernoulli(ctx.key, 1 - rate, x.shape);
      return { y: where(keep, div(x, 1 - rate), 0), state, losses: [] };
    },
    with: (changes) => dropout(changes.rate ?? rate, { name }),
  };
}

/** Options of batchNormalization and layerNormalization. */
export interface NormalizationOptions {
  /** The feature axis (batch norm) or axes (layer norm), counted on the layer's input shape without batch; default -1. */
  axis?: number;
  epsilon?: number;
  /** Learn an offset beta (default true). */
  center?: boolean;
  /** Learn a scale gamma (default true). */
  scale?: boolean;
  name?: string;
}

function featureAxis(where: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank)
    throw new ShapeError(`${where}: axis ${axis} out of range for an input of rank ${rank} (without batch)`);
  return a;
}

/** Reshapes a per-feature vector to broadcast against x along axis `a` of x. */
const alongAxis = (v: Tensor, a: number, ndim: number): Tensor =>
  reshape(
    v,
    Array.from({ length: ndim }, (_, i) => (i === a ? v.shape[0] : 1)),
  );

/** batchNormalization's state: the moving mean and variance per feature, updated while training. */
export interface BatchNormalizationState {
  readonly [k: string]: Tensor;
  readonly movingMean: Tensor;
  readonly movingVariance: Tensor;
}

/**
 * Batch normalization: while training, normalizes with the batch's mean and (biased) variance
 * over every axis but the feature axis, and moves the state's statistics towards them
 * (moving = momentum * moving + (1 - momentum) * batch); at inference, uses the moving statistics.
 *
 * @example
 * sequential([conv2d(32, 3), batchNormalization(), activation('relu')]);
 */
export function batchNormalization(
  options: NormalizationOptions & { momentum?: number } = {},
): Layer<Record<string, Tensor>, BatchNormalizationState, NormalizationOptions & { momentum?: number }> {
  const name = uniqueName('batch_normalization', options.name);
  const where = `batchNormalization '${name}'`;
  const axis = options.axis ?? -1;
  const momentum = options.momentum ?? 0.99;
  const epsilon = options.epsilon ?? 1e-3;
  const center = options.center ?? true;
  const scaled = options.scale ?? true;
  if (!(momentum >= 0 && momentum <= 1)) throw new RangeError(`${where}: momentum must be in [0, 1], got ${momentum}`);
  if (!(epsilon > 0)) throw new RangeError(`${where}: epsilon must be positive, got ${epsilon}`);
  return {
    kind: 'BatchNormalization',
    name,
    config: { axis, momentum, epsilon, center, scale: scaled },
    init(_key, inputShape) {
      const n = inputShape[featureAxis(where, axis, inputShape.length)];
      if (n === null) throw new ShapeError(`${where}: the feature axis must be known, got ${JSON.stringify(inputShape)}`);
      const params: Record<string, Tensor> = {};
      if (scaled) params.gamma = ones([n]);
      if (center) params.beta = zeros([n]);
      return { params, state: { movingMean: zeros([n]), movingVariance: ones([n]) }, outputShape: inputShape };
    },
    apply(params, x, ctx, state) {
      // A negative axis counts from the end, so extra leading axes (time) are batch axes too.
      const fa = axis < 0 ? x.ndim + axis : axis + 1;
      if (fa < 1 || fa >= x.ndim || x.shape[fa] !== state.movingMean.shape[0]) {
        throw new ShapeError(
          `${where}: expected ${state.movingMean.shape[0]} features on axis ${axis}, got input shape [${x.shape.join(', ')}]`,
        );
      }
      const reduce = x.shape.map((_, i) => i).filter((i) => i !== fa);
      let m: Tensor;
      let v: Tensor;
      let next = state;
      if (ctx.training) {
        m = mean(x, reduce);
        v = mean(mul(sub(x, alongAxis(m, fa, x.ndim)), sub(x, alongAxis(m, fa, x.ndim))), reduce);
        const blend = (old: Tensor, batch: Tensor): Tensor =>
          add(mul(old, momentum), mul(cast(stopGradient(batch), old.dtype), 1 - momentum));
        next = { movingMean: blend(state.movingMean, m), movingVariance: blend(state.movingVariance, v) };
      } else {
        m = state.movingMean;
        v = state.movingVariance;
      }
      let y = mul(sub(x, alongAxis(m, fa, x.ndim)), alongAxis(div(1, sqrt(add(v, epsilon))), fa, x.ndim));
      if (scaled) y = mul(y, alongAxis(params.gamma, fa, x.ndim));
      if (center) y = add(y, alongAxis(params.beta, fa, x.ndim));
      return { y, state: next, losses: [] };
    },
    with: (changes) => batchNormalization({ ...options, ...changes, name }),
  };
}

/**
 * Layer normalization: each example normalized over its feature axis by its own mean and
 * (biased) variance, then scaled by gamma and offset by beta (per feature). No state.
 *
 * @example
 * sequential([dense(64), layerNormalization(), activation('relu')]);
 */
export function layerNormalization(options: NormalizationOptions = {}): Layer<Record<string, Tensor>, Empty, NormalizationOptions> {
  const name = uniqueName('layer_normalization', options.name);
  const where = `layerNormalization '${name}'`;
  const axis = options.axis ?? -1;
  const epsilon = options.epsilon ?? 1e-3;
  const center = options.center ?? true;
  const scaled = options.scale ?? true;
  if (!(epsilon > 0)) throw new RangeError(`${where}: epsilon must be positive, got ${epsilon}`);
  return {
    kind: 'LayerNormalization',
    name,
    config: { axis, epsilon, center, scale: scaled },
    init(_key, inputShape) {
      const n = inputShape[featureAxis(where, axis, inputShape.length)];
      if (n === null) throw new ShapeError(`${where}: the feature axis must be known, got ${JSON.stringify(inputShape)}`);
      const params: Record<string, Tensor> = {};
      if (scaled) params.gamma = ones([n]);
      if (center) params.beta = zeros([n]);
      return { params, state: {}, outputShape: inputShape };
    },
    apply(params, x, _ctx, state) {
      const fa = axis < 0 ? x.ndim + axis : axis + 1;
      const n = (params.gamma ?? params.beta)?.shape[0];
      if (fa < 1 || fa >= x.ndim || (n !== undefined && x.shape[fa] !== n))
        throw new ShapeError(`${where}: expected ${n ?? 'a'} feature(s) on axis ${axis}, got input shape [${x.shape.join(', ')}]`);
      const m = mean(x, fa, { keepdims: true });
      const centered = sub(x, m);
      const v = mean(mul(centered, centered), fa, { keepdims: true });
      let y = mul(centered, div(1, sqrt(add(v, epsilon))));
      if (scaled) y = mul(y, alongAxis(params.gamma, fa, x.ndim));
      if (center) y = add(y, alongAxis(params.beta, fa, x.ndim));
      return { y, state, losses: [] };
    },
    with: (changes) => layerNormalization({ ...options, ...changes, name }),
  };
}
