/**
 * Energy estimates per inference from synaptic operations and neuron updates, on the devices of
 * the reference tables (J per synop, J per neuron update) and on user-registered ones.
 */
import { abs, mean, random, type NDArray, type Tensor, type Tree } from '../core/index.js';
import type { Layer, LayerShape } from '../nn/index.js';
import { readDt } from './dt.js';

export interface Device {
  readonly energyPerSynop: number;
  readonly energyPerNeuron: number;
  readonly spiking: boolean;
}

const devices = new Map<string, Device>([
  ['cpu', { energyPerSynop: 8.6e-9, energyPerNeuron: 8.6e-9, spiking: false }],
  ['gpu', { energyPerSynop: 0.3e-9, energyPerNeuron: 0.3e-9, spiking: false }],
  ['arm', { energyPerSynop: 0.9e-9, energyPerNeuron: 0.9e-9, spiking: false }],
  ['loihi', { energyPerSynop: 27.1e-12, energyPerNeuron: 81e-12, spiking: true }],
  ['spinnaker', { energyPerSynop: 13.3e-9, energyPerNeuron: 26e-9, spiking: true }],
  ['spinnaker2', { energyPerSynop: 450e-12, energyPerNeuron: 2.19e-9, spiking: true }],
]);

/** Adds (or replaces) a device by name. */
export function registerDevice(name: string, device: Device): void {
  if (!(device.energyPerSynop >= 0 && device.energyPerNeuron >= 0))
    throw new RangeError(`registerDevice '${name}': energies must be non-negative`);
  devices.set(name, device);
}
export function listDevices(): string[] {
  return [...devices.keys()];
}

/** Connections and neurons of one layer, from its kind, config and one-step shapes. */
export type LayerRule = (
  layer: Layer,
  inputShape: LayerShape,
  outputShape: LayerShape,
) => { connections: number; neurons: number; spiking: boolean };

/** Rules for layer kinds that declare no `energy` capability (registerLayerRule). */
const rules = new Map<string, LayerRule>();

/**
 * Registers the connection/neuron rule for a layer kind, for layers that declare no `energy`
 * capability, or to override it (see nn/layer.ts).
 */
export function registerLayerRule(kind: string, rule: LayerRule): void {
  rules.set(kind, rule);
}

export interface LayerEnergy {
  readonly name: string;
  readonly kind: string;
  readonly connections: number;
  readonly neurons: number;
  readonly spiking: boolean;
  /** Mean |input| of the layer over the example data (Hz for spike inputs). */
  readonly inputRate?: number;
}

export interface EnergyReport {
  readonly layers: readonly LayerEnergy[];
  readonly dt: number;
  readonly timesteps: number;
  /** Energy per inference in J on `device`, per layer and in total. */
  energy(device: string): { perLayer: number[]; total: number };
  /** A table of layers and totals on the given devices. */
  summary(devicesToShow?: readonly string[]): string;
}

/**
 * Estimates energy per inference for a sequential model. With example data (batch, time, ...),
 * each layer's input rate is measured, which spiking devices need.
 *
 * @example
 * const report = modelEnergy(model, vars, [null, 28, 28], slice(testSequences, [0], [100]) as NDArray);
 * console.log(report.summary(['cpu', 'loihi']));
 */
export function modelEnergy(
  model: Layer,
  variables: { params: Tree; state: Tree },
  inputShape: LayerShape,
  exampleData?: NDArray,
): EnergyReport {
  const layers = model.childStates === 'byName' && model.children ? model.children : [model];
  const entries: LayerEnergy[] = [];
  let shape = inputShape;
  let x: Tensor | undefined = exampleData;
  const params = variables.params as Record<string, Tree>;
  const state = variables.state as Record<string, Tree>;
  const key = random.key(0);
  let timesteps = 1;
  if (exampleData && exampleData.ndim >= 3) timesteps = exampleData.shape[1];
  layers.forEach((l, i) => {
    // A container of one layer (timeDistributed) is reported as its layer.
    const inner = l.childStates === 'shared' && l.children?.length === 1 ? l.children[0] : l;
    const r = l.init(random.key(0), shape);
    let counts = { connections: 0, neurons: 0, spiking: false };
    // A rule registered for the kind overrides what the layer declares.
    const rule = rules.get(inner.kind);
    const wrapped = inner !== l;
    if (rule) counts = rule(inner, wrapped ? shape.slice(1) : shape, wrapped ? r.outputShape.slice(1) : r.outputShape);
    else if (l.energy) counts = l.energy(shape, r.outputShape);
    let inputRate: number | undefined;
    if (x !== undefined) {
      inputRate = mean(abs(x)).item();
      x = l.apply(params[l.name], x, { training: false, key: random.foldIn(key, i) }, state[l.name]).y;
    }
    entries.push({ name: l.name, kind: inner.kind, ...counts, inputRate });
    shape = r.outputShape;
  });
  const dt = readDt(model, variables.state) ?? 0.001;
  const energy = (deviceName: string): { perLayer: number[]; total: number } => {
    const d = devices.get(deviceName);
    if (!d) throw new RangeError(`modelEnergy: unknown device '${deviceName}'; known: ${listDevices().join(', ')}`);
    const perLayer = entries.map((e) => {
      if (!d.spiking) return d.energyPerSynop * e.connections + d.energyPerNeuron * e.neurons;
      if (e.connections > 0 && e.inputRate === undefined)
        throw new RangeError(`modelEnergy: device '${deviceName}' is spiking and needs input rates; pass example data`);
      return d.energyPerSynop * e.connections * (e.inputRate ?? 0) * dt * timesteps + d.energyPerNeuron * e.neurons * timesteps;
    });
    return { perLayer, total: perLayer.reduce((a, c) => a + c, 0) };
  };
  return {
    layers: entries,
    dt,
    timesteps,
    energy,
    summary(show = exampleData ? listDevices() : listDevices().filter((n) => !devices.get(n)!.spiking)) {
      const head = ['layer', 'connections', 'neurons', 'rate (Hz)', ...show.map((s) => `${s} (J/inf)`)];
      const es = show.map(energy);
      const rows = entries.map((e, i) => [
        `${e.name} (${e.kind})`,
        String(e.connections),
        String(e.neurons),
        e.inputRate === undefined ? '-' : e.inputRate.toFixed(3),
        ...es.map((x) => x.perLayer[i].toExponential(3)),
      ]);
      rows.push([
        'total',
        String(entries.reduce((a, e) => a + e.connections, 0)),
        String(entries.reduce((a, e) => a + e.neurons, 0)),
        '',
        ...es.map((x) => x.total.toExponential(3)),
      ]);
      const w = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)) + 2);
      return [head, ...rows].map((r) => r.map((c, j) => c.padEnd(w[j])).join('')).join('\n');
    },
  };
}
