/** SpikingActivation: any activation as an integrate-and-fire neuron with a remainder reset. */
import { add, cast, customVjp, div, floor, mul, random, scalar, scan, ShapeError, sub, transpose, indexAxis, vjp, type Tensor, type Tree } from '../core/index.js';
import { activationName, resolveActivation, uniqueName, type ActivationFn, type ActivationName, type Layer, type LayerShape, type Regularizer } from '../nn/index.js';
import { checkDt, checkLayerDtype, getDefaultDt, type LayerDtype } from './dt.js';

export interface SpikingActivationOptions {
  /** Simulation time step in seconds (default: the global default when the layer is created). */
  dt?: number;
  /** Seeds the initial voltages: the same seed gives the same spikes. Unseeded layers draw from the apply key. */
  seed?: number;
  /** Spikes in the training forward pass too (default true); false uses the activation itself in training. */
  spikingAwareTraining?: boolean;
  /** Output every time step (default true) or only the last. */
  returnSequences?: boolean;
  /** Keep the final voltage in the state (also implied by stateful). */
  returnState?: boolean;
  /** Carry the voltage from one call to the next (reset with resetSpikingState). */
  stateful?: boolean;
  /** Input is (time, batch, ...) instead of (batch, time, ...). */
  timeMajor?: boolean;
  activityRegularizer?: Regularizer;
  /**
   * The precision the state keeps dt in (default float32). The simulation runs in the input's
   * dtype either way; give 'float64' with float64 inputs to use dt exactly rather than rounded to
   * float32.
   */
  dtype?: LayerDtype;
  name?: string;
}

export interface SpikingState {
  readonly [k: string]: Tree;
  readonly dt: Tensor;
  /** The voltage carried between calls (stateful) or left by the last call (returnState); null before. */
  readonly voltage: Tensor | null;
}

/**
 * Integrate-and-fire simulation over the leading (time) axis of `rates`:
 * v += r dt; n = floor(v); v -= n; out = n / dt. Returns [spikes, final voltage].
 */
export function spikeTrain(rates: Tensor, v0: Tensor, dt: Tensor): [Tensor, Tensor] {
  const [vEnd, spikes] = scan(
    (v: Tensor, r: Tensor) => {
      const vNext = add(v, mul(r, dt));
      const n = floor(vNext);
      return [sub(vNext, n), div(n, dt)];
    },
    v0,
    rates,
  );
  return [spikes, vEnd];
}

/**
 * Wraps an activation in a spiking neuron. Mean output over T steps equals f(x) within
 * 1/(T dt); the gradient is f'(x) (straight through the spikes), never through the voltage.
 *
 * @example
 * const layer = spikingActivation('relu', { dt: 0.01 });
 * // in a model: timeDistributed(dense(128)) -> spikingActivation('relu') -> globalAveragePooling1d()
 */
export function spikingActivation(activation: ActivationName | ActivationFn, options: SpikingActivationOptions = {}): Layer<Record<string, never>, SpikingState> {
  const name = uniqueName('spiking_activation', options.name);
  const f = resolveActivation(activation, `spikingActivation '${name}'`);
  const dt = options.dt ?? getDefaultDt();
  const dtype = checkLayerDtype(`spikingActivation '${name}'`, options.dtype);
  checkDt(`spikingActivation '${name}'`, dt, dtype);
  const aware = options.spikingAwareTraining ?? true;
  const returnSequences = options.returnSequences ?? true;
  const keepVoltage = (options.stateful ?? false) || (options.returnState ?? false);
  const timeMajor = options.timeMajor ?? false;

  // Spikes forward; the activation's own derivative backward (straight-through).
  const spiking = customVjp(
    (x: Tensor, v0: Tensor, dtT: Tensor) => spikeTrain(f(x), v0, dtT),
    (x: Tensor, v0: Tensor, dtT: Tensor) => [spikeTrain(f(x), v0, dtT), x] as [[Tensor, Tensor], Tensor],
    (x: Tensor, ct: [Tensor, Tensor]) => {
      const [, back] = vjp((xx: Tree) => f(xx as Tensor), x);
      return [back(ct[0])[0], null, null];
    },
  );

  return {
    kind: 'SpikingActivation',
    name,
    config: { activation: activationName(activation), dt, seed: options.seed ?? null, spikingAwareTraining: aware, returnSequences, returnState: options.returnState ?? false, stateful: options.stateful ?? false, timeMajor },
    init(_key, inputShape: LayerShape) {
      if (inputShape.length < 2) throw new ShapeError(`spikingActivation '${name}': expected input (batch, time, ...units), got (None, ${inputShape.join(', ')})`);
      return { params: {}, state: { dt: scalar(dt, dtype), voltage: null }, outputShape: returnSequences ? inputShape : inputShape.slice(1) };
    },
    apply(params, x, ctx, state) {
      if (x.ndim < 3) throw new ShapeError(`spikingActivation '${name}': expected input (batch, time, ...units), got shape [${x.shape.join(', ')}]`);
      const tm = timeMajor ? x : transpose(x, [1, 0, ...x.shape.slice(2).map((_, i) => i + 2)]);
      // The neuron runs in the input's precision: dt, the initial and the carried voltage take its dtype.
      const inPrecision = (v: Tensor): Tensor => (x.dtype === 'float64' || x.dtype === 'float32' ? cast(v, x.dtype) : v);
      const dtT = state.dt;
      let y: Tensor;
      let voltage = state.voltage;
      if (ctx.training && !aware) {
        // Non-spiking training: the base activation, state untouched.
        y = f(tm);
      } else {
        const unitShape = tm.shape.slice(1);
        let v0: Tensor;
        if (options.stateful && state.voltage !== null) {
          if (state.voltage.shape.join() !== unitShape.join()) throw new ShapeError(`spikingActivation '${name}': stored voltage has shape [${state.voltage.shape.join(', ')}], input needs [${unitShape.join(', ')}] (reset the state for a new batch size)`);
          v0 = inPrecision(state.voltage);
        } else {
          const k = options.seed !== undefined ? random.key(options.seed) : ctx.key;
          if (k === undefined) throw new RangeError(`spikingActivation '${name}': unseeded layers need a PRNG key in the apply context (ctx.key), or give the layer a seed`);
          // Drawn in float32 and cast, so float32 and float64 inputs start from the same voltages.
          v0 = inPrecision(random.uniform(k, unitShape));
        }
        const [spikes, vEnd] = spiking(tm, v0, inPrecision(dtT));
        y = spikes;
        if (keepVoltage) voltage = vEnd;
      }
      if (!returnSequences) y = indexAxis(y, 0, -1);
      else if (!timeMajor) y = transpose(y, [1, 0, ...y.shape.slice(2).map((_, i) => i + 2)]);
      const losses = options.activityRegularizer ? [div(options.activityRegularizer(y), y.shape[timeMajor && returnSequences ? 1 : 0])] : [];
      return { y, state: { dt: dtT, voltage }, losses };
    },
    with: (changes) => spikingActivation(activation, { ...options, ...changes, name }),
  };
}

/** A fresh state for a stateful layer (the next call draws new initial voltages). */
export function resetSpikingState(state: SpikingState, voltage: Tensor | null = null): SpikingState {
  return { dt: state.dt, voltage };
}
