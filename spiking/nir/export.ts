/**
 * spiketrace models as NIR graphs. A model loaded from NIR is written back as its graph with the
 * current params; a sequential model becomes a chain Input -> one node per layer -> Output, with
 * the layers' own names as node names. Every layer without a NIR counterpart is an error that names
 * it: nothing is skipped silently.
 */
import type { Tensor, Tree } from '../../core/index.js';
import type { Layer } from '../../nn/index.js';
import { NirError } from './hdf5.js';
import { nirArray, type NirArray, type NirGraph, type NirLeafNode, type NirNode } from './graph.js';
import type { NirModel, NirParams } from './simulate.js';

export interface ExportOptions {
  /** The time step (seconds) the model runs at: layers that carry their own dt must agree with it. */
  readonly dt: number;
  /** The per-step input shape (no batch or time axis); inferred from the first dense layer when omitted. */
  readonly inputShape?: readonly number[];
}

const fmt = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

function tensorArray(t: Tensor, shape: readonly number[] = t.shape): NirArray {
  const values = t.toTyped();
  return nirArray(values as ArrayLike<number>, shape, 'float32');
}

function isNirModel(model: Layer): model is NirModel {
  return model.kind === 'NIRGraph' && typeof (model as Partial<NirModel>).nir === 'object';
}

/** The NIR graph of a model with its variables. */
export function graphFromModel(model: Layer, variables: { params: Tree; state?: Tree }, options: ExportOptions): NirGraph {
  if (!(typeof options?.dt === 'number' && options.dt > 0 && Number.isFinite(options.dt))) throw new NirError(`nir.save: dt must be a positive number of seconds, got ${options?.dt}`);
  if (isNirModel(model)) return graphWithParams(model.nir.graph, variables.params as NirParams, []);
  const layers = model.kind === 'Sequential' && model.children ? model.children : [model];
  const params = (model.kind === 'Sequential' ? variables.params : { [model.name]: variables.params }) as Record<string, Tree>;
  const state = (model.kind === 'Sequential' ? (variables.state ?? {}) : { [model.name]: variables.state ?? {} }) as Record<string, Tree>;
  let shape = options.inputShape ? [...options.inputShape] : inferInputShape(layers, params);
  const nodes: Record<string, NirNode> = {};
  const edges: [string, string][] = [];
  const taken = new Set(layers.map((l) => l.name));
  const portName = (base: string): string => {
    let n = base;
    for (let i = 1; taken.has(n); i++) n = `${base}_${i}`;
    taken.add(n);
    return n;
  };
  const input = portName('input');
  nodes[input] = { type: 'Input', params: { shape: nirArray(shape, [shape.length], 'int64') } };
  let last = input;
  for (const layer of layers) {
    const exported = exportLayer(layer, params[layer.name], state[layer.name], shape, options.dt);
    for (const [k, node] of exported.nodes) {
      const name = exported.nodes.length === 1 ? layer.name : `${layer.name}_${k}`;
      nodes[name] = node;
      edges.push([last, name]);
      last = name;
    }
    for (const [from, to] of exported.cycles) edges.push([`${layer.name}_${from}`, `${layer.name}_${to}`]);
    shape = exported.outShape;
  }
  const output = portName('output');
  nodes[output] = { type: 'Output', params: { shape: nirArray(shape, [shape.length], 'int64') } };
  edges.push([last, output]);
  return { type: 'NIRGraph', nodes, edges };
}

function graphWithParams(graph: NirGraph, params: NirParams, path: string[]): NirGraph {
  const nodes: Record<string, NirNode> = {};
  for (const [k, n] of Object.entries(graph.nodes)) {
    if (n.type === 'NIRGraph') {
      nodes[k] = graphWithParams(n, (params?.[k] ?? {}) as NirParams, [...path, k]);
      continue;
    }
    const p = params?.[k] as Record<string, Tensor> | undefined;
    if (p === undefined) {
      nodes[k] = n;
      continue;
    }
    const updated: Record<string, NirArray | string> = { ...n.params };
    for (const [name, t] of Object.entries(p)) {
      const old = n.params[name];
      const shape = old !== undefined && typeof old !== 'string' ? old.shape : t.shape;
      if (t.size !== shape.reduce((a, b) => a * b, 1)) throw new NirError(`nir.save: params of node '${[...path, k].join('.')}': '${name}' has shape ${fmt(t.shape)}, the graph's is ${fmt(shape)}`);
      updated[name] = tensorArray(t, shape);
    }
    nodes[k] = { type: n.type, params: updated };
  }
  return { type: 'NIRGraph', nodes, edges: graph.edges };
}

function inferInputShape(layers: readonly Layer[], params: Record<string, Tree>): number[] {
  const first = layers[0];
  const inner = first?.kind === 'TimeDistributed' && first.children ? first.children[0] : first;
  if (inner?.kind === 'Dense') {
    const kernel = (params[first.name] as Record<string, Tensor>).kernel;
    return [kernel.shape[0]];
  }
  throw new NirError(`nir.save: give options.inputShape (the per-step input shape): it cannot be inferred from the first layer '${first?.name}' (${first?.kind})`);
}

interface ExportedLayer {
  /** Nodes in chain order, with a local key (the node name is the layer's, or `layer_key` when several). */
  readonly nodes: readonly [string, NirLeafNode][];
  /** Extra edges between the layer's own nodes (recurrent connections), by local key. */
  readonly cycles: readonly [string, string][];
  readonly outShape: number[];
}

const NO_COUNTERPART: Record<string, string> = {
  SpikingActivation:
    "spikingActivation has no exact NIR node: it integrates f(x) with a remainder reset (v -= floor(v)) from random initial voltages and emits spikes of height 1/dt, which no NIR neuron does; replace it with a LIF-family neuron (leaky, integrateAndFire) to export",
  GlobalAveragePooling1D: 'globalAveragePooling1d averages over time, and NIR graphs run step by step with no time reduction; drop it from the exported model and average the outputs afterwards',
  Reshape: 'NIR has no reshape node (only Flatten)',
  Lambda: 'a lambda layer is arbitrary code',
};

function exportLayer(layer: Layer, params: Tree, state: Tree, inShape: number[], dt: number): ExportedLayer {
  const where = `nir.save: layer '${layer.name}' (${layer.kind})`;
  const kind = layer.kind === 'TimeDistributed' && layer.children ? layer.children[0].kind : layer.kind;
  const inner = layer.kind === 'TimeDistributed' && layer.children ? layer.children[0] : layer;
  const p = (params ?? {}) as Record<string, Tensor>;
  switch (kind) {
    case 'Dense': {
      const act = inner.config.activation;
      if (act !== undefined && act !== null && act !== 'linear') throw new NirError(`${where}: its activation '${String(act)}' has no NIR node; export a dense layer without activation (put the nonlinearity in a neuron)`);
      const k = p.kernel;
      if (inShape.length !== 1 || inShape[0] !== k.shape[0]) throw new NirError(`${where}: its kernel is ${fmt(k.shape)} but the input per step is ${fmt(inShape)}`);
      // NIR's weight is (out x in): the transpose of a dense kernel.
      const [nIn, nOut] = k.shape;
      const kv = k.toTyped() as ArrayLike<number>;
      const w = new Float64Array(nIn * nOut);
      for (let i = 0; i < nIn; i++) for (let o = 0; o < nOut; o++) w[o * nIn + i] = kv[i * nOut + o];
      const weight = nirArray(w, [nOut, nIn], 'float32');
      const node: NirLeafNode = p.bias !== undefined ? { type: 'Affine', params: { weight, bias: tensorArray(p.bias) } } : { type: 'Linear', params: { weight } };
      return { nodes: [['0', node]], cycles: [], outShape: [nOut] };
    }
    case 'Flatten': {
      if (layer.kind !== 'TimeDistributed') throw new NirError(`${where}: a flatten on (batch, time, ...) would fold time into the features; wrap it in timeDistributed to export it`);
      const out = [inShape.reduce((a, b) => a * b, 1)];
      return { nodes: [['0', { type: 'Flatten', params: { start_dim: nirArray([0], [], 'int64'), end_dim: nirArray([-1], [], 'int64'), input_type: nirArray(inShape, [inShape.length], 'int64') } }]], cycles: [], outShape: out };
    }
    case 'Activation':
      if (inner.config.activation === 'linear') return { nodes: [['0', { type: 'Scale', params: { scale: nirArray(new Float64Array(inShape.reduce((a, b) => a * b, 1)).fill(1), inShape) } }]], cycles: [], outShape: inShape };
      throw new NirError(`${where}: the activation '${String(inner.config.activation)}' has no NIR node`);
    case 'Lowpass':
    case 'Alpha': {
      if (layer.config.returnSequences === false) throw new NirError(`${where}: returnSequences false reduces over time, which NIR cannot express`);
      if (layer.config.initialLevel !== 0) throw new NirError(`${where}: initialLevel ${String(layer.config.initialLevel)}: NIR neurons start at 0`);
      // The layer keeps dt as a float32 scalar: compare at that precision.
      const layerDt = (state as Record<string, Tensor> | undefined)?.dt?.item();
      if (layerDt !== undefined && layerDt !== Math.fround(dt)) throw new NirError(`${where}: it runs at dt = ${String(layer.config.dt ?? layerDt)} s, the export's dt is ${dt} s`);
      const n = inShape.reduce((a, b) => a * b, 1);
      const tau = tensorArray(p.tau, inShape);
      const ones = nirArray(new Float64Array(n).fill(1), inShape);
      const zero = nirArray(new Float64Array(n), inShape);
      // Lowpass: y' = (u - y) / tau, an LI with r = 1 and v_leak = 0 (exact under 'exact').
      // Alpha: 1 / (tau s + 1)^2, a CubaLI with tau_syn = tau_mem = tau, r = 1, w_in = 1.
      const node: NirLeafNode = kind === 'Lowpass' ? { type: 'LI', params: { tau, r: ones, v_leak: zero } } : { type: 'CubaLI', params: { tau_syn: tau, tau_mem: tau, r: ones, v_leak: zero, w_in: ones } };
      return { nodes: [['0', node]], cycles: [], outShape: inShape };
    }
    default: {
      const why = NO_COUNTERPART[kind];
      throw new NirError(`${where} has no NIR counterpart${why ? `: ${why}` : ' (exportable: dense, timeDistributed flatten, lowpass, alpha, models loaded from NIR)'}`);
    }
  }
}
