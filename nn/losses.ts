/** Losses and metrics over (yTrue, yPred) batches; each returns a scalar (mean over the batch). */
import {
  argmax,
  cast,
  div,
  equal,
  floor,
  fmtShapeOf,
  greaterEqual,
  less,
  log,
  logSoftmax,
  maximum,
  mean,
  minimum,
  mul,
  neg,
  oneHot,
  square,
  sub,
  sum,
  ShapeError,
  where,
  type Tensor,
} from './core-ext.js';

/**
 * A loss over (yTrue, yPred). `integerLabels` marks losses whose yTrue holds class indices into
 * yPred's last axis: fit and evaluate check such labels once per dataset (see `findBadLabel`).
 */
export type LossFn = ((yTrue: Tensor, yPred: Tensor) => Tensor) & { readonly integerLabels?: true };
export type MetricFn = ((yTrue: Tensor, yPred: Tensor) => Tensor) & { readonly metricName: string };

/**
 * The first label that is not a class index in [0, classes): negative, too large, fractional or
 * NaN; null when every label is one.
 */
export function findBadLabel(labels: ArrayLike<number>, classes: number): { index: number; value: number } | null {
  for (let i = 0; i < labels.length; i++) {
    const v = labels[i];
    if (!(v >= 0 && v < classes && Math.floor(v) === v)) return { index: i, value: v };
  }
  return null;
}

/** Whether each label is a class index in [0, classes) (false for NaN and fractions). */
function validLabels(labels: Tensor, classes: number): Tensor {
  const both = (a: Tensor, b: Tensor): Tensor => where(a, b, a);
  const inRange = both(greaterEqual(labels, 0), less(labels, classes));
  return labels.dtype === 'float32' || labels.dtype === 'float64' ? both(inRange, equal(floor(labels), labels)) : inRange;
}

/**
 * Cross-entropy for integer labels. With fromLogits the log-softmax is computed stably
 * (x - max - log sum exp), so logits of 1e4 give finite losses.
 *
 * A label that is not a class index (outside [0, classes), fractional, NaN) makes the loss NaN,
 * as JAX's take_along_axis fill does, instead of contributing 0; fit and evaluate reject such
 * labels before the first step, naming the first one and its index.
 *
 * @example
 * const loss = sparseCategoricalCrossentropy({ fromLogits: true });
 * loss(array([2], { dtype: 'int32' }), array([[0, 0, 5]]));
 */
export function sparseCategoricalCrossentropy(options: { fromLogits?: boolean } = {}): LossFn {
  const fromLogits = options.fromLogits ?? false;
  const loss = (yTrue: Tensor, yPred: Tensor): Tensor => {
    const classes = yPred.shape[yPred.ndim - 1];
    const labels = yTrue.ndim === yPred.ndim ? yTrue.reshape(yTrue.shape.slice(0, -1)) : yTrue;
    if (labels.ndim !== yPred.ndim - 1 || labels.shape.some((d, i) => d !== yPred.shape[i])) {
      throw new ShapeError(
        `sparseCategoricalCrossentropy: labels of shape ${fmtShapeOf(yTrue)} do not match predictions ${fmtShapeOf(yPred)}`,
      );
    }
    const logp = fromLogits ? logSoftmax(yPred, -1) : log(clipProbs(yPred));
    const perExample = sum(mul(oneHot(labels, classes, yPred.dtype), logp), -1);
    // valid / valid is 1 (the loss unchanged, to the bit) or 0 / 0 = NaN; no NaN literal, which
    // a GPU kernel cannot inline.
    const valid = cast(validLabels(labels, classes), yPred.dtype);
    return neg(mean(mul(perExample, div(valid, valid))));
  };
  return Object.assign(loss, { integerLabels: true as const });
}

/** Keras clips probabilities to [eps, 1 - eps] before the log. */
function clipProbs(p: Tensor): Tensor {
  const eps = 1e-7;
  return minimum(maximum(p, eps), 1 - eps);
}

export function categoricalCrossentropy(options: { fromLogits?: boolean } = {}): LossFn {
  const fromLogits = options.fromLogits ?? false;
  return (yTrue, yPred) => {
    if (yTrue.ndim !== yPred.ndim || yTrue.shape.some((d, i) => d !== yPred.shape[i])) {
      throw new ShapeError(`categoricalCrossentropy: targets of shape ${fmtShapeOf(yTrue)} do not match predictions ${fmtShapeOf(yPred)}`);
    }
    // From probabilities, Keras first rescales each row to sum to one, then clips.
    const logp = fromLogits ? logSoftmax(yPred, -1) : log(clipProbs(div(yPred, sum(yPred, -1, { keepdims: true }))));
    return neg(mean(sum(mul(cast(yTrue, yPred.dtype), logp), -1)));
  };
}

export function meanSquaredError(): LossFn {
  return (yTrue, yPred) => {
    if (yTrue.ndim !== yPred.ndim || yTrue.shape.some((d, i) => d !== yPred.shape[i])) {
      throw new ShapeError(`meanSquaredError: targets of shape ${fmtShapeOf(yTrue)} do not match predictions ${fmtShapeOf(yPred)}`);
    }
    return mean(square(sub(yPred, cast(yTrue, yPred.dtype))));
  };
}

function metric(name: string, fn: (yTrue: Tensor, yPred: Tensor) => Tensor): MetricFn {
  return Object.assign(fn, { metricName: name });
}

/** Fraction of examples whose argmax prediction equals the integer label. */
export const sparseCategoricalAccuracy: MetricFn = metric('accuracy', (yTrue, yPred) => {
  const labels = yTrue.ndim === yPred.ndim ? yTrue.reshape(yTrue.shape.slice(0, -1)) : yTrue;
  return mean(cast(equal(argmax(yPred, -1), cast(labels, 'int32')), 'float32'));
});
/** Keras's "accuracy" for integer labels. */
export const accuracy = sparseCategoricalAccuracy;
export const categoricalAccuracy: MetricFn = metric('categorical_accuracy', (yTrue, yPred) =>
  mean(cast(equal(argmax(yPred, -1), argmax(yTrue, -1)), 'float32')),
);
