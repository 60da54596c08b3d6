/**
 * The neuron cell protocol: one time step of a neuron model, pure. A cell knows nothing about
 * time axes, layouts, batching over time or Keras options; `neuronLayer` (spiking/neuron-layer.ts)
 * runs any cell over time with `scan`, and `runCell` does the same as a plain function.
 */
import { scan, type DType, type Tensor, type Tree } from '../core/index.js';
import type { ApplyContext, LayerEnergyCounts } from '../nn/index.js';

/** A cell's state: named tensors of shape [batch, ...unitShape] (or [...unitShape] for unbatched use). */
export type CellState = { readonly [name: string]: Tensor };

/**
 * One neuron model as a pure step function over named state tensors.
 *
 * - `initParams(key, unitShape, dtype)`: the trainable parameters for units of `unitShape` (the
 *   per-step shape without the batch axis, e.g. [128]). Fixed (non-trainable) values live in the
 *   cell itself, not in the parameters.
 * - `initialState(params, shape, dtype, key?)`: the state before the first step for inputs of
 *   `shape` ([batch, ...unitShape]); zeros unless the cell says `randomState`, in which case the
 *   layer passes a key (from its seed, or the apply context).
 * - `step(params, x, state, dt, ctx)`: input x_t of `shape`, the state, dt (a scalar tensor in
 *   seconds: discrete-time cells ignore it, continuous-time ones discretise with it) ->
 *   [output_t, new state]. The output is the spike tensor for spiking cells (0/1, or the graded
 *   height), the membrane for a non-spiking readout. Every state tensor keeps its shape and dtype.
 * - `describe(params)`: every parameter as the step uses it (learned and fixed, after clipping),
 *   by name: what an exporter (NIR) reads.
 */
export interface NeuronCell<P extends Tree = Tree, S extends CellState = CellState> {
  /** The layer kind `neuronLayer(cell)` reports ('Leaky', 'Synaptic', ...). */
  readonly kind: string;
  /** The cell's options, JSON-able (beta, threshold, reset, surrogate name...). */
  readonly config: Readonly<Record<string, unknown>>;
  /** True when the step's output is spikes. */
  readonly spiking: boolean;
  /** How a spike is written in the output: 'count' (1, or the graded height) or 'rate' (1/dt). */
  readonly spikeUnit?: 'count' | 'rate';
  /** The state's tensor names, in order ('mem'; 'syn', 'mem'; ...): what `returnHidden` can return. */
  readonly stateNames: readonly string[];
  /** True when `initialState` draws from a key (random initial state). */
  readonly randomState?: boolean;
  /** True when the parameters do not depend on the unit shape (unknown unit axes are then allowed). */
  readonly shapeFree?: boolean;
  initParams(key: Tensor, unitShape: readonly number[], dtype: DType): P;
  initialState(params: P, shape: readonly number[], dtype: DType, key?: Tensor): S;
  step(params: P, x: Tensor, state: S, dt: Tensor, ctx: ApplyContext): [Tensor, S];
  describe(params: P): Record<string, Tensor>;
  /** What the layer computes instead in training when `spikingAwareTraining` is false (a rate model over xs, any layout). */
  nonSpiking?(params: P, xs: Tensor): Tensor;
  /** Applied to the parameters after each optimizer step (e.g. keeping a learned threshold positive). */
  constrain?(params: P): P;
  /** Connections and neuron updates per step for `unitShape` (default: no connections, one update per unit). */
  energy?(unitShape: readonly number[]): Omit<LayerEnergyCounts, 'spiking'>;
}

export interface CellRun<S extends CellState = CellState> {
  /** The step outputs stacked over time: (time, ...shape). */
  readonly outputs: Tensor;
  /** The state tensors named in `hidden` after each step, stacked over time: name -> (time, ...shape). */
  readonly hidden: Readonly<Record<string, Tensor>>;
  /** The state after the last step (to continue from: stateful streaming). */
  readonly state: S;
}

/**
 * Runs `cell` over the leading (time) axis of `xs` from `state` (a pure function, no layer).
 * `hidden` names the state tensors to stack over time (none by default: they cost memory).
 *
 * @example
 * const cell = leakyCell({ beta: 0.9 });
 * const p = cell.initParams(random.key(0), [4], 'float32');
 * const run = runCell(cell, p, xs, cell.initialState(p, [2, 4], 'float32'), scalar(1e-3), { hidden: ['mem'] });
 * // run.outputs: spikes (time, 2, 4); run.hidden.mem: membrane (time, 2, 4)
 */
export function runCell<P extends Tree, S extends CellState>(
  cell: NeuronCell<P, S>,
  params: P,
  xs: Tensor,
  state: S,
  dt: Tensor,
  options: { ctx?: ApplyContext; hidden?: readonly string[] } = {},
): CellRun<S> {
  const ctx = options.ctx ?? { training: false };
  const names = options.hidden ?? [];
  for (const n of names)
    if (!cell.stateNames.includes(n))
      throw new RangeError(`runCell(${cell.kind}): no state named '${n}'; the cell has ${cell.stateNames.join(', ')}`);
  const [final, ys] = scan(
    (s: S, x: Tensor) => {
      const [out, next] = cell.step(params, x, s, dt, ctx);
      const kept: Record<string, Tensor> = {};
      for (const n of names) kept[n] = next[n];
      return [next, [out, kept] as [Tensor, Record<string, Tensor>]];
    },
    state,
    xs,
  );
  const [outputs, hidden] = ys;
  return { outputs, hidden, state: final };
}
