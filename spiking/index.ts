/** spiketrace/spiking: spiking neurons, synaptic filters, rate regularizers, dt, statistics, energy. */
export {
  spikingActivation,
  activationCell,
  spikeTrain,
  resetSpikingState,
  type SpikingActivationOptions,
  type SpikingState,
} from './activation.js';
export { lowpass, alpha, type FilterOptions, type FilterParams, type FilterState } from './filters.js';
export * as regularizers from './regularizers.js';
export * as constraints from './constraints.js';
export { dtScheduler } from './scheduler.js';
export { getDefaultDt, setDefaultDt, setDt, readDt } from './dt.js';
export { spikeStats, probabilitiesOverTime, type SpikeStats } from './stats.js';
export {
  modelEnergy,
  registerDevice,
  registerLayerRule,
  listDevices,
  type Device,
  type EnergyReport,
  type LayerEnergy,
  type LayerRule,
} from './energy.js';
export * as surrogate from './surrogate.js';
export { heaviside, type Surrogate, type SurrogateName } from './surrogate.js';
export { runCell, type NeuronCell, type CellState, type CellRun } from './cell.js';
export { neuronLayer, resetNeuronState, type NeuronLayerOptions, type NeuronLayerState, type NeuronLayerSetup } from './neuron-layer.js';
export * from './neurons.js';
export { spikeCounts, spikeCountCrossEntropy, spikeCountMse, membraneCrossEntropy, spikeCountAccuracy } from './losses.js';
export * as nir from './nir/index.js';
