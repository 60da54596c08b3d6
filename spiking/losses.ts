/**
 * Losses on spiking outputs (batch, time, classes) with integer labels (batch,): cross-entropy on
 * spike counts (a rate code), MSE of spike counts against target firing rates, and cross-entropy
 * on a readout's membrane (its maximum or last value over time).
 */
import { indexAxis, max, mean, oneHot, square, sub, sum, ShapeError, add, mul, type Tensor } from '../core/index.js';
import { sparseCategoricalCrossentropy, sparseCategoricalAccuracy, type LossFn, type MetricFn } from '../nn/index.js';

function checkSequence(where: string, yPred: Tensor): void {
  if (yPred.ndim !== 3) throw new ShapeError(`${where}: expected outputs (batch, time, classes), got shape [${yPred.shape.join(', ')}]`);
}
const labelsOf = (yTrue: Tensor): Tensor => (yTrue.ndim === 2 ? yTrue.reshape([yTrue.shape[0]]) : yTrue);

/** Spike counts over time: (batch, time, classes) -> (batch, classes). */
export function spikeCounts(spikes: Tensor): Tensor {
  checkSequence('spikeCounts', spikes);
  return sum(spikes, 1);
}

/**
 * Cross-entropy with the spike counts as logits (snnTorch's ce_count_loss / ce_rate_loss up to
 * the 1/T scale): softmax over classes of sum_t S_t.
 *
 * @example
 * fit(model, vars, x, y, { loss: spikeCountCrossEntropy(), ... }) // model ends in leaky(): (batch, time, classes)
 */
export function spikeCountCrossEntropy(): LossFn {
  const ce = sparseCategoricalCrossentropy({ fromLogits: true });
  return (yTrue, yPred) => {
    checkSequence('spikeCountCrossEntropy', yPred);
    return ce(yTrue, sum(yPred, 1));
  };
}

/**
 * MSE between spike counts and target counts: correctRate * T spikes for the label's neuron,
 * incorrectRate * T for the others (snnTorch's mse_count_loss; defaults 0.8 and 0.2).
 */
export function spikeCountMse(options: { correctRate?: number; incorrectRate?: number } = {}): LossFn {
  const correct = options.correctRate ?? 0.8;
  const incorrect = options.incorrectRate ?? 0.2;
  for (const [n, v] of [
    ['correctRate', correct],
    ['incorrectRate', incorrect],
  ] as const) {
    if (!(v >= 0 && v <= 1)) throw new RangeError(`spikeCountMse: ${n} must be within [0, 1] (spikes per step), got ${v}`);
  }
  return (yTrue, yPred) => {
    checkSequence('spikeCountMse', yPred);
    const [, steps, classes] = yPred.shape;
    const hot = oneHot(labelsOf(yTrue), classes, yPred.dtype);
    const target = add(mul(hot, (correct - incorrect) * steps), incorrect * steps);
    return mean(square(sub(sum(yPred, 1), target)));
  };
}

/**
 * Cross-entropy on a readout membrane (a leakyIntegrator's output, (batch, time, classes)): its
 * maximum over time (default) or its last value are the logits.
 */
export function membraneCrossEntropy(options: { reduce?: 'max' | 'last' } = {}): LossFn {
  const reduce = options.reduce ?? 'max';
  if (reduce !== 'max' && reduce !== 'last')
    throw new RangeError(`membraneCrossEntropy: reduce must be 'max' or 'last', got '${String(reduce)}'`);
  const ce = sparseCategoricalCrossentropy({ fromLogits: true });
  return (yTrue, yPred) => {
    checkSequence('membraneCrossEntropy', yPred);
    return ce(yTrue, reduce === 'max' ? max(yPred, 1) : indexAxis(yPred, 1, -1));
  };
}

/** Accuracy of the most-spiking output neuron (ties: the lowest index). */
export const spikeCountAccuracy: MetricFn = Object.assign(
  (yTrue: Tensor, yPred: Tensor) => sparseCategoricalAccuracy(yTrue, sum(yPred, 1)),
  { metricName: 'accuracy' },
);
