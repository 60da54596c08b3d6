/** spiketrace/spiking: spiking neurons, synaptic filters, rate regularizers, dt, statistics, energy. */
export { spikingActivation, spikeTrain, resetSpikingState, type SpikingActivationOptions, type SpikingState } from './activation.js';
export { lowpass, alpha, type FilterOptions, type FilterParams, type FilterState } from './filters.js';
export * as regularizers from './regularizers.js';
export * as constraints from './constraints.js';
export { dtScheduler } from './scheduler.js';
export { getDefaultDt, setDefaultDt, setDt, readDt } from './dt.js';
export { spikeStats, probabilitiesOverTime, type SpikeStats } from './stats.js';
export { modelEnergy, registerDevice, registerLayerRule, listDevices, type Device, type EnergyReport, type LayerEnergy, type LayerRule } from './energy.js';
