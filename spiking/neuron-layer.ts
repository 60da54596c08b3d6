/**
 * neuronLayer: runs any neuron cell over time. It owns what is not the neuron's business: the
 * layout (batch- or time-major), returnSequences, the state carried between calls (stateful
 * streaming), seeded initial state, hidden state returned on request, the activity regularizer,
 * training-only behaviour, and dt in the layer state (so setDt / dtScheduler change it without
 * recompiling).
 */
import { cast, div, indexAxis, random, scalar, ShapeError, transpose, type DType, type Tensor, type Tree } from '../core/index.js';
import { uniqueName, type Layer, type LayerChanges, type LayerShape, type Regularizer } from '../nn/index.js';
import { runCell, type CellState, type NeuronCell } from './cell.js';
import { checkDt, checkLayerDtype, getDefaultDt } from './dt.js';

export interface NeuronLayerOptions {
  /** Simulation time step in seconds (default: the global default when the layer is created). */
  dt?: number;
  /** Seeds a random initial state (cells with `randomState`): the same seed gives the same spikes. */
  seed?: number;
  /** Output every time step (default true) or only the last. */
  returnSequences?: boolean;
  /** Keep the final cell state in the layer state (also implied by stateful). */
  returnState?: boolean;
  /** Start each call from the state the previous call left (streaming; reset with resetNeuronState). */
  stateful?: boolean;
  /** Input is (time, batch, ...) instead of (batch, time, ...). */
  timeMajor?: boolean;
  /**
   * State tensors to keep over time in the layer state's `hidden` record, each in the output's
   * layout ((batch, time, ...units) unless timeMajor): true keeps them all.
   */
  returnHidden?: boolean | readonly string[];
  /** What the layer outputs: 'spikes' (the cell's step output, the default) or a state name ('mem'). */
  output?: string;
  /** Spikes in the training forward pass too (default true); false runs the cell's rate model in training. */
  spikingAwareTraining?: boolean;
  /** dtype of the parameters (default float32). */
  paramDtype?: DType;
  /**
   * The precision the state keeps dt in (default float32); the layer runs in the input's dtype
   * either way. 'float64' with float64 inputs uses dt exactly.
   */
  dtype?: 'float32' | 'float64';
  activityRegularizer?: Regularizer;
  name?: string;
}

/**
 * The layer state: `dt`, one entry per cell state name (null until a call keeps it), and `hidden`
 * (null unless returnHidden).
 */
export type NeuronLayerState = { readonly [k: string]: Tree; readonly dt: Tensor };

/**
 * What a neuron factory passes besides the cell (internal: error names and rebuilding). `O` is the
 * factory's options: the layer's `with` takes them and hands them to `rebuild`.
 */
export interface NeuronLayerSetup<O extends object = NeuronLayerOptions> {
  /** The factory's name in error messages ('leaky', 'spikingActivation'). */
  readonly display: string;
  /** Default layer name prefix ('leaky', 'spiking_activation'). */
  readonly prefix: string;
  /** A copy with changed options (Layer.with). */
  readonly rebuild?: (changes: LayerChanges<O>, name: string) => Layer;
  /** Cell options to add to the layer's config, before the layer's own. */
  readonly config?: Readonly<Record<string, unknown>>;
}

const RESERVED = new Set(['dt', 'hidden']);

const toTimeMajor = (x: Tensor): Tensor => transpose(x, [1, 0, ...x.shape.slice(2).map((_, i) => i + 2)]);

/**
 * Runs `cell` over the time axis of its input: (batch, time, ...units) -> (batch, time, ...units)
 * (or the last step with returnSequences false). The layer declares the capabilities spiking's
 * tools use: it carries dt, spikes when the cell does, and counts one neuron update per unit.
 *
 * @example
 * const layer = neuronLayer(leakyCell({ beta: 0.95 }), { returnHidden: ['mem'] });
 */
export function neuronLayer<P extends Tree, S extends CellState, O extends object = NeuronLayerOptions>(
  cell: NeuronCell<P, S>,
  options: NeuronLayerOptions = {},
  setup?: NeuronLayerSetup<O>,
): Layer<P, NeuronLayerState, O> {
  const display = setup?.display ?? 'neuronLayer';
  const name = uniqueName(setup?.prefix ?? 'neuron', options.name);
  const where = `${display} '${name}'`;
  for (const n of cell.stateNames)
    if (RESERVED.has(n)) throw new RangeError(`${where}: a cell state may not be named '${n}' (the layer state uses it)`);
  const dt = options.dt ?? getDefaultDt();
  const dtDtype = checkLayerDtype(where, options.dtype);
  checkDt(where, dt, dtDtype);
  const aware = options.spikingAwareTraining ?? true;
  if (!aware && !cell.nonSpiking)
    throw new RangeError(`${where}: spikingAwareTraining: false needs a rate model, and the ${cell.kind} cell has none`);
  const returnSequences = options.returnSequences ?? true;
  const stateful = options.stateful ?? false;
  const keepState = stateful || (options.returnState ?? false);
  const timeMajor = options.timeMajor ?? false;
  const output = options.output ?? 'spikes';
  if (output !== 'spikes' && !cell.stateNames.includes(output))
    throw new RangeError(`${where}: output must be 'spikes' or a state name (${cell.stateNames.join(', ')}), got '${output}'`);
  const hiddenNames =
    options.returnHidden === true
      ? cell.stateNames
      : options.returnHidden === false || options.returnHidden === undefined
        ? []
        : options.returnHidden;
  for (const n of hiddenNames)
    if (!cell.stateNames.includes(n))
      throw new RangeError(`${where}: returnHidden names '${n}', but the ${cell.kind} cell's state has ${cell.stateNames.join(', ')}`);
  const stacked = output === 'spikes' || hiddenNames.includes(output) ? hiddenNames : [...hiddenNames, output];
  const paramDtype = options.paramDtype ?? 'float32';
  const spikesOut = cell.spiking && output === 'spikes';

  const config: Record<string, unknown> = {
    ...(setup?.config ?? cell.config),
    dt,
    seed: options.seed ?? null,
    spikingAwareTraining: aware,
    returnSequences,
    returnState: options.returnState ?? false,
    stateful,
    timeMajor,
  };
  if (options.output !== undefined) config.output = output;
  if (hiddenNames.length > 0) config.returnHidden = [...hiddenNames];

  const emptyState = (dtT: Tensor): NeuronLayerState => {
    const s: Record<string, Tree> = { dt: dtT };
    for (const n of cell.stateNames) s[n] = null;
    if (hiddenNames.length > 0) s.hidden = null;
    return s as NeuronLayerState;
  };

  const layer: Layer<P, NeuronLayerState, O> = {
    kind: cell.kind,
    name,
    config,
    carriesDt: true,
    spikes: spikesOut ? (cell.spikeUnit ?? 'count') : undefined,
    energy(inputShape: LayerShape) {
      const units = inputShape.slice(1).map((d) => d ?? 1);
      const counts = cell.energy ? cell.energy(units) : { connections: 0, neurons: units.reduce((a, c) => a * c, 1) };
      return { ...counts, spiking: cell.spiking };
    },
    init(key, inputShape: LayerShape) {
      if (inputShape.length < 2)
        throw new ShapeError(`${where}: expected input (batch, time, ...units), got (None, ${inputShape.join(', ')})`);
      const units = inputShape.slice(1);
      if (units.some((d) => d === null) && cell.shapeFree !== true)
        throw new ShapeError(`${where}: unit axes must be known, got (None, ${inputShape.join(', ')})`);
      const params = cell.initParams(
        key,
        units.map((d) => d ?? 1),
        paramDtype,
      );
      return { params, state: emptyState(scalar(dt, dtDtype)), outputShape: returnSequences ? inputShape : units };
    },
    apply(params, x, ctx, state) {
      if (x.ndim < 3) throw new ShapeError(`${where}: expected input (batch, time, ...units), got shape [${x.shape.join(', ')}]`);
      const tm = timeMajor ? x : toTimeMajor(x);
      const dtT = state.dt;
      const next: Record<string, Tree> = { ...state };
      let y: Tensor;
      if (ctx.training && !aware) {
        y = cell.nonSpiking!(params, tm);
      } else {
        const shape = tm.shape.slice(1);
        let s0: S;
        const stored = cell.stateNames.map((n) => state[n] as Tensor | null | undefined);
        if (stateful && stored.every((v) => v !== null && v !== undefined)) {
          cell.stateNames.forEach((n, i) => {
            const v = stored[i]!;
            if (v.shape.join() !== shape.join())
              throw new ShapeError(
                `${where}: stored state '${n}' has shape [${v.shape.join(', ')}], the input needs [${shape.join(', ')}] (reset the state for a new batch size)`,
              );
          });
          s0 = Object.fromEntries(cell.stateNames.map((n, i) => [n, stored[i]!])) as unknown as S;
        } else {
          let k: Tensor | undefined;
          if (cell.randomState) {
            k = options.seed !== undefined ? random.key(options.seed) : ctx.key;
            if (k === undefined)
              throw new RangeError(`${where}: unseeded layers need a PRNG key in the apply context (ctx.key), or give the layer a seed`);
          }
          s0 = cell.initialState(params, shape, x.dtype, k);
        }
        const run = runCell(cell, params, tm, s0, x.dtype === dtT.dtype ? dtT : cast(dtT, x.dtype), { ctx, hidden: stacked });
        y = output === 'spikes' ? run.outputs : run.hidden[output];
        if (keepState) for (const n of cell.stateNames) next[n] = run.state[n];
        if (hiddenNames.length > 0) {
          const h: Record<string, Tensor> = {};
          for (const n of hiddenNames) h[n] = timeMajor ? run.hidden[n] : toTimeMajor(run.hidden[n]);
          next.hidden = h;
        }
      }
      if (!returnSequences) y = indexAxis(y, 0, -1);
      else if (!timeMajor) y = toTimeMajor(y);
      const losses = options.activityRegularizer
        ? [div(options.activityRegularizer(y), y.shape[timeMajor && returnSequences ? 1 : 0])]
        : [];
      return { y, state: next as NeuronLayerState, losses };
    },
    constrain: cell.constrain ? (p) => cell.constrain!(p) : undefined,
    with: (changes) =>
      setup?.rebuild
        ? (setup.rebuild(changes, name) as unknown as Layer<P, NeuronLayerState, O>)
        : neuronLayer(cell, { ...options, ...(changes as NeuronLayerOptions), name }, setup),
  };
  return layer;
}

/** A fresh state for a stateful neuron layer: the next call starts from the cell's initial state. */
export function resetNeuronState(state: NeuronLayerState): NeuronLayerState {
  const out: Record<string, Tree> = {};
  for (const [k, v] of Object.entries(state)) out[k] = k === 'dt' ? v : null;
  return out as NeuronLayerState;
}
