/**
 * The layer protocol: a layer is an immutable record with `init` and `apply`. Parameters and
 * state are pytrees the caller holds; nothing in a layer mutates.
 */
import { Tensor, type Tree, ShapeError } from '../core/index.js';

/** A shape without the batch axis; null marks a free (e.g. time) axis. */
export type LayerShape = readonly (number | null)[];

export interface ApplyContext {
  /** True inside the training step (spiking layers swap behaviour on it). */
  readonly training: boolean;
  /** A PRNG key for layers that draw random numbers (split it before use). */
  readonly key?: Tensor;
}

export interface InitResult<P extends Tree = Tree, S extends Tree = Tree> {
  readonly params: P;
  readonly state: S;
  readonly outputShape: LayerShape;
}

export interface ApplyResult<S extends Tree = Tree> {
  readonly y: Tensor;
  readonly state: S;
  /** Penalties to add to the loss (activity regularizers already divided by the batch size). */
  readonly losses: readonly Tensor[];
}

/** One time step's work in a layer, for energy estimates. */
export interface LayerEnergyCounts {
  readonly connections: number;
  readonly neurons: number;
  readonly spiking: boolean;
}

/** The per-layer record as `summary()` and `rebuild` see it. */
export interface LayerInfo {
  readonly kind: string;
  readonly name: string;
  readonly config: Readonly<Record<string, unknown>>;
}

/**
 * What `Layer.with` takes for a layer whose options are `O`: any of them but `name` (a copy keeps
 * its name, so trained parameters and state still line up with it).
 */
export type LayerChanges<O extends object> = Partial<Omit<O, 'name'>>;

/**
 * A layer with parameters `P`, state `S` and options `O` (what `with` may change: a built-in
 * factory's options, so a misspelt or mistyped option is a compile error).
 */
export interface Layer<P extends Tree = Tree, S extends Tree = Tree, O extends object = Record<string, unknown>> extends LayerInfo {
  init(key: Tensor, inputShape: LayerShape): InitResult<P, S>;
  apply(params: P, x: Tensor, ctx: ApplyContext, state: S): ApplyResult<S>;
  /** Weight penalties (weight regularizers) for the given parameters. */
  paramLosses?(params: P): Tensor[];
  /** Applied to the parameters after each optimizer step (constraints). */
  constrain?(params: P): P;
  /** The layers inside a container (sequential, timeDistributed). */
  readonly children?: readonly Layer[];
  /**
   * How a container holds its children's state: 'byName' (a record keyed by child name, as
   * sequential) or 'shared' (the container's state is its one child's, as timeDistributed).
   * The model walker (nn/model.ts `forEachLayerState`, `mapLayerState`) follows it.
   */
  readonly childStates?: 'byName' | 'shared';
  // Capabilities: what spiking's tools (setDt, dtScheduler, spikeStats, modelEnergy) ask of a
  // layer, so a user's own layer takes part by declaring them, without registering a kind.
  /** The layer's state holds a scalar `dt` (seconds) that setDt / dtScheduler may replace between calls. */
  readonly carriesDt?: boolean;
  /** The layer outputs spikes: 'count' (a spike is 1, or its graded height) or 'rate' (a spike is 1/dt, as spikingActivation). */
  readonly spikes?: 'count' | 'rate';
  /** Synaptic connections and neuron updates per time step, from the layer's input and output shapes (energy estimates). */
  energy?(inputShape: LayerShape, outputShape: LayerShape): LayerEnergyCounts;
  /** Acts on the last axis only, so timeDistributed runs it on all steps at once (dense). */
  readonly perStep?: boolean;
  /**
   * A copy of this layer with changed options (parameters stay compatible). Layers without
   * options of their own (reshape, flatten, globalAveragePooling1d, sequential) take none
   * (`O` is `Record<string, never>`) and return an equivalent copy.
   */
  with(changes: LayerChanges<O>): Layer<P, S, O>;
}

let nameCounter = new Map<string, number>();
/** Keras-style unique names: dense, dense_1, dense_2, ... */
export function uniqueName(kind: string, requested?: string): string {
  if (requested) return requested;
  const n = nameCounter.get(kind) ?? 0;
  nameCounter.set(kind, n + 1);
  return n === 0 ? kind : `${kind}_${n}`;
}
/** Restarts automatic layer names (tests use this for stable names). */
export function resetLayerNames(): void {
  nameCounter = new Map();
}

/** Checks a concrete input against a declared layer shape; null axes match anything. */
export function checkInputShape(layer: string, expected: LayerShape, actual: readonly number[]): void {
  const ok = expected.length === actual.length - 1 && expected.every((d, i) => d === null || d === actual[i + 1]);
  if (!ok) {
    throw new ShapeError(
      `${layer}: expected input shape [batch, ${expected.map((d) => d ?? 'None').join(', ')}], got [${actual.join(', ')}]`,
    );
  }
}

export function layerShapeString(shape: LayerShape): string {
  return `(None, ${shape.map((d) => d ?? 'None').join(', ')})`;
}
