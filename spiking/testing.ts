/**
 * Property-based testing helpers for spiking layers (fast-check arbitraries and ready properties).
 * Use them to verify your own activations and layers behave as spiking equivalents:
 *
 * @example
 * import fc from 'fast-check';
 * import { rateMatchesActivation } from 'spiketrace/spiking/testing';
 * fc.assert(rateMatchesActivation('tanh'));                       // any input, any dt
 * fc.assert(rateMatchesActivation((x) => mul(x, x), { steps: 200 })); // your own function
 */
import fc from 'fast-check';
import { array, broadcastTo, mean, random, vjp, type Tensor, type Tree } from '../core/index.js';
import { resolveActivation, type ActivationFn, type ActivationName, type Layer } from '../nn/index.js';
import { spikingActivation, type SpikingActivationOptions, type SpikingState } from './activation.js';

/** Builds the layer under test; replace it to check a layer of your own. */
export type SpikingLayerFactory = (
  activation: ActivationName | ActivationFn,
  options: SpikingActivationOptions,
) => Layer<Record<string, never>, SpikingState>;

export interface RateCheckOptions {
  /** Time steps simulated (default 100). */
  steps?: number;
  /** dt range drawn from (default [0.001, 0.1]). */
  dtRange?: [number, number];
  /** Input range drawn from (default [-5, 5]). */
  inputRange?: [number, number];
  /** Units per example (default 1..4). */
  maxUnits?: number;
  /** Extra absolute tolerance for float32 arithmetic (default 1e-4 times max(1, |f(x)|)). */
  floatTolerance?: number;
  layer?: SpikingLayerFactory;
}

/** Arbitrary dt values in a range, log-uniform-ish (fast-check doubles, no NaN). */
export function arbDt(range: [number, number] = [0.001, 0.1]): fc.Arbitrary<number> {
  return fc.double({ min: Math.log(range[0]), max: Math.log(range[1]), noNaN: true }).map(Math.exp);
}

/** Arbitrary input vectors as float32-representable numbers. */
export function arbInputs(range: [number, number] = [-5, 5], maxUnits = 4): fc.Arbitrary<number[]> {
  return fc.array(fc.double({ min: range[0], max: range[1], noNaN: true }).map(Math.fround), { minLength: 1, maxLength: maxUnits });
}

export interface RateCheck {
  /** Mean output per unit over the run (Hz). */
  readonly rate: number[];
  /** f(x) per unit. */
  readonly expected: number[];
  /** 1 / (T dt) plus the float tolerance. */
  readonly tolerance: number[];
  readonly ok: boolean;
}

/**
 * Runs `activation` as a spiking layer on a constant input for `steps` steps and compares the
 * mean output with f(x): they must agree within one spike over the simulated time, 1/(T dt).
 */
export function checkRate(
  activation: ActivationName | ActivationFn,
  x: readonly number[],
  dt: number,
  options: RateCheckOptions & { seed?: number } = {},
): RateCheck {
  const steps = options.steps ?? 100;
  const f = resolveActivation(activation, 'checkRate');
  const make = options.layer ?? spikingActivation;
  const layer = make(activation, { dt, seed: options.seed ?? 0 });
  const input = broadcastTo(array([[x.slice()]]), [1, steps, x.length]);
  const { state } = layer.init(random.key(0), [null, x.length]);
  const y = layer.apply({}, input, { training: false }, state).y;
  const rate = Array.from(mean(y, 1).toTyped());
  const expected = Array.from(f(array(x.slice())).toTyped());
  const floatTol = options.floatTolerance ?? 1e-4;
  const tolerance = expected.map((e) => 1 / (steps * dt) + floatTol * Math.max(1, Math.abs(e)));
  const ok = rate.every((r, i) => Math.abs(r - expected[i]) <= tolerance[i]);
  return { rate, expected, tolerance, ok };
}

/**
 * Property: for any input and dt, the spike rate of `activation` over T steps equals the
 * activation within 1/(T dt) (+ float tolerance), and has the activation's sign.
 */
export function rateMatchesActivation(
  activation: ActivationName | ActivationFn,
  options: RateCheckOptions = {},
): fc.IPropertyWithHooks<[number[], number, number]> {
  return fc.property(
    arbInputs(options.inputRange, options.maxUnits),
    arbDt(options.dtRange),
    fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    (x, dt, seed) => {
      const r = checkRate(activation, x, dt, { ...options, seed });
      const signsAgree = r.rate.every(
        (v, i) => v === 0 || Math.sign(v) === Math.sign(r.expected[i]) || Math.abs(r.expected[i]) <= r.tolerance[i],
      );
      return r.ok && signsAgree;
    },
  );
}

/**
 * Property: in training, the gradient through the spiking layer is f'(x) times the upstream
 * gradient (straight-through), for both spikingAwareTraining settings.
 */
export function gradientIsStraightThrough(
  activation: ActivationName | ActivationFn,
  options: { layer?: SpikingLayerFactory; steps?: number; tolerance?: number } = {},
): fc.IPropertyWithHooks<[number[], number, boolean]> {
  const f = resolveActivation(activation, 'gradientIsStraightThrough');
  const make = options.layer ?? spikingActivation;
  const steps = options.steps ?? 5;
  return fc.property(arbInputs([-3, 3], 4), arbDt(), fc.boolean(), (x, dt, aware) => {
    const layer = make(activation, { dt, seed: 1, spikingAwareTraining: aware });
    const { state } = layer.init(random.key(0), [null, x.length]);
    const input = broadcastTo(array([[x.slice()]]), [1, steps, x.length]);
    const [, back] = vjp((inp: Tree) => layer.apply({}, inp as Tensor, { training: true }, state).y, input);
    const up = broadcastTo(array([[x.map((_, i) => i + 1)]]), [1, steps, x.length]);
    const g = (back(up)[0] as Tensor).toTyped();
    const [, fBack] = vjp((xx: Tree) => f(xx as Tensor), array(x.slice()));
    const fPrime = (fBack(array(x.map(() => 1)))[0] as Tensor).toTyped();
    const tol = options.tolerance ?? 1e-5;
    for (let t = 0; t < steps; t++) {
      for (let i = 0; i < x.length; i++) {
        const expected = fPrime[i] * (i + 1);
        if (Math.abs(g[t * x.length + i] - expected) > tol * Math.max(1, Math.abs(expected))) return false;
      }
    }
    return true;
  });
}
