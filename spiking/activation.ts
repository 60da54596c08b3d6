/** SpikingActivation: any activation as an integrate-and-fire neuron with a remainder reset. */
import { add, cast, customVjp, div, floor, mul, random, scan, sub, vjp, type Tensor, type Tree } from '../core/index.js';
import {
  activationName,
  resolveActivation,
  uniqueName,
  type ActivationFn,
  type ActivationName,
  type Layer,
  type Regularizer,
} from '../nn/index.js';
import type { NeuronCell } from './cell.js';
import { neuronLayer } from './neuron-layer.js';

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
  dtype?: 'float32' | 'float64';
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
 * The integrate-and-fire cell behind spikingActivation: v += f(x) dt; n = floor(v); v -= n;
 * output n / dt (a spike is 1/dt: 'rate'). Backward, the activation's own derivative
 * (straight through the spikes), never through the voltage.
 */
export function activationCell(
  activation: ActivationName | ActivationFn,
  where = 'activationCell',
): NeuronCell<Record<string, never>, { voltage: Tensor }> {
  const f = resolveActivation(activation, where);
  const stepFn = customVjp(
    (x: Tensor, v: Tensor, dt: Tensor) => integrateStep(f(x), v, dt),
    (x: Tensor, v: Tensor, dt: Tensor) => [integrateStep(f(x), v, dt), x] as [[Tensor, Tensor], Tensor],
    (x: Tensor, ct: [Tensor, Tensor]) => {
      const [, back] = vjp((xx: Tree) => f(xx as Tensor), x);
      return [back(ct[0])[0], null, null];
    },
  );
  return {
    kind: 'SpikingActivation',
    config: { activation: activationName(activation) },
    spiking: true,
    spikeUnit: 'rate',
    stateNames: ['voltage'],
    randomState: true,
    shapeFree: true,
    initParams: () => ({}),
    // Uniform voltages in [0, 1): the same draw as before the cell existed (float32), cast to the
    // input's float dtype so float32 and float64 inputs start alike and the scan carry keeps one dtype.
    initialState: (_p, shape, dtype, key) => {
      const voltage = random.uniform(key!, shape);
      return { voltage: dtype === 'float64' ? cast(voltage, dtype) : voltage };
    },
    step(_p, x, state, dt) {
      const [spikes, voltage] = stepFn(x, state.voltage, dt);
      return [spikes, { voltage }];
    },
    describe: () => ({}),
    nonSpiking: (_p, xs) => f(xs),
  };
}

/** One integrate-and-fire step on rates r: [n / dt, v + r dt - n] with n = floor(v + r dt). */
function integrateStep(r: Tensor, v: Tensor, dt: Tensor): [Tensor, Tensor] {
  const vNext = add(v, mul(r, dt));
  const n = floor(vNext);
  return [div(n, dt), sub(vNext, n)];
}

/**
 * Wraps an activation in a spiking neuron. Mean output over T steps equals f(x) within
 * 1/(T dt); the gradient is f'(x) (straight through the spikes), never through the voltage.
 * It is `neuronLayer(activationCell(activation))` with the state entry `voltage`.
 *
 * @example
 * const layer = spikingActivation('relu', { dt: 0.01 });
 * // in a model: timeDistributed(dense(128)) -> spikingActivation('relu') -> globalAveragePooling1d()
 */
export function spikingActivation(
  activation: ActivationName | ActivationFn,
  options: SpikingActivationOptions = {},
): Layer<Record<string, never>, SpikingState, SpikingActivationOptions> {
  const name = uniqueName('spiking_activation', options.name);
  const cell = activationCell(activation, `spikingActivation '${name}'`);
  return neuronLayer(
    cell,
    { ...options, name },
    {
      display: 'spikingActivation',
      prefix: 'spiking_activation',
      rebuild: (changes, n) => spikingActivation(activation, { ...options, ...changes, name: n }) as unknown as Layer,
    },
  ) as unknown as Layer<Record<string, never>, SpikingState, SpikingActivationOptions>;
}

/** A fresh state for a stateful layer (the next call draws new initial voltages). */
export function resetSpikingState(state: SpikingState, voltage: Tensor | null = null): SpikingState {
  return { dt: state.dt, voltage };
}
