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

/** Options of nir.save, saveToBytes and graphFromModel. */
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
  if (!(typeof options?.dt === 'number' && options.dt > 0 && Number.isFinite(options.dt)))
    throw new NirError(`nir.save: dt must be a positive number of seconds, got ${options?.dt}`);
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
    // The layer's main node takes the layer's name; its other nodes (a recurrent weight) `layer_key`.
    const nameOf = (k: string): string => (k === exported.nodes[0][0] ? layer.name : `${layer.name}_${k}`);
    for (const [k, node] of exported.nodes) nodes[nameOf(k)] = node;
    edges.push([last, layer.name]);
    for (const [from, to] of exported.cycles) edges.push([nameOf(from), nameOf(to)]);
    last = layer.name;
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
      if (t.size !== shape.reduce((a, b) => a * b, 1))
        throw new NirError(
          `nir.save: params of node '${[...path, k].join('.')}': '${name}' has shape ${fmt(t.shape)}, the graph's is ${fmt(shape)}`,
        );
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
  throw new NirError(
    `nir.save: give options.inputShape (the per-step input shape): it cannot be inferred from the first layer '${first?.name}' (${first?.kind})`,
  );
}

interface ExportedLayer {
  /** The layer's nodes by a local key; the first is the one the chain enters and leaves. */
  readonly nodes: readonly [string, NirLeafNode][];
  /** Extra edges between the layer's own nodes (recurrent connections), by local key. */
  readonly cycles: readonly [string, string][];
  readonly outShape: number[];
}

const NO_COUNTERPART: Record<string, string> = {
  Synaptic:
    "synaptic's current enters the membrane within the same step through a per-step decay (alpha), which no NIR CubaLIF discretisation reproduces exactly; export leaky layers, or build the network from NIR's CubaLIF",
  RecurrentSynaptic: 'as synaptic: no exact NIR CubaLIF counterpart',
  AdaptiveLeaky: 'NIR has no adaptive-threshold neuron',
  SpikingActivation:
    'spikingActivation has no exact NIR node: it integrates f(x) with a remainder reset (v -= floor(v)) from random initial voltages and emits spikes of height 1/dt, which no NIR neuron does; replace it with a LIF-family neuron (leaky, integrateAndFire) to export',
  GlobalAveragePooling1D:
    'globalAveragePooling1d averages over time, and NIR graphs run step by step with no time reduction; drop it from the exported model and average the outputs afterwards',
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
      if (act !== undefined && act !== null && act !== 'linear')
        throw new NirError(
          `${where}: its activation '${String(act)}' has no NIR node; export a dense layer without activation (put the nonlinearity in a neuron)`,
        );
      const k = p.kernel;
      if (inShape.length !== 1 || inShape[0] !== k.shape[0])
        throw new NirError(`${where}: its kernel is ${fmt(k.shape)} but the input per step is ${fmt(inShape)}`);
      // NIR's weight is (out x in): the transpose of a dense kernel.
      const [nIn, nOut] = k.shape;
      const kv = k.toTyped() as ArrayLike<number>;
      const w = new Float64Array(nIn * nOut);
      for (let i = 0; i < nIn; i++) for (let o = 0; o < nOut; o++) w[o * nIn + i] = kv[i * nOut + o];
      const weight = nirArray(w, [nOut, nIn], 'float32');
      const node: NirLeafNode =
        p.bias !== undefined ? { type: 'Affine', params: { weight, bias: tensorArray(p.bias) } } : { type: 'Linear', params: { weight } };
      return { nodes: [['0', node]], cycles: [], outShape: [nOut] };
    }
    case 'Flatten': {
      if (layer.kind !== 'TimeDistributed')
        throw new NirError(
          `${where}: a flatten on (batch, time, ...) would fold time into the features; wrap it in timeDistributed to export it`,
        );
      const out = [inShape.reduce((a, b) => a * b, 1)];
      return {
        nodes: [
          [
            '0',
            {
              type: 'Flatten',
              params: {
                start_dim: nirArray([0], [], 'int64'),
                end_dim: nirArray([-1], [], 'int64'),
                input_type: nirArray(inShape, [inShape.length], 'int64'),
              },
            },
          ],
        ],
        cycles: [],
        outShape: out,
      };
    }
    case 'Activation':
      if (inner.config.activation === 'linear')
        return {
          nodes: [
            ['0', { type: 'Scale', params: { scale: nirArray(new Float64Array(inShape.reduce((a, b) => a * b, 1)).fill(1), inShape) } }],
          ],
          cycles: [],
          outShape: inShape,
        };
      throw new NirError(`${where}: the activation '${String(inner.config.activation)}' has no NIR node`);
    case 'Lowpass':
    case 'Alpha': {
      if (layer.config.returnSequences === false)
        throw new NirError(`${where}: returnSequences false reduces over time, which NIR cannot express`);
      if (layer.config.initialLevel !== 0)
        throw new NirError(`${where}: initialLevel ${String(layer.config.initialLevel)}: NIR neurons start at 0`);
      // The layer keeps dt as a float32 scalar: compare at that precision.
      const layerDt = (state as Record<string, Tensor> | undefined)?.dt?.item();
      if (layerDt !== undefined && layerDt !== Math.fround(dt))
        throw new NirError(`${where}: it runs at dt = ${String(layer.config.dt ?? layerDt)} s, the export's dt is ${dt} s`);
      const n = inShape.reduce((a, b) => a * b, 1);
      const tau = tensorArray(p.tau, inShape);
      const ones = nirArray(new Float64Array(n).fill(1), inShape);
      const zero = nirArray(new Float64Array(n), inShape);
      // Lowpass: y' = (u - y) / tau, an LI with r = 1 and v_leak = 0 (exact under 'exact').
      // Alpha: 1 / (tau s + 1)^2, a CubaLI with tau_syn = tau_mem = tau, r = 1, w_in = 1.
      const node: NirLeafNode =
        kind === 'Lowpass'
          ? { type: 'LI', params: { tau, r: ones, v_leak: zero } }
          : { type: 'CubaLI', params: { tau_syn: tau, tau_mem: tau, r: ones, v_leak: zero, w_in: ones } };
      return { nodes: [['0', node]], cycles: [], outShape: inShape };
    }
    case 'Conv1D':
    case 'Conv2D':
      return exportConv(inner, p, inShape, where);
    case 'AveragePooling2D':
      return exportPool(inner, inShape, where);
    case 'Leaky':
    case 'RecurrentLeaky':
    case 'IntegrateAndFire':
    case 'LeakyIntegrator':
      return exportNeuron(layer, p, state, inShape, dt, where);
    default: {
      const why = NO_COUNTERPART[kind];
      throw new NirError(
        `${where} has no NIR counterpart${why ? `: ${why}` : ' (exportable: dense, timeDistributed flatten, conv1d, conv2d and averagePooling2d (channelsFirst), lowpass, alpha, leaky, recurrentLeaky, integrateAndFire, leakyIntegrator, models loaded from NIR)'}`,
      );
    }
  }
}

const CHANNELS_FIRST_ONLY =
  "NIR's convolutions and pooling take channels-first tensors (c, ...spatial) and have no transpose node; build the layer with dataFormat: 'channelsFirst' to export it";

/** Symmetric padding per axis (NIR/PyTorch pad both sides alike), or an error naming the layer. */
function symmetricPadding(
  layer: Layer,
  inSpatial: number[],
  window: number[],
  strides: number[],
  dilation: number[],
  where: string,
): number[] {
  const padding = layer.config.padding as string | [number, number][];
  let pairs: [number, number][];
  if (padding === 'valid') pairs = window.map(() => [0, 0]);
  else if (padding === 'same')
    // TensorFlow's 'same': total max((ceil(n / s) - 1) s + dilated window - n, 0), the odd element after.
    pairs = inSpatial.map((n, i) => {
      const total = Math.max((Math.ceil(n / strides[i]) - 1) * strides[i] + (window[i] - 1) * dilation[i] + 1 - n, 0);
      return [Math.floor(total / 2), total - Math.floor(total / 2)];
    });
  else if (Array.isArray(padding)) pairs = padding;
  else throw new NirError(`${where}: padding '${String(padding)}' pads one side only, which NIR (symmetric padding) cannot express`);
  const odd = pairs.find(([low, high]) => low !== high);
  if (odd !== undefined)
    throw new NirError(`${where}: its padding [${odd.join(', ')}] differs between the two sides of an axis; NIR pads both sides alike`);
  return pairs.map(([low]) => low);
}

/** A convolution layer (channelsFirst) as a Conv1d/Conv2d node: the kernel [...k, c_in / g, c_out] becomes (c_out, c_in / g, ...k). */
function exportConv(layer: Layer, p: Record<string, Tensor>, inShape: number[], where: string): ExportedLayer {
  const c = layer.config;
  if (c.dataFormat !== 'channelsFirst') throw new NirError(`${where}: ${CHANNELS_FIRST_ONLY}`);
  if (c.activation !== undefined && c.activation !== null && c.activation !== 'linear')
    throw new NirError(`${where}: its activation '${String(c.activation)}' has no NIR node; put the nonlinearity in a neuron`);
  const rank = layer.kind === 'Conv1D' ? 1 : 2;
  const k = p.kernel;
  const window = k.shape.slice(0, rank);
  const [perGroup, out] = k.shape.slice(rank);
  const groups = c.groups as number;
  if (inShape.length !== rank + 1 || inShape[0] !== perGroup * groups)
    throw new NirError(
      `${where}: its kernel ${fmt(k.shape)} (groups ${groups}) needs input (${perGroup * groups}, ...${rank} spatial) per step, got ${fmt(inShape)}`,
    );
  const strides = c.strides as number[];
  const dilation = c.dilation as number[];
  const spatial = inShape.slice(1);
  const pad = symmetricPadding(layer, spatial, window, strides, dilation, where);
  const kv = k.toTyped() as ArrayLike<number>;
  const taps = window.reduce((a, b) => a * b, 1);
  const w = new Float64Array(kv.length);
  for (let tap = 0; tap < taps; tap++)
    for (let ci = 0; ci < perGroup; ci++)
      for (let o = 0; o < out; o++) w[(o * perGroup + ci) * taps + tap] = kv[(tap * perGroup + ci) * out + o];
  const bias = p.bias !== undefined ? tensorArray(p.bias) : nirArray(new Float64Array(out), [out], 'float32');
  const outSpatial = spatial.map((n, i) => Math.floor((n + 2 * pad[i] - dilation[i] * (window[i] - 1) - 1) / strides[i]) + 1);
  const ints = (v: number[]): NirArray => nirArray(v, [v.length], 'int64');
  const node: NirLeafNode = {
    type: rank === 1 ? 'Conv1d' : 'Conv2d',
    params: {
      weight: nirArray(w, [out, perGroup, ...window], 'float32'),
      bias,
      stride: ints(strides),
      padding: ints(pad),
      dilation: ints(dilation),
      groups: nirArray([groups], [], 'int64'),
      input_shape: ints(spatial),
    },
  };
  return { nodes: [['0', node]], cycles: [], outShape: [out, ...outSpatial] };
}

/** averagePooling2d (channelsFirst, no padding: Keras's average leaves padded positions out, PyTorch's counts them) as AvgPool2d. */
function exportPool(layer: Layer, inShape: number[], where: string): ExportedLayer {
  const c = layer.config;
  if (c.dataFormat !== 'channelsFirst') throw new NirError(`${where}: ${CHANNELS_FIRST_ONLY}`);
  if (inShape.length !== 3) throw new NirError(`${where}: expects (channels, height, width) per step, got ${fmt(inShape)}`);
  const window = c.poolSize as number[];
  const strides = c.strides as number[];
  const pad = symmetricPadding(layer, inShape.slice(1), window, strides, [1, 1], where);
  if (pad.some((q) => q !== 0))
    throw new NirError(
      `${where}: 'same' padding that pads (${fmt(pad)}) averages over the real positions only, while NIR's AvgPool2d (PyTorch's) counts the padding; use padding 'valid'`,
    );
  const ints = (v: number[]): NirArray => nirArray(v, [v.length], 'int64');
  const outSpatial = inShape.slice(1).map((n, i) => Math.floor((n - window[i]) / strides[i]) + 1);
  return {
    nodes: [['0', { type: 'AvgPool2d', params: { kernel_size: ints(window), stride: ints(strides), padding: ints([0, 0]) } }]],
    cycles: [],
    outShape: [inShape[0], ...outSpatial],
  };
}

/**
 * A LIF-family neuron layer as NIR nodes. Continuous-time layers (tau, r, vLeak) are written as
 * they are, a learned tau (`learnTau`) with its trained values. Discrete-time ones (beta) map so that NIR's exact (zero-order hold) discretisation at
 * the same dt gives the same step: tau = -dt / ln(beta), r = 1 / (1 - beta), v_leak = 0 (then
 * exp(-dt/tau) = beta and (1 - beta) r = 1). Load such files with discretisation 'exact'.
 * NIR's LIF resets to v_reset in the step it fires; a `zero` reset with vReset = vLeak is the same
 * dynamics, a `subtract` reset is not (it is refused).
 */
function exportNeuron(layer: Layer, p: Record<string, Tensor>, state: Tree, inShape: number[], dt: number, where: string): ExportedLayer {
  const c = layer.config;
  const n = inShape.reduce((a, b) => a * b, 1);
  const learned = new Set((c.learn as string[] | undefined) ?? []);
  const spiking = layer.kind !== 'LeakyIntegrator';
  if (c.returnSequences === false) throw new NirError(`${where}: returnSequences false reduces over time, which NIR cannot express`);
  if (c.initialMembrane === 'uniform')
    throw new NirError(`${where}: a random initial membrane cannot be written in NIR (its neurons start at 0)`);
  if (c.output !== undefined && c.output !== 'spikes' && spiking)
    throw new NirError(`${where}: output '${String(c.output)}' (a state instead of the spikes) has no NIR node`);
  const layerDt = (state as Record<string, Tensor> | undefined)?.dt?.item();
  if (layerDt !== undefined && layerDt !== Math.fround(dt))
    throw new NirError(`${where}: it runs at dt = ${String(c.dt ?? layerDt)} s, the export's dt is ${dt} s`);
  const values = (name: string, fallback: number): Float64Array => {
    const v = learned.has(name) ? p[name] : c[name];
    let raw: ArrayLike<number>;
    if (v === undefined || v === null) raw = [fallback];
    else if (typeof v === 'number') raw = [v];
    else if (Array.isArray(v)) raw = v as number[];
    else raw = (v as Tensor).toTyped() as ArrayLike<number>;
    if (raw.length !== 1 && raw.length !== n) throw new NirError(`${where}: ${name} has ${raw.length} values for ${n} units`);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = raw.length === 1 ? raw[0] : raw[i];
    return out;
  };
  const arrayOf = (v: Float64Array): NirArray => nirArray(v, inShape, 'float32');
  let tau: Float64Array | null = null;
  let r: Float64Array;
  let vLeak: Float64Array;
  if (layer.kind === 'IntegrateAndFire') {
    // The IF cell adds r dt x per step when r is given, x otherwise (r = 1/dt).
    r = c.r === undefined ? new Float64Array(n).fill(1 / dt) : values('r', 1);
    vLeak = new Float64Array(n);
  } else if (c.tau !== undefined) {
    // A learned tau is written as trained (values() reads the parameter); training may have pushed it out of NIR's range.
    tau = values('tau', 0);
    const bad = tau.find((v) => !(v > 0 && Number.isFinite(v)));
    if (bad !== undefined) throw new NirError(`${where}: tau ${bad} is not a positive time constant (a learned tau must stay positive)`);
    r = values('r', 1);
    vLeak = values('vLeak', 0);
  } else {
    const beta = values('beta', 0.9).map((b) => Math.min(1, Math.max(0, Math.fround(b))));
    const bad = beta.find((b) => !(b > 0 && b < 1));
    if (bad !== undefined)
      throw new NirError(
        `${where}: beta ${bad} has no NIR time constant (tau = -dt / ln(beta) needs 0 < beta < 1${bad === 1 ? '; a neuron without leak is integrateAndFire' : ''})`,
      );
    tau = beta.map((b) => -dt / Math.log(b));
    r = beta.map((b) => 1 / (1 - b));
    vLeak = new Float64Array(n);
  }
  const main = ((): NirLeafNode => {
    if (!spiking) return { type: 'LI', params: { tau: arrayOf(tau!), r: arrayOf(r), v_leak: arrayOf(vLeak) } };
    if (c.reset !== 'zero')
      throw new NirError(
        `${where}: its '${String(c.reset)}' reset has no NIR counterpart: NIR's ${tau ? 'LIF' : 'IF'} resets to v_reset in the step it fires, which is a neuron with reset: 'zero' (and vReset = vLeak)`,
      );
    const vReset = values('vReset', 0);
    if (vReset.some((v, i) => v !== vLeak[i]))
      throw new NirError(
        `${where}: vReset differs from vLeak: after a zero reset the cell holds vReset for the next step, while NIR's neuron leaks from v_reset; they agree only when vReset = vLeak`,
      );
    const graded = values('graded', 1);
    if (graded.some((g) => g !== 1))
      throw new NirError(`${where}: graded spikes (height ${graded.find((g) => g !== 1)}) have no NIR node: NIR neurons emit 0/1`);
    const threshold = arrayOf(values('threshold', 1));
    return tau
      ? {
          type: 'LIF',
          params: { tau: arrayOf(tau), r: arrayOf(r), v_leak: arrayOf(vLeak), v_threshold: threshold, v_reset: arrayOf(vReset) },
        }
      : { type: 'IF', params: { r: arrayOf(r), v_threshold: threshold, v_reset: arrayOf(vReset) } };
  })();
  if (layer.kind !== 'RecurrentLeaky') return { nodes: [['0', main]], cycles: [], outShape: inShape };
  // The recurrent drive S_{t-1} W (all-to-all) or S_{t-1} w (one-to-one) as a cycle through a Linear/Scale node.
  if (inShape.length !== 1) throw new NirError(`${where}: recurrent weights are exported for one unit axis, got units ${fmt(inShape)}`);
  const w = p.recurrent;
  const rec: NirLeafNode =
    c.recurrent === 'oneToOne'
      ? { type: 'Scale', params: { scale: tensorArray(w, inShape) } }
      : (() => {
          const wv = w.toTyped() as ArrayLike<number>;
          const t = new Float64Array(n * n);
          for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = wv[i * n + j];
          return { type: 'Linear', params: { weight: nirArray(t, [n, n], 'float32') } } as NirLeafNode;
        })();
  return {
    nodes: [
      ['0', main],
      ['rec', rec],
    ],
    cycles: [
      ['0', 'rec'],
      ['rec', '0'],
    ],
    outShape: inShape,
  };
}
