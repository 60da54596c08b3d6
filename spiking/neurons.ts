/**
 * The neuron models the field trains (snnTorch's conventions; see docs/architecture.md "Neurons:
 * surrogate, cell, time loop" for the step order and the discretisation): each is a cell
 * (`leakyCell`, ...) and a layer factory with Keras-style defaults (`leaky`, ...).
 */
import {
  add,
  array,
  cast,
  div,
  exp,
  matmul,
  maximum,
  minimum,
  mul,
  neg,
  random,
  scalar,
  stopGradient,
  sub,
  zeros,
  type DType,
  type Tensor,
} from '../core/index.js';
import { resolveInitializer, uniqueName, type Initializer, type InitializerName, type Layer, type LayerChanges } from '../nn/index.js';
import type { CellState, NeuronCell } from './cell.js';
import { heaviside, resolveSurrogate, type Surrogate, type SurrogateName } from './surrogate.js';
import { neuronLayer, type NeuronLayerOptions, type NeuronLayerState } from './neuron-layer.js';

/** A parameter value: one shared number, or one per unit of the last axis. */
export type ParamValue = number | readonly number[];
export type ResetMode = 'subtract' | 'zero' | 'none';
export type Discretisation = 'exact' | 'euler';

/** Options every leaky-family neuron takes (discrete- or continuous-time). */
export interface NeuronOptions {
  /** Membrane decay per step (discrete time), clipped to [0, 1] in the step; default 0.9. Not with `tau`. */
  beta?: ParamValue;
  /** Membrane time constant in seconds: continuous time (NIR's LIF); beta then follows from dt. */
  tau?: ParamValue;
  /** Input resistance (continuous time; default 1). */
  r?: ParamValue;
  /** Resting potential (continuous time; default 0). */
  vLeak?: ParamValue;
  /** Potential after a `zero` reset; `subtract` removes threshold - vReset (default 0). */
  vReset?: ParamValue;
  /** How continuous parameters become a step: 'exact' (zero-order hold, default) or 'euler'. */
  discretisation?: Discretisation;
  /** Firing threshold (> 0; default 1). NIR's v_threshold. */
  threshold?: ParamValue;
  /** Alias of threshold. */
  vThreshold?: ParamValue;
  /** Reset mechanism: 'subtract' (default), 'zero' or 'none'. */
  reset?: ResetMode;
  /** The spike function's backward derivative (default fastSigmoid(25)). */
  surrogate?: Surrogate | SurrogateName;
  /** Spike height (graded spikes; default 1). */
  graded?: ParamValue;
  learnBeta?: boolean;
  learnThreshold?: boolean;
  learnGraded?: boolean;
  /** Learned parameters get one value per unit (default: one shared value, unless an array was given). */
  perUnit?: boolean;
  /** Let gradients flow through the reset (default false: the reset is detached, as snnTorch). */
  resetGradient?: boolean;
  /** Initial membrane: 'zeros' (default) or 'uniform' in [0, threshold) (seeded by `seed`, else the apply key). */
  initialMembrane?: 'zeros' | 'uniform';
}

export interface SynapticOptions extends NeuronOptions {
  /** Synaptic current decay per step (discrete), clipped to [0, 1]; default 0.8. Not with `tauSyn`. */
  alpha?: ParamValue;
  /** Synaptic time constant in seconds (continuous time; then `tau` is the membrane's). */
  tauSyn?: ParamValue;
  learnAlpha?: boolean;
}

export interface RecurrentOptions {
  /** 'all' (a trainable units x units map, the default) or 'oneToOne' (one weight per unit). */
  recurrent?: 'all' | 'oneToOne';
  /** Initializer of the recurrent weights (default glorotUniform for 'all', ones for 'oneToOne'). */
  recurrentInitializer?: Initializer | InitializerName;
}

export interface AdaptiveOptions extends NeuronOptions {
  /** Adaptation decay per step (b_t = rho b_{t-1} + (1 - rho) S_{t-1}); default 0.99. */
  rho?: ParamValue;
  /** Threshold increase per unit of adaptation (thr_t = threshold + adaptation b_t); default 1.8. */
  adaptation?: ParamValue;
}

export type LeakyLayerOptions = NeuronOptions & NeuronLayerOptions;
export type SynapticLayerOptions = SynapticOptions & NeuronLayerOptions;
export type RecurrentLeakyLayerOptions = NeuronOptions & RecurrentOptions & NeuronLayerOptions;
export type RecurrentSynapticLayerOptions = SynapticOptions & RecurrentOptions & NeuronLayerOptions;
export type AdaptiveLeakyLayerOptions = AdaptiveOptions & NeuronLayerOptions;
export type IntegrateAndFireLayerOptions = Omit<NeuronOptions, 'beta' | 'tau' | 'vLeak' | 'learnBeta' | 'discretisation'> &
  NeuronLayerOptions;
export type LeakyIntegratorOptions = Pick<NeuronOptions, 'beta' | 'tau' | 'r' | 'vLeak' | 'discretisation' | 'learnBeta' | 'perUnit'>;
export type LeakyIntegratorLayerOptions = LeakyIntegratorOptions & NeuronLayerOptions;

type Params = { readonly [name: string]: Tensor };

interface Variant {
  kind: string;
  display: string;
  synaptic: boolean;
  recurrent: boolean;
  adaptive: boolean;
  /** beta fixed at 1 (integrate-and-fire). */
  integrate: boolean;
  /** Non-spiking: output the membrane. */
  readout: boolean;
}

const RESETS: readonly ResetMode[] = ['subtract', 'zero', 'none'];

type AllOptions = SynapticOptions & AdaptiveOptions & RecurrentOptions;

/** One parameter: its value, whether it is learned, and its valid range. */
interface Spec {
  value: ParamValue;
  learn: boolean;
}

function checkValue(where: string, name: string, v: ParamValue, ok: (x: number) => boolean, expected: string, note = ''): void {
  const vals = typeof v === 'number' ? [v] : Array.isArray(v) ? (v as number[]) : null;
  if (vals === null || vals.length === 0)
    throw new TypeError(`${where}: ${name} must be a number or a non-empty array of numbers, got ${JSON.stringify(v)}`);
  for (const x of vals)
    if (!(typeof x === 'number' && ok(x))) throw new RangeError(`${where}: ${name} must be ${expected}${note}, got ${x}`);
}

const finite = (x: number): boolean => Number.isFinite(x);
const positive = (x: number): boolean => Number.isFinite(x) && x > 0;
const unit = (x: number): boolean => x >= 0 && x <= 1;

const clip01 = (x: Tensor): Tensor => minimum(maximum(x, 0), 1);

/** Builds the shared cell of the leaky family for `variant` from validated options. */
function buildCell(variant: Variant, o: AllOptions, where: string): NeuronCell<Params, CellState> {
  const continuous = o.tau !== undefined;
  if (continuous && o.beta !== undefined) throw new RangeError(`${where}: give beta (discrete time) or tau (continuous time), not both`);
  if (variant.synaptic && o.tauSyn !== undefined && !continuous)
    throw new RangeError(`${where}: tauSyn needs tau (continuous time); for discrete time give alpha and beta`);
  if (variant.synaptic && o.tauSyn !== undefined && o.alpha !== undefined)
    throw new RangeError(`${where}: give alpha (discrete time) or tauSyn (continuous time), not both`);
  const reset = o.reset ?? 'subtract';
  if (!RESETS.includes(reset)) throw new RangeError(`${where}: unknown reset mode '${String(reset)}'; expected subtract, zero or none`);
  const discretisation = o.discretisation ?? 'exact';
  if (discretisation !== 'exact' && discretisation !== 'euler')
    throw new RangeError(`${where}: unknown discretisation '${String(discretisation)}'; expected exact or euler`);
  if (o.threshold !== undefined && o.vThreshold !== undefined)
    throw new RangeError(`${where}: give threshold or vThreshold (its alias), not both`);
  const surrogate = variant.readout ? null : resolveSurrogate(o.surrogate, where);

  const specs = new Map<string, Spec>();
  const add1 = (
    name: string,
    value: ParamValue | undefined,
    fallback: number,
    learn: boolean | undefined,
    ok: (x: number) => boolean,
    expected: string,
    note = '',
  ): void => {
    const v = value ?? fallback;
    checkValue(where, name, v, ok, expected, note);
    specs.set(name, { value: v, learn: learn ?? false });
  };
  if (!variant.integrate) {
    if (continuous) add1('tau', o.tau, 0, false, positive, 'a positive number of seconds');
    else add1('beta', o.beta, 0.9, o.learnBeta, unit, 'within [0, 1]', ' (a learned beta is clipped to [0, 1] in the step)');
  }
  if (continuous || (variant.integrate && o.r !== undefined)) add1('r', o.r, 1, false, finite, 'a finite number');
  if (continuous) add1('vLeak', o.vLeak, 0, false, finite, 'a finite number');
  if (variant.synaptic) {
    if (continuous) add1('tauSyn', o.tauSyn, 0.005, false, positive, 'a positive number of seconds');
    else add1('alpha', o.alpha, 0.8, o.learnAlpha, unit, 'within [0, 1]', ' (a learned alpha is clipped to [0, 1] in the step)');
  }
  if (!variant.readout) {
    add1('threshold', o.threshold ?? o.vThreshold, 1, o.learnThreshold, positive, 'positive');
    add1('vReset', o.vReset, 0, false, finite, 'a finite number');
    add1('graded', o.graded, 1, o.learnGraded, finite, 'a finite number');
  }
  if (variant.adaptive) {
    add1('rho', o.rho, 0.99, false, unit, 'within [0, 1]');
    add1('adaptation', o.adaptation, 1.8, false, finite, 'a finite number');
  }
  const recurrentMode = o.recurrent ?? 'all';
  if (variant.recurrent && recurrentMode !== 'all' && recurrentMode !== 'oneToOne')
    throw new RangeError(`${where}: recurrent must be 'all' or 'oneToOne', got '${String(recurrentMode)}'`);
  const recurrentInit = variant.recurrent
    ? o.recurrentInitializer !== undefined
      ? resolveInitializer(o.recurrentInitializer)
      : recurrentMode === 'all'
        ? resolveInitializer('glorotUniform')
        : (_k: Tensor, shape: readonly number[], dtype?: DType) => zeros(shape, dtype).add(1)
    : null;
  const initialMembrane = o.initialMembrane ?? 'zeros';
  if (initialMembrane !== 'zeros' && initialMembrane !== 'uniform')
    throw new RangeError(`${where}: initialMembrane must be 'zeros' or 'uniform', got '${String(initialMembrane)}'`);

  // Fixed values become constants once (per dtype); learned ones come from the parameters.
  const fixed = new Map<string, Tensor | number>();
  for (const [name, s] of specs) if (!s.learn) fixed.set(name, typeof s.value === 'number' ? s.value : array(s.value as number[]));
  // Fixed numbers become scalars of the input's dtype, so float64 inputs compute in float64 throughout.
  const get = (p: Params, name: string, dtype: DType): Tensor => {
    const v = specs.get(name)!.learn ? p[name] : fixed.get(name)!;
    return typeof v === 'number' ? scalar(v, dtype) : v.dtype === dtype ? v : cast(v, dtype);
  };
  const lastAxis = (shape: readonly number[]): number => shape[shape.length - 1];

  const stateNames = [
    ...(variant.synaptic ? ['syn'] : []),
    'mem',
    ...(variant.adaptive ? ['b'] : []),
    ...(variant.recurrent || variant.adaptive ? ['spk'] : []),
  ];

  const config: Record<string, unknown> = {};
  for (const [name, s] of specs) config[name] = s.value;
  if (!variant.readout) config.reset = reset;
  if (surrogate) config.surrogate = { name: surrogate.name, ...surrogate.config };
  if (continuous) config.discretisation = discretisation;
  if (variant.recurrent) config.recurrent = recurrentMode;
  const learned = [...specs].filter(([, s]) => s.learn).map(([n]) => n);
  if (learned.length > 0) config.learn = learned;
  if (o.perUnit) config.perUnit = true;
  if (o.resetGradient) config.resetGradient = true;
  if (initialMembrane !== 'zeros') config.initialMembrane = initialMembrane;

  /** The decay a and input gain g of a first-order section with time constant `tauName` (continuous) or decay `betaName`. */
  const section = (p: Params, dt: Tensor, dtype: DType, betaName: string, tauName: string, withR: boolean): [Tensor, Tensor] => {
    if (!continuous) {
      return [clip01(get(p, betaName, dtype)), scalar(1, dtype)];
    }
    const ratio = div(dt, get(p, tauName, dtype));
    const a = discretisation === 'exact' ? exp(neg(ratio)) : sub(1, ratio);
    const g = sub(1, a);
    return [a, withR ? mul(g, get(p, 'r', dtype)) : g];
  };

  const cell: NeuronCell<Params, CellState> = {
    kind: variant.kind,
    config,
    spiking: !variant.readout,
    spikeUnit: 'count',
    stateNames,
    randomState: initialMembrane === 'uniform',
    initParams(key, unitShape, dtype) {
      const p: Record<string, Tensor> = {};
      const units = lastAxis(unitShape);
      for (const [name, s] of specs) {
        if (!s.learn) continue;
        if (typeof s.value !== 'number' && s.value.length !== units)
          throw new RangeError(`${where}: ${name} has ${s.value.length} values, the layer has ${units} units`);
        const shape = typeof s.value !== 'number' || o.perUnit ? [units] : [];
        p[name] = typeof s.value === 'number' ? zeros(shape, dtype).add(s.value) : cast(array(s.value as number[]), dtype);
      }
      for (const [name, s] of specs)
        if (!s.learn && typeof s.value !== 'number' && s.value.length !== units)
          throw new RangeError(`${where}: ${name} has ${s.value.length} values, the layer has ${units} units`);
      if (recurrentInit) p.recurrent = recurrentInit(random.foldIn(key, 1), recurrentMode === 'all' ? [units, units] : [units], dtype);
      return p;
    },
    initialState(p, shape, dtype, key) {
      const s: Record<string, Tensor> = {};
      for (const n of stateNames) s[n] = zeros(shape, dtype);
      if (initialMembrane === 'uniform') {
        const thr = get(p, 'threshold', dtype);
        s.mem = mul(random.uniform(key!, shape, { dtype }), thr);
      }
      return s;
    },
    step(p, x, state, dt) {
      const dtype = x.dtype;
      let drive: Tensor = x;
      if (variant.recurrent) {
        const w = cast(p.recurrent, dtype);
        drive = add(drive, recurrentMode === 'all' ? matmul(state.spk, w) : mul(state.spk, w));
      }
      const next: Record<string, Tensor> = {};
      if (variant.synaptic) {
        const [as, gs] = section(p, dt, dtype, 'alpha', 'tauSyn', false);
        next.syn = add(mul(state.syn, as), mul(drive, gs));
        drive = next.syn;
      }
      const [a, g] = variant.integrate
        ? [scalar(1, dtype), specs.has('r') ? mul(dt, get(p, 'r', dtype)) : scalar(1, dtype)]
        : section(p, dt, dtype, 'beta', 'tau', true);
      // Leak and input: a U + (1 - a) v_leak + g x.
      let decayed: Tensor = mul(state.mem, a);
      if (continuous) decayed = add(decayed, mul(sub(1, a), get(p, 'vLeak', dtype)));
      if (variant.readout) {
        next.mem = add(decayed, mul(drive, g));
        return [next.mem, next];
      }
      let thr: Tensor = get(p, 'threshold', dtype);
      let resetFrom: Tensor;
      if (variant.adaptive) {
        const rho = get(p, 'rho', dtype);
        next.b = add(mul(state.b, rho), mul(state.spk, sub(1, rho)));
        // The reset compares the previous potential with the threshold it was compared with.
        const prevThr = add(thr, mul(state.b, get(p, 'adaptation', dtype)));
        thr = add(thr, mul(next.b, get(p, 'adaptation', dtype)));
        resetFrom = sub(state.mem, prevThr);
      } else resetFrom = sub(state.mem, thr);
      const fired = o.resetGradient ? surrogate!.spike(resetFrom) : stopGradient(heaviside(resetFrom));
      const vReset = get(p, 'vReset', dtype);
      const input = mul(drive, g);
      if (reset === 'subtract') next.mem = add(sub(decayed, mul(fired, sub(thr, vReset))), input);
      else if (reset === 'zero') next.mem = add(add(mul(decayed, sub(1, fired)), mul(fired, vReset)), input);
      else next.mem = add(decayed, input);
      const spikes = mul(surrogate!.spike(sub(next.mem, thr)), get(p, 'graded', dtype));
      if ('spk' in state) next.spk = spikes;
      return [spikes, next];
    },
    describe(p) {
      const out: Record<string, Tensor> = {};
      for (const [name, s] of specs) {
        const v = s.learn ? p[name] : fixed.get(name)!;
        const t = typeof v === 'number' ? scalar(v) : v;
        out[name] = name === 'beta' || name === 'alpha' ? clip01(t) : t;
      }
      if (variant.recurrent) out.recurrent = p.recurrent;
      return out;
    },
    energy(unitShape) {
      const neurons = unitShape.reduce((a, c) => a * c, 1);
      const units = lastAxis(unitShape);
      const connections = variant.recurrent ? (recurrentMode === 'all' ? (neurons / units) * units * units : neurons) : 0;
      return { connections, neurons };
    },
  };
  return cell;
}

const LEAKY: Variant = {
  kind: 'Leaky',
  display: 'leaky',
  synaptic: false,
  recurrent: false,
  adaptive: false,
  integrate: false,
  readout: false,
};
const SYNAPTIC: Variant = { ...LEAKY, kind: 'Synaptic', display: 'synaptic', synaptic: true };
const RLEAKY: Variant = { ...LEAKY, kind: 'RecurrentLeaky', display: 'recurrentLeaky', recurrent: true };
const RSYNAPTIC: Variant = { ...LEAKY, kind: 'RecurrentSynaptic', display: 'recurrentSynaptic', synaptic: true, recurrent: true };
const IF: Variant = { ...LEAKY, kind: 'IntegrateAndFire', display: 'integrateAndFire', integrate: true };
const ALIF: Variant = { ...LEAKY, kind: 'AdaptiveLeaky', display: 'adaptiveLeaky', adaptive: true };
const LI: Variant = { ...LEAKY, kind: 'LeakyIntegrator', display: 'leakyIntegrator', readout: true };

const PREFIX: Record<string, string> = {
  Leaky: 'leaky',
  Synaptic: 'synaptic',
  RecurrentLeaky: 'recurrent_leaky',
  RecurrentSynaptic: 'recurrent_synaptic',
  IntegrateAndFire: 'integrate_and_fire',
  AdaptiveLeaky: 'adaptive_leaky',
  LeakyIntegrator: 'leaky_integrator',
};

function cellOf(variant: Variant, options: AllOptions, where?: string): NeuronCell<Params, CellState> {
  return buildCell(variant, options, where ?? `${variant.display}Cell`);
}

function layerOf<O extends AllOptions & NeuronLayerOptions>(variant: Variant, options: O): Layer<Params, NeuronLayerState, O> {
  const prefix = PREFIX[variant.kind];
  const layerOptions = { ...options };
  // The layer names itself first, so errors from the cell name the layer.
  const probe = uniqueName(prefix, options.name);
  const cell = cellOf(variant, options, `${variant.display} '${probe}'`);
  return neuronLayer(
    cell,
    { ...layerOptions, name: probe },
    {
      display: variant.display,
      prefix,
      rebuild: (changes: LayerChanges<O>, name) => layerOf(variant, { ...options, ...changes, name }) as unknown as Layer,
    },
  );
}

/** The LIF cell: U_t = clip(beta) U_{t-1} + x_t - R_t thr; S_t = H(U_t - thr). */
export const leakyCell = (options: NeuronOptions = {}): NeuronCell<Params, CellState> => cellOf(LEAKY, options);
/** The current-based LIF cell: I_t = clip(alpha) I_{t-1} + x_t; U_t = clip(beta) U_{t-1} + I_t - R_t thr. */
export const synapticCell = (options: SynapticOptions = {}): NeuronCell<Params, CellState> => cellOf(SYNAPTIC, options);
/** The recurrent LIF cell: a Leaky cell with V(S_{t-1}) added to the input (state: mem, spk). */
export const recurrentLeakyCell = (options: NeuronOptions & RecurrentOptions = {}): NeuronCell<Params, CellState> =>
  cellOf(RLEAKY, options);
/** The recurrent current-based cell: V(S_{t-1}) added to the synaptic current's input. */
export const recurrentSynapticCell = (options: SynapticOptions & RecurrentOptions = {}): NeuronCell<Params, CellState> =>
  cellOf(RSYNAPTIC, options);
/** Integrate-and-fire: Leaky with beta = 1 (with `r`, continuous time: U += r dt x). */
export const integrateAndFireCell = (
  options: Omit<NeuronOptions, 'beta' | 'tau' | 'vLeak' | 'learnBeta' | 'discretisation'> = {},
): NeuronCell<Params, CellState> => cellOf(IF, options);
/** ALIF (Bellec et al. 2018): b_t = rho b_{t-1} + (1 - rho) S_{t-1}; thr_t = thr + adaptation b_t; Leaky with thr_t. */
export const adaptiveLeakyCell = (options: AdaptiveOptions = {}): NeuronCell<Params, CellState> => cellOf(ALIF, options);
/** The non-spiking readout: U_t = clip(beta) U_{t-1} + x_t (continuous: the LI node); outputs U. */
export const leakyIntegratorCell = (options: LeakyIntegratorOptions = {}): NeuronCell<Params, CellState> => cellOf(LI, options);

/**
 * Leaky integrate-and-fire neurons (snnTorch's Leaky): (batch, time, ...units) in, spikes out.
 *
 * @example
 * sequential([timeDistributed(dense(1000)), leaky({ beta: 0.95 }), timeDistributed(dense(10)), leaky({ beta: 0.95 })])
 */
export const leaky = (options: LeakyLayerOptions = {}): Layer<Params, NeuronLayerState, LeakyLayerOptions> => layerOf(LEAKY, options);
/** Current-based LIF neurons (snnTorch's Synaptic); state syn, mem. */
export const synaptic = (options: SynapticLayerOptions = {}): Layer<Params, NeuronLayerState, SynapticLayerOptions> =>
  layerOf(SYNAPTIC, options);
/** Recurrent LIF neurons (snnTorch's RLeaky): all-to-all recurrent weights (default) or one-to-one. */
export const recurrentLeaky = (options: RecurrentLeakyLayerOptions = {}): Layer<Params, NeuronLayerState, RecurrentLeakyLayerOptions> =>
  layerOf(RLEAKY, options);
/** Recurrent current-based neurons (snnTorch's RSynaptic). */
export const recurrentSynaptic = (
  options: RecurrentSynapticLayerOptions = {},
): Layer<Params, NeuronLayerState, RecurrentSynapticLayerOptions> => layerOf(RSYNAPTIC, options);
/** Integrate-and-fire neurons (no leak). */
export const integrateAndFire = (
  options: IntegrateAndFireLayerOptions = {},
): Layer<Params, NeuronLayerState, IntegrateAndFireLayerOptions> => layerOf(IF, options);
/** Adaptive-threshold LIF neurons (ALIF). */
export const adaptiveLeaky = (options: AdaptiveLeakyLayerOptions = {}): Layer<Params, NeuronLayerState, AdaptiveLeakyLayerOptions> =>
  layerOf(ALIF, options);
/**
 * A non-spiking leaky integrator readout: outputs the membrane (max or last over time feeds
 * `membraneCrossEntropy`).
 */
export const leakyIntegrator = (options: LeakyIntegratorLayerOptions = {}): Layer<Params, NeuronLayerState, LeakyIntegratorLayerOptions> =>
  layerOf(LI, options);
