/** Lowpass and Alpha synaptic filters: zero-order-hold discretisations run as a scan over time. */
import {
  add,
  broadcastTo,
  cast,
  exp,
  div,
  maximum,
  mul,
  neg,
  scalar,
  scan,
  ShapeError,
  sub,
  transpose,
  indexAxis,
  zeros,
  type Tensor,
  type Tree,
} from '../core/index.js';
import { uniqueName, type Layer, type LayerShape } from '../nn/index.js';
import { checkDt, checkLayerDtype, getDefaultDt, type LayerDtype } from './dt.js';

export interface FilterOptions {
  dt?: number;
  /** Filter in training too (default true); false passes the input through in training. */
  applyDuringTraining?: boolean;
  /** The filter's state before the first step (default 0). */
  initialLevel?: number;
  /** Applied to tau after each optimizer step (e.g. constraints.mean() for one shared tau). */
  tauConstraint?: (tau: Tensor) => Tensor;
  returnSequences?: boolean;
  timeMajor?: boolean;
  /**
   * The precision of tau, initialLevel and the state's dt (default float32). The filter runs in
   * the input's dtype either way; give 'float64' with float64 inputs to use dt and tau exactly.
   */
  dtype?: LayerDtype;
  name?: string;
}

export interface FilterParams {
  readonly [k: string]: Tensor;
  readonly tau: Tensor;
  readonly initialLevel: Tensor;
}
export interface FilterState {
  readonly [k: string]: Tensor;
  readonly dt: Tensor;
}

type Step = (x: Tensor, params: FilterParams, dt: Tensor) => Tensor;

function filterLayer(
  kind: 'Lowpass' | 'Alpha',
  prefix: string,
  tau: number,
  options: FilterOptions,
  run: Step,
  rebuild: (o: FilterOptions) => Layer<FilterParams, FilterState, FilterOptions>,
): Layer<FilterParams, FilterState, FilterOptions> {
  const name = uniqueName(prefix, options.name);
  const dtype = checkLayerDtype(`${prefix} '${name}'`, options.dtype);
  // An infinite tau would freeze the output at its initial level forever.
  if (!(typeof tau === 'number' && tau > 0)) throw new RangeError(`${prefix} '${name}': tau must be positive, got ${tau}`);
  if (!Number.isFinite(tau))
    throw new RangeError(`${prefix} '${name}': tau must be finite (an infinite tau freezes the output at its initial level), got ${tau}`);
  if (dtype === 'float32' && !Number.isFinite(Math.fround(tau)))
    throw new RangeError(`${prefix} '${name}': tau = ${tau} is Infinity in float32; tau must stay finite in the layer's dtype`);
  const dt = options.dt ?? getDefaultDt();
  checkDt(`${prefix} '${name}'`, dt, dtype);
  const during = options.applyDuringTraining ?? true;
  const returnSequences = options.returnSequences ?? true;
  const timeMajor = options.timeMajor ?? false;
  return {
    kind,
    name,
    carriesDt: true,
    config: { tau, dt, applyDuringTraining: during, initialLevel: options.initialLevel ?? 0, returnSequences, timeMajor },
    init(_key, inputShape: LayerShape) {
      if (inputShape.length < 2)
        throw new ShapeError(`${prefix} '${name}': expected input (batch, time, ...units), got (None, ${inputShape.join(', ')})`);
      const units = inputShape.slice(1);
      if (units.some((d) => d === null))
        throw new ShapeError(`${prefix} '${name}': unit axes must be known, got (None, ${inputShape.join(', ')})`);
      const shape = [1, ...(units as number[])];
      return {
        params: { tau: zeros(shape, dtype).add(tau), initialLevel: zeros(shape, dtype).add(options.initialLevel ?? 0) },
        state: { dt: scalar(dt, dtype) },
        outputShape: returnSequences ? inputShape : units,
      };
    },
    apply(params, x, ctx, state) {
      if (x.ndim < 3)
        throw new ShapeError(`${prefix} '${name}': expected input (batch, time, ...units), got shape [${x.shape.join(', ')}]`);
      const perm = [1, 0, ...x.shape.slice(2).map((_, i) => i + 2)];
      let y: Tensor;
      if (ctx.training && !during) y = timeMajor ? x : transpose(x, perm);
      else {
        // The filter runs in the input's precision (float64 inputs give float64-exact responses).
        const p =
          x.dtype === params.tau.dtype ? params : { tau: cast(params.tau, x.dtype), initialLevel: cast(params.initialLevel, x.dtype) };
        y = run(timeMajor ? x : transpose(x, perm), p, cast(state.dt, x.dtype));
      }
      y = returnSequences ? (timeMajor ? y : transpose(y, perm)) : indexAxis(y, 0, -1);
      return { y, state, losses: [] };
    },
    constrain: options.tauConstraint ? (p) => ({ ...p, tau: options.tauConstraint!(p.tau) }) : undefined,
    with: (changes) => rebuild({ ...options, ...changes, name }),
  };
}

/** exp(-dt / max(tau, 1e-8)): the per-step decay of a first-order section. */
function decay(tau: Tensor, dt: Tensor): Tensor {
  return exp(neg(div(dt, maximum(tau, 1e-8))));
}

/**
 * First-order lowpass filter, one trainable tau per unit: y_t = (1 - a) u_t + a y_{t-1},
 * a = exp(-dt / tau), y before the first step = initialLevel. Step response 1 - e^(-t/tau).
 *
 * @example
 * sequential([..., spikingActivation('relu'), lowpass(0.1, { returnSequences: false }), dense(10)])
 */
export function lowpass(tau: number, options: FilterOptions = {}): Layer<FilterParams, FilterState, FilterOptions> {
  return filterLayer(
    'Lowpass',
    'lowpass',
    tau,
    options,
    (u, params, dt) => {
      const unit = u.shape.slice(1);
      const a = broadcastTo(decay(params.tau, dt), unit);
      const oneMinusA = sub(1, a);
      const y0 = broadcastTo(params.initialLevel, unit);
      const [, ys] = scan(
        (y: Tensor, ut: Tensor) => {
          const next = add(mul(oneMinusA, ut), mul(a, y));
          return [next, next];
        },
        y0,
        u,
      );
      return ys;
    },
    (o) => lowpass(tau, o),
  );
}

/**
 * Alpha filter, two cascaded first-order sections (H(s) = 1 / (tau s + 1)^2), zero-order hold:
 * with r = dt/tau, e = exp(-r): x_t = Ad x_{t-1} + Bd u_t, Ad = e [[1 - r, -r/tau], [dt, 1 + r]],
 * Bd = [e r / tau, 1 - e (1 + r)], y = x[1]. Step response 1 - e^(-t/tau) (1 + t/tau).
 */
export function alpha(tau: number, options: FilterOptions = {}): Layer<FilterParams, FilterState, FilterOptions> {
  return filterLayer(
    'Alpha',
    'alpha',
    tau,
    options,
    (u, params, dt) => {
      const unit = u.shape.slice(1);
      const t = broadcastTo(maximum(params.tau, 1e-8), unit);
      const r = div(dt, t);
      const e = exp(neg(r));
      const a00 = mul(e, sub(1, r));
      const a01 = neg(mul(e, div(r, t)));
      const a10 = mul(e, dt);
      const a11 = mul(e, add(1, r));
      const b0 = mul(e, div(r, t));
      const b1 = sub(1, mul(e, add(1, r)));
      const init: Tree = [zeros(unit, u.dtype), broadcastTo(params.initialLevel, unit)];
      const [, ys] = scan(
        (xs: Tree, ut: Tensor) => {
          const [x0, x1] = xs as [Tensor, Tensor];
          const n0 = add(add(mul(a00, x0), mul(a01, x1)), mul(b0, ut));
          const n1 = add(add(mul(a10, x0), mul(a11, x1)), mul(b1, ut));
          return [[n0, n1], n1];
        },
        init,
        u,
      );
      return ys as Tensor;
    },
    (o) => alpha(tau, o),
  );
}
