/** Spike statistics for any sequential model with a spiking layer (the seed's check_output). */
import { argmax, fromTyped, mean, NDArray, softmax, indexAxis, type Tensor, type Tree } from '../core/index.js';
import { mapLayers, predict, selectLayers, type Layer, type Variables } from '../nn/index.js';
import { readDt, setDt } from './dt.js';

export interface SpikeStats {
  /** Accuracy against `labels` (when given): mean output over time with pooling, else the last step. */
  readonly accuracy?: number;
  /** Spike rates per neuron in Hz over the run's simulated time: min / mean / max over neurons and examples. */
  readonly rateHz: { readonly min: number; readonly mean: number; readonly max: number };
  /** Spike counts per neuron per time step (n_spikes = output * dt): (examples, time, ...units). */
  readonly spikeCounts: NDArray;
  /** The model's output at every time step (pooling removed): (examples, time, classes). */
  readonly outputs: NDArray;
  readonly dt: number;
  readonly steps: number;
}

/**
 * Runs `model` with its time pooling removed and its spiking/filter layers returning sequences
 * (optionally at a new dt), and reports accuracy, spike counts and rates of the first spiking layer.
 *
 * @example
 * const s = spikeStats(model, vars, testSequences, { labels: testLabels, dt: 0.01 });
 * console.log(s.accuracy, s.rateHz.mean);
 */
export function spikeStats(
  model: Layer,
  variables: Variables,
  x: NDArray,
  options: { labels?: NDArray; dt?: number; batchSize?: number; key?: Tensor } = {},
): SpikeStats {
  if (model.kind !== 'Sequential' || !model.children) throw new TypeError('spikeStats: expected a sequential model');
  const hasPooling = model.children.some((l) => l.kind === 'GlobalAveragePooling1D');
  // Time-loop layers (those carrying a dt) return every step; the first spiking layer is counted.
  const probe = mapLayers(model, (l) => (l.kind === 'GlobalAveragePooling1D' ? null : l.carriesDt ? l.with({ returnSequences: true }) : l));
  const spikeIndex = probe.children!.findIndex((l) => l.spikes !== undefined);
  if (spikeIndex < 0)
    throw new TypeError(
      'spikeStats: the model has no spiking layer (one that declares `spikes`, as spikingActivation and the neuron layers do)',
    );
  const perDt = probe.children![spikeIndex].spikes === 'rate';
  const upToSpikes = mapLayers(probe, (l) => (probe.children!.indexOf(l) <= spikeIndex ? l : null));
  let state: Tree = selectLayers(probe, variables.state);
  if (options.dt !== undefined) state = setDt(probe, state, options.dt);
  const dt = readDt(probe, state)!;
  const vars = { params: selectLayers(probe, variables.params), state };
  const outputs = predict(probe, vars, x, { batchSize: options.batchSize, key: options.key });
  const spikes = predict(upToSpikes, { params: selectLayers(upToSpikes, vars.params), state: selectLayers(upToSpikes, vars.state) }, x, {
    batchSize: options.batchSize,
    key: options.key,
  });
  const steps = spikes.shape[1];
  const counts = spikes.toTyped();
  // A 'rate' layer writes a spike as 1/dt; a 'count' layer as 1 (or its graded height).
  if (perDt) for (let i = 0; i < counts.length; i++) counts[i] *= dt;
  const spikeCounts = fromTyped(counts, spikes.shape);
  // Rate per (example, neuron) = spikes over the run / simulated time.
  const units = counts.length / (spikes.shape[0] * steps);
  let mn = Infinity;
  let mx = -Infinity;
  let total = 0;
  const simTime = steps * dt;
  for (let e = 0; e < spikes.shape[0]; e++) {
    for (let u = 0; u < units; u++) {
      let c = 0;
      for (let t = 0; t < steps; t++) c += counts[(e * steps + t) * units + u];
      const r = c / simTime;
      if (r < mn) mn = r;
      if (r > mx) mx = r;
      total += r;
    }
  }
  let accuracy: number | undefined;
  if (options.labels) {
    const final: Tensor = hasPooling ? mean(outputs, 1) : indexAxis(outputs, 1, -1);
    const pred = argmax(final, -1).toTyped();
    const labels = options.labels.toTyped();
    let ok = 0;
    for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) ok++;
    accuracy = ok / pred.length;
  }
  return { accuracy, rateHz: { min: mn, mean: total / (spikes.shape[0] * units), max: mx }, spikeCounts, outputs, dt, steps };
}

/** Softmax of outputs over time for one example: (time, classes). */
export function probabilitiesOverTime(stats: SpikeStats, example: number): NDArray {
  return softmax(indexAxis(stats.outputs, 0, example), -1) as NDArray;
}
