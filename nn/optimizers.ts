/**
 * Optimizers as pure { init, update } pairs (Optax's design), composed with `chain`.
 * `update(grads, state, params)` returns [updates, newState]; `applyUpdates` adds them.
 */
import {
  add,
  cast,
  floor,
  neg,
  div,
  mul,
  pow,
  scalar,
  sqrt,
  sub,
  treeMap,
  treeZipMap,
  where,
  abs,
  less,
  lessEqual,
  zeros,
  zerosLike,
  NDArray,
  type Tensor,
  type Tree,
  type TensorLike,
} from '../core/index.js';

export interface GradientTransformation<S extends Tree = Tree> {
  init(params: Tree): S;
  /** The updates have the gradients' type, so `applyUpdates(params, updates)` keeps the parameters' type. */
  update<G extends Tree>(grads: G, state: S, params?: Tree): [G, S];
}

/**
 * An optimizer's initial per-parameter state: dense zeros for a concrete parameter. A stride-0
 * broadcast (zerosLike) would be cheaper, but jit keys its cache on stride patterns and the
 * update's outputs are dense, so a hand-written jitted step would trace (and compile) twice: once
 * for the broadcast zeros of step 1, again for step 2's dense state. Under a trace (init called
 * inside a jitted function) the zeros stay symbolic.
 */
function zerosState(p: Tensor): Tensor {
  return p instanceof NDArray ? zeros(p.shape, p.dtype) : zerosLike(p);
}

/** The smallest normal magnitude of each floating dtype: below it lie the subnormals. */
const SMALLEST_NORMAL: Record<string, number> = { float32: 2 ** -126, float64: 2 ** -1022 };

/**
 * An optimizer's decaying state with its subnormal entries set to zero (flush to zero).
 *
 * Why: a moment whose gradient stops (a pixel that is blank in most images, a silent neuron)
 * decays geometrically, 0.9^t for Adam's first moment, and passes through the subnormal range
 * for ~150 steps before it reaches zero. x86 CPUs run arithmetic on subnormals through a microcode
 * assist (~100x slower), and WebAssembly has no flush-to-zero mode: measured on M1 (Fashion-MNIST,
 * 784x128 kernel), 7-9% of the first moment was subnormal from step ~900 on, and the fused Adam
 * update of that kernel took ~1 ms instead of ~0.1 ms. TensorFlow (Keras's engine) runs with the
 * CPU's flush-to-zero and denormals-are-zero flags set, so its moments never hold subnormals either.
 *
 * Effect on the parameters: none unless a parameter is itself below ~1e-27 in magnitude. With a
 * subnormal m (< 1.2e-38), Adam's step lr * m_hat / (sqrt(v_hat) + epsilon) is below
 * lr * 1.2e-37 / 1e-7 ~ 1e-33 (lr 1e-3), which rounds away against any parameter larger than 2^24
 * times it. A subnormal v changes nothing (sqrt(v) < 1.2e-19 vanishes beside epsilon). NaN and
 * infinities pass unchanged (a comparison with NaN is false).
 */
function flushSubnormals(x: Tensor): Tensor {
  const tiny = SMALLEST_NORMAL[x.dtype];
  return tiny === undefined ? x : where(less(abs(x), tiny), 0, x);
}

/** A learning rate: a constant or a function of the (float32 scalar) step count. */
export type Schedule = number | ((step: Tensor) => TensorLike);

function lrAt(lr: Schedule, step: Tensor): TensorLike {
  return typeof lr === 'number' ? lr : lr(step);
}

/** params + updates, leaf by leaf. */
export function applyUpdates<T extends Tree>(params: T, updates: Tree): T {
  return treeZipMap((p, u) => add(p, u), params, updates);
}

/** Runs transformations in sequence; the state is the list of their states. */
export function chain(...ts: GradientTransformation[]): GradientTransformation<Tree[]> {
  return {
    init: (params) => ts.map((t) => t.init(params)),
    update: (grads, state, params) => {
      let u = grads;
      const next = ts.map((t, i) => {
        const [nu, ns] = t.update(u, state[i], params);
        u = nu;
        return ns;
      });
      return [u, next];
    },
  };
}

type CountState = { count: Tensor };

/** Multiplies updates by -lr (a descent step); the state counts steps for schedules. */
export function scaleByLearningRate(lr: Schedule): GradientTransformation<CountState> {
  return {
    init: () => ({ count: scalar(0) }),
    update: (grads, state) => {
      const rate = lrAt(lr, state.count);
      // A plain number takes each leaf's dtype (weak typing), so float64 params step in float64.
      const step = (g: Tensor): Tensor => (typeof rate === 'number' ? mul(g, -rate) : mul(g, cast(neg(rate), g.dtype)));
      return [treeMap(step, grads), { count: add(state.count, 1) }];
    },
  };
}

export interface AdamOptions {
  beta1?: number;
  beta2?: number;
  /** Added to sqrt(v) after Keras's bias-corrected step size (Keras's placement). */
  epsilon?: number;
}
type AdamState = { count: Tensor; mu: Tree; nu: Tree };

/**
 * Adam's direction with Keras's formulation: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
 * update = sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps). Scale by -lr afterwards.
 */
export function scaleByAdam(options: AdamOptions = {}): GradientTransformation<AdamState> {
  const b1 = options.beta1 ?? 0.9;
  const b2 = options.beta2 ?? 0.999;
  const eps = options.epsilon ?? 1e-7;
  return {
    // The step count and bias correction are float64 and cast per leaf, so float64 params stay exact.
    init: (params) => ({ count: scalar(0, 'float64'), mu: treeMap(zerosState, params), nu: treeMap(zerosState, params) }),
    update: (grads, state) => {
      const t = add(state.count, 1);
      const mu = treeZipMap((m, g) => flushSubnormals(add(mul(m, b1), mul(g, 1 - b1))), state.mu, grads);
      const nu = treeZipMap((v, g) => flushSubnormals(add(mul(v, b2), mul(mul(g, g), 1 - b2))), state.nu, grads);
      const corr = div(sqrt(sub(1, pow(scalar(b2, 'float64'), t))), sub(1, pow(scalar(b1, 'float64'), t)));
      const updates = treeZipMap((_g, m, v) => div(mul(m, cast(corr, m.dtype)), add(sqrt(v), eps)), grads, mu, nu);
      return [updates, { count: t, mu, nu }];
    },
  };
}

/**
 * Adam with Keras's defaults (lr 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-7).
 *
 * @example
 * const opt = adam();
 * let state = opt.init(params);
 * const [updates, next] = opt.update(grads, state, params);
 */
export function adam(learningRate: Schedule = 1e-3, options: AdamOptions = {}): GradientTransformation<Tree[]> {
  return chain(scaleByAdam(options), scaleByLearningRate(learningRate));
}

type MomentumState = { trace: Tree };
export function traceMomentum(momentum: number, nesterov = false): GradientTransformation<MomentumState> {
  return {
    init: (params) => ({ trace: treeMap(zerosState, params) }),
    update: (grads, state) => {
      const trace = treeZipMap((tr, g) => flushSubnormals(add(g, mul(tr, momentum))), state.trace, grads);
      const updates = treeZipMap((g, tr) => (nesterov ? add(g, mul(tr, momentum)) : tr), grads, trace);
      return [updates, { trace }];
    },
  };
}

/** Stochastic gradient descent, optionally with (Nesterov) momentum. */
export function sgd(
  learningRate: Schedule = 0.01,
  options: { momentum?: number; nesterov?: boolean } = {},
): GradientTransformation<Tree[]> {
  const m = options.momentum ?? 0;
  return m > 0
    ? chain(traceMomentum(m, options.nesterov ?? false), scaleByLearningRate(learningRate))
    : chain(scaleByLearningRate(learningRate));
}

/** lr = values[i] for boundaries[i-1] < step <= boundaries[i] (Keras's PiecewiseConstantDecay). */
export function piecewiseConstant(boundaries: readonly number[], values: readonly number[]): (step: Tensor) => Tensor {
  if (values.length !== boundaries.length + 1)
    throw new RangeError(
      `piecewiseConstant: needs ${boundaries.length + 1} values for ${boundaries.length} boundaries, got ${values.length}`,
    );
  return (step) => {
    let out: Tensor = cast(zerosLike(step), 'float32').add(values[values.length - 1]);
    for (let i = boundaries.length - 1; i >= 0; i--) out = where(lessEqual(step, boundaries[i]), values[i], out);
    return out;
  };
}

/** lr = initial * rate^(step / decaySteps), floored exponent when staircase. */
export function exponentialDecay(
  initial: number,
  decaySteps: number,
  decayRate: number,
  options: { staircase?: boolean } = {},
): (step: Tensor) => Tensor {
  return (step) => {
    let e = div(step, decaySteps);
    if (options.staircase) e = floor(e);
    return mul(pow(scalar(decayRate), e), initial);
  };
}
