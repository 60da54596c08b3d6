/**
 * Rate regularizers: penalties on a layer's output (activity) or on weights, with a target value
 * or an accepted (low, high) range.
 */
import { abs, add, max, mul, relu, sort, square, sub, sum, indexAxis, moveAxisLast, type Tensor } from './core-ext.js';

export type Target = number | readonly [number, number];
export type RegularizerFn = (x: Tensor) => Tensor;

/** e = x - t for a scalar target; relu(lo - x) + relu(x - hi) for a range. */
export function rangedError(x: Tensor, target: Target = 0): Tensor {
  validateTarget(target);
  if (typeof target === 'number') return target === 0 ? x : sub(x, target);
  const [lo, hi] = target;
  return add(relu(sub(lo, x)), relu(sub(x, hi)));
}

function validateTarget(target: Target): void {
  if (typeof target === 'number') return;
  if (!Array.isArray(target) || target.length !== 2)
    throw new RangeError(`regularizer: a target range must be [low, high], got ${JSON.stringify(target)}`);
  if (target[0] > target[1]) throw new RangeError(`regularizer: target range low (${target[0]}) exceeds high (${target[1]})`);
}

export interface L1L2Options {
  l1?: number;
  l2?: number;
  target?: Target;
}

/**
 * l1 * sum|e| + l2 * sum e^2 with e the ranged error against `target`.
 *
 * @example
 * spikingActivation('relu', { activityRegularizer: l2({ l2: 1e-4, target: [10, 20] }) })
 */
export function l1l2(options: L1L2Options = {}): RegularizerFn {
  const w1 = options.l1 ?? 0;
  const w2 = options.l2 ?? 0;
  const target = options.target ?? 0;
  validateTarget(target);
  if (w1 === 0 && w2 === 0) console.warn('spiketrace regularizers.l1l2: both l1 and l2 are 0, the penalty is always 0');
  return (x) => {
    const e = rangedError(x, target);
    let p: Tensor | null = null;
    if (w1 !== 0) p = mul(sum(abs(e)), w1);
    if (w2 !== 0) p = p === null ? mul(sum(square(e)), w2) : add(p, mul(sum(square(e)), w2));
    return p ?? mul(sum(e), 0);
  };
}
export function l1(options: { l1?: number; target?: Target } = {}): RegularizerFn {
  return l1l2({ l1: options.l1 ?? 0.01, target: options.target });
}
export function l2(options: { l2?: number; target?: Target } = {}): RegularizerFn {
  return l1l2({ l2: options.l2 ?? 0.01, target: options.target });
}

/**
 * The linearly interpolated `percentile` of x along `axis` (100 = the max), as numpy's default
 * 'linear' method: position p/100 * (n - 1) between the two nearest sorted values.
 */
export function percentileOf(x: Tensor, percentile: number, axis = 0): Tensor {
  if (!(percentile >= 0 && percentile <= 100)) throw new RangeError(`percentile: must be within [0, 100], got ${percentile}`);
  if (percentile === 100) return max(x, axis);
  const moved = moveAxisLast(x, axis);
  const n = moved.shape[moved.ndim - 1];
  const sorted = sort(moved, -1);
  const pos = (percentile / 100) * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  const frac = pos - lo;
  const a = indexAxis(sorted, -1, lo);
  return frac === 0 ? a : add(a, mul(sub(indexAxis(sorted, -1, hi), a), frac));
}

export interface PercentileOptions extends L1L2Options {
  percentile?: number;
  axis?: number;
}

/** The ranged L1L2 penalty of the `percentile` (default 100: the max) of x along `axis` (default 0). */
export function percentile(options: PercentileOptions = {}): RegularizerFn {
  const p = options.percentile ?? 100;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`regularizers.percentile: percentile must be within [0, 100], got ${p}`);
  const inner = l1l2(options);
  return (x) => inner(percentileOf(x, p, options.axis ?? 0));
}

/** Wraps any regularizer so it penalises the ranged error against `target`. */
export function ranged(target: Target, inner: RegularizerFn): RegularizerFn {
  return (x) => inner(rangedError(x, target));
}
