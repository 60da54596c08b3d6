/** Keras's everyday layers as pure init/apply records. */
import {
  add,
  broadcastSourceOf,
  broadcastTo,
  div,
  matmul,
  mean,
  random,
  reshape as reshapeOp,
  ShapeError,
  Tensor,
  type Tree,
} from '../core/index.js';
import { activationName, resolveActivation, type ActivationFn, type ActivationName } from './activations.js';
import { resolveInitializer, type Initializer, type InitializerName, type LayerFans } from './initializers.js';
import { checkInputShape, uniqueName, type ApplyContext, type ApplyResult, type Layer, type LayerShape } from './layer.js';

export type Regularizer = (x: Tensor) => Tensor;

function activityLosses(reg: Regularizer | undefined, y: Tensor): Tensor[] {
  // Keras divides an activity penalty by the batch size.
  return reg ? [reg(y).div(y.shape[0])] : [];
}

export interface DenseOptions {
  activation?: ActivationName | ActivationFn;
  useBias?: boolean;
  kernelInitializer?: Initializer | InitializerName;
  biasInitializer?: Initializer | InitializerName;
  kernelRegularizer?: Regularizer;
  activityRegularizer?: Regularizer;
  name?: string;
}

export interface DenseParams {
  readonly [k: string]: Tensor;
  readonly kernel: Tensor;
}

/**
 * A fully connected layer on the last axis: y = activation(x @ kernel + bias).
 *
 * @example
 * const layer = dense(128, { activation: 'relu' });
 * const { params } = layer.init(random.key(0), [784]);
 */
export function dense(
  units: number,
  options: DenseOptions = {},
): Layer<DenseParams, Record<string, never>, DenseOptions & { units?: number }> {
  if (!Number.isInteger(units) || units <= 0) throw new RangeError(`dense: units must be a positive integer, got ${units}`);
  const name = uniqueName('dense', options.name);
  const act = resolveActivation(options.activation, `dense '${name}'`);
  const useBias = options.useBias ?? true;
  const kernelInit = resolveInitializer(options.kernelInitializer ?? 'glorotUniform');
  const biasInit = resolveInitializer(options.biasInitializer ?? 'zeros');
  return {
    kind: 'Dense',
    name,
    config: { units, activation: activationName(options.activation), useBias },
    perStep: true,
    energy(inShape, outShape) {
      const inputs = inShape[inShape.length - 1] as number;
      const outputSize = outShape.reduce<number>((a, d) => a * (d ?? 1), 1);
      return {
        connections: (outputSize / units) * inputs * units,
        neurons: activationName(options.activation) === 'linear' ? 0 : outputSize,
        spiking: false,
      };
    },
    init(key, inputShape) {
      const last = inputShape[inputShape.length - 1];
      if (last === null || last === undefined)
        throw new ShapeError(`dense '${name}': the last input axis must be known, got ${JSON.stringify(inputShape)}`);
      const [k1, k2] = random.split(key);
      const layerFans: LayerFans = { fanIn: last, fanOut: units };
      const params: Record<string, Tensor> = { kernel: kernelInit(k1, [last, units], 'float32', layerFans) };
      if (useBias) params.bias = biasInit(k2, [units], 'float32', layerFans);
      return { params: params as DenseParams, state: {}, outputShape: [...inputShape.slice(0, -1), units] };
    },
    apply(params, x, _ctx, state) {
      const k = params.kernel;
      if (x.shape[x.ndim - 1] !== k.shape[0])
        throw new ShapeError(`dense '${name}': expected input with last axis ${k.shape[0]}, got shape [${x.shape.join(', ')}]`);
      let y = matmul(x, k);
      if (useBias) y = add(y, params.bias);
      y = act(y);
      return { y, state, losses: activityLosses(options.activityRegularizer, y) };
    },
    paramLosses: options.kernelRegularizer ? (p) => [options.kernelRegularizer!(p.kernel)] : undefined,
    with: ({ units: newUnits, ...changes }) => dense(newUnits ?? units, { ...options, ...changes, name }),
  };
}

/** An activation as a layer of its own. */
export function activation(
  fn: ActivationName | ActivationFn,
  options: { name?: string; activityRegularizer?: Regularizer } = {},
): Layer<Record<string, never>, Record<string, never>, { activation?: ActivationName | ActivationFn; activityRegularizer?: Regularizer }> {
  const name = uniqueName('activation', options.name);
  const f = resolveActivation(fn, `activation '${name}'`);
  return {
    kind: 'Activation',
    name,
    config: { activation: activationName(fn) },
    energy: (_in, outShape) => ({ connections: 0, neurons: outShape.reduce<number>((a, d) => a * (d ?? 1), 1), spiking: false }),
    init: (_key, inputShape) => ({ params: {}, state: {}, outputShape: inputShape }),
    apply: (params, x, _ctx, state) => {
      const y = f(x);
      return { y, state, losses: activityLosses(options.activityRegularizer, y) };
    },
    with: ({ activation: newFn, ...changes }) => activation(newFn ?? fn, { ...options, ...changes, name }),
  };
}

/** Resolves a target shape with at most one -1 against a known element count. */
function resolveTarget(layer: string, target: readonly number[], inputShape: LayerShape): LayerShape {
  const known = inputShape.every((d) => d !== null);
  const size = known ? (inputShape as number[]).reduce((a, c) => a * c, 1) : null;
  const fixed = target.filter((d) => d !== -1).reduce((a, c) => a * c, 1);
  if (target.filter((d) => d === -1).length > 1)
    throw new ShapeError(`${layer}: at most one -1 in the target shape ${JSON.stringify(target)}`);
  if (!target.includes(-1)) {
    if (size !== null && size !== fixed)
      throw new ShapeError(`${layer}: cannot reshape (None, ${inputShape.join(', ')}) to (None, ${target.join(', ')})`);
    return target;
  }
  if (size === null) return target.map((d) => (d === -1 ? null : d));
  if (size % fixed !== 0) throw new ShapeError(`${layer}: cannot reshape (None, ${inputShape.join(', ')}) to (None, ${target.join(', ')})`);
  return target.map((d) => (d === -1 ? size / fixed : d));
}

/**
 * Reshapes each example (the batch axis is kept); one -1 is inferred, also for a free time axis:
 * `reshape([-1, 784])` on (None, None, 28, 28) gives (None, None, 784).
 */
export function reshape(
  targetShape: readonly number[],
  options: { name?: string } = {},
): Layer<Record<string, never>, Record<string, never>, Record<string, never>> {
  const name = uniqueName('reshape', options.name);
  return {
    kind: 'Reshape',
    name,
    config: { targetShape },
    init: (_key, inputShape) => ({ params: {}, state: {}, outputShape: resolveTarget(`reshape '${name}'`, targetShape, inputShape) }),
    apply: (params, x, _ctx, state) => {
      const perExample = x.size / Math.max(1, x.shape[0]);
      const fixed = targetShape.filter((d) => d !== -1).reduce((a, c) => a * c, 1);
      if (targetShape.includes(-1) ? perExample % fixed !== 0 : perExample !== fixed) {
        throw new ShapeError(
          `reshape '${name}': cannot reshape input of shape [${x.shape.join(', ')}] to [batch, ${targetShape.join(', ')}]`,
        );
      }
      return { y: reshapeOp(x, [x.shape[0], ...targetShape]), state, losses: [] };
    },
    with: () => reshape(targetShape, { name }),
  };
}

/** Flattens each example to one axis. */
export function flatten(options: { name?: string } = {}): Layer<Record<string, never>, Record<string, never>, Record<string, never>> {
  const name = uniqueName('flatten', options.name);
  return {
    kind: 'Flatten',
    name,
    config: {},
    init: (_key, inputShape) => {
      if (inputShape.some((d) => d === null))
        throw new ShapeError(`flatten '${name}': all input axes must be known, got ${JSON.stringify(inputShape)}`);
      return { params: {}, state: {}, outputShape: [(inputShape as number[]).reduce((a, c) => a * c, 1)] };
    },
    apply: (params, x, _ctx, state) => ({ y: reshapeOp(x, [x.shape[0], -1]), state, losses: [] }),
    with: () => flatten({ name }),
  };
}

/** Mean over the time axis (axis 1): (batch, time, ...) -> (batch, ...). */
export function globalAveragePooling1d(
  options: { name?: string } = {},
): Layer<Record<string, never>, Record<string, never>, Record<string, never>> {
  const name = uniqueName('global_average_pooling1d', options.name);
  return {
    kind: 'GlobalAveragePooling1D',
    name,
    config: {},
    init: (_key, inputShape) => {
      if (inputShape.length < 2)
        throw new ShapeError(`globalAveragePooling1d '${name}': expected (batch, time, features), got (None, ${inputShape.join(', ')})`);
      return { params: {}, state: {}, outputShape: inputShape.slice(1) };
    },
    apply: (params, x, _ctx, state) => ({ y: mean(x, 1), state, losses: [] }),
    with: () => globalAveragePooling1d({ name }),
  };
}

/** Applies `inner` to every time step: (batch, time, ...) -> (batch, time, ...inner output). */
export function timeDistributed<P extends Tree, S extends Tree, O extends object>(
  inner: Layer<P, S, O>,
  options: { name?: string } = {},
): Layer<P, S, O> {
  const name = uniqueName('time_distributed', options.name);
  return {
    kind: 'TimeDistributed',
    name,
    config: { layer: inner.kind },
    children: [inner as unknown as Layer],
    childStates: 'shared',
    energy: inner.energy ? (inShape, outShape) => inner.energy!(inShape.slice(1), outShape.slice(1)) : undefined,
    init(key, inputShape) {
      if (inputShape.length < 2)
        throw new ShapeError(`timeDistributed '${name}': expected (batch, time, ...), got (None, ${inputShape.join(', ')})`);
      const r = inner.init(key, inputShape.slice(1));
      return { params: r.params, state: r.state, outputShape: [inputShape[0], ...r.outputShape] };
    },
    apply(params, x, ctx, state) {
      const [b, t] = x.shape;
      // A per-step layer (dense) acts on the last axis already, so it runs on all steps at once without a reshape.
      // Its activity penalty is divided by the batch size it saw (b); Keras's TimeDistributed
      // feeds its layer b * t rows, so the penalty is divided by t as well.
      if (inner.perStep) {
        const r = inner.apply(params, x, ctx, state);
        return { ...r, losses: r.losses.map((l) => div(l, t)) };
      }
      const once = t > 1 ? applyOncePerExample(inner, params, x, ctx, state) : null;
      if (once !== null) return once;
      const flat = reshapeOp(x, [b * t, ...x.shape.slice(2)]);
      const r = inner.apply(params, flat, ctx, state);
      return { ...r, y: reshapeOp(r.y, [b, t, ...r.y.shape.slice(1)]) };
    },
    paramLosses: inner.paramLosses ? (p) => inner.paramLosses!(p) : undefined,
    constrain: inner.constrain ? (p) => inner.constrain!(p) : undefined,
    with: (changes) => timeDistributed(inner.with(changes), { name }),
  };
}

/**
 * timeDistributed on an input whose time axis is a broadcast (a time-tiled image, or what a
 * per-step layer made of one): the layer runs on the b examples instead of b x t identical rows and
 * its output is broadcast over time. Exact: every row sees the same input, so it gives the same
 * output, and a batch statistic or an activity penalty averaged over rows is the same over b
 * rows as over b x t copies of them. The broadcast then reaches the next layer, so a chain of
 * layers on a tiled image computes one step. Not when the layer reads the PRNG key (dropout draws
 * a mask per row, so the copies differ): that is detected by the key's getter and the layer runs
 * again on all rows (under jit the discarded trace is dead code). Null when it does not apply.
 */
function applyOncePerExample<P extends Tree, S extends Tree, O extends object>(
  inner: Layer<P, S, O>,
  params: P,
  x: Tensor,
  ctx: ApplyContext,
  state: S,
): ApplyResult<S> | null {
  const bc = broadcastSourceOf(x);
  if (bc === null || !bc.axes.includes(1)) return null;
  const [b, t] = x.shape;
  const rest = x.shape.slice(2);
  let keyRead = false;
  const probe: ApplyContext = {
    training: ctx.training,
    get key() {
      if (ctx.key !== undefined) keyRead = true;
      return ctx.key;
    },
  };
  // The other broadcast axes (batch, features) stay views: only the time axis is dropped.
  const compact = reshapeOp(broadcastTo(bc.source, [b, 1, ...rest]), [b, ...rest]);
  const r = inner.apply(params, compact, probe, state);
  if (keyRead) return null;
  const yShape = r.y.shape.slice(1);
  return { ...r, y: broadcastTo(reshapeOp(r.y, [b, 1, ...yShape]), [b, t, ...yShape]) };
}

/**
 * A stateless function as a layer (functional-style models). It also receives the apply context:
 * `training`, and a per-layer PRNG `key` in fit / evaluate / predict (an input encoder that draws
 * fresh spikes every batch, say).
 *
 * @example
 * const encode = lambda((x, { key }) => poissonEncode(key!, x, 20), { outputShape: (s) => [s[0], 20, ...s.slice(1)] });
 */
export function lambda(
  fn: (x: Tensor, ctx: ApplyContext) => Tensor,
  options: { name?: string; outputShape?: (inputShape: LayerShape) => LayerShape } = {},
): Layer<Record<string, never>, Record<string, never>, { outputShape?: (inputShape: LayerShape) => LayerShape }> {
  const name = uniqueName('lambda', options.name);
  return {
    kind: 'Lambda',
    name,
    config: {},
    init: (_key, inputShape) => ({
      params: {},
      state: {},
      outputShape: options.outputShape ? options.outputShape(inputShape) : inputShape,
    }),
    apply: (params, x, ctx, state) => ({ y: fn(x, ctx), state, losses: [] }),
    with: (changes) => lambda(fn, { ...options, ...changes, name }),
  };
}

export type SequentialParams = Record<string, Tree>;

/**
 * Layers applied in order; params and state are records keyed by layer name.
 *
 * @example
 * const model = sequential([flatten(), dense(128, { activation: 'relu' }), dense(10)]);
 * const { params, state } = model.init(random.key(0), [28, 28]);
 */
export function sequential(
  layers: readonly Layer[],
  options: { name?: string } = {},
): Layer<SequentialParams, SequentialParams, Record<string, never>> {
  const name = uniqueName('sequential', options.name);
  const names = new Set<string>();
  for (const l of layers) {
    if (names.has(l.name)) throw new RangeError(`sequential '${name}': two layers are named '${l.name}'`);
    names.add(l.name);
  }
  return {
    kind: 'Sequential',
    name,
    config: {},
    children: layers,
    childStates: 'byName',
    init(key, inputShape) {
      const keys = random.split(key, Math.max(layers.length, 1));
      const params: SequentialParams = {};
      const state: SequentialParams = {};
      let shape = inputShape;
      layers.forEach((l, i) => {
        const r = l.init(keys[i], shape);
        params[l.name] = r.params;
        state[l.name] = r.state;
        shape = r.outputShape;
      });
      return { params, state, outputShape: shape };
    },
    apply(params, x, ctx, state) {
      let y = x;
      const newState: SequentialParams = {};
      const losses: Tensor[] = [];
      layers.forEach((l, i) => {
        if (!(l.name in params))
          throw new RangeError(`sequential '${name}': no parameters for layer '${l.name}' (params have ${Object.keys(params).join(', ')})`);
        const sub: ApplyContext = ctx.key ? { ...ctx, key: random.foldIn(ctx.key, i) } : ctx;
        const r: ApplyResult = l.apply(params[l.name], y, sub, state[l.name]);
        y = r.y;
        newState[l.name] = r.state;
        losses.push(...r.losses);
      });
      return { y, state: newState, losses };
    },
    paramLosses: (params) => layers.flatMap((l) => (l.paramLosses ? l.paramLosses(params[l.name]) : [])),
    constrain: (params) => {
      const out: SequentialParams = { ...params };
      for (const l of layers) if (l.constrain) out[l.name] = l.constrain(params[l.name]);
      return out;
    },
    with: () => sequential(layers, { name }),
  };
}

/** Initial input check for a model: `checkInputShape` re-exported for layer authors. */
export { checkInputShape };
