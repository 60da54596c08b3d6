/**
 * Spike encoders beside poissonEncode (snnTorch's spikegen conventions): rate (0/1 Bernoulli
 * spikes), latency (one spike per input, brighter earlier) and delta (a spike where the input
 * changes by more than a threshold). Outputs are batch-major: (n, steps, ...).
 */
import {
  add,
  arange,
  broadcastTo,
  cast,
  concatenate,
  div,
  equal,
  floor,
  greater,
  less,
  lessEqual,
  log,
  maximum,
  minimum,
  mul,
  neg,
  random,
  reshape,
  slice,
  sub,
  where,
  zerosLike,
  type Tensor,
} from '../core/index.js';

function checkSteps(where: string, steps: number): void {
  if (!Number.isInteger(steps) || steps <= 0) throw new RangeError(`${where}: steps must be a positive integer, got ${steps}`);
}
function checkExamples(where: string, x: Tensor): void {
  if (x.ndim < 1) throw new RangeError(`${where}: x must have a leading example axis, got shape []`);
}
/** x with a time axis of `steps` after the example axis (a broadcast view). */
function overTime(x: Tensor, steps: number): Tensor {
  return broadcastTo(reshape(x, [x.shape[0], 1, ...x.shape.slice(1)]), [x.shape[0], steps, ...x.shape.slice(1)]);
}

/**
 * Rate coding: S_t ~ Bernoulli(clip(x, 0, 1) * gain) at every step, spikes of height 1:
 * (n, ...) -> (n, steps, ...).
 *
 * @example
 * const spikes = rateEncode(random.key(0), images, 25); // (n, 25, 28, 28) of 0/1
 */
export function rateEncode(key: Tensor, x: Tensor, steps: number, options: { gain?: number } = {}): Tensor {
  checkSteps('rateEncode', steps);
  checkExamples('rateEncode', x);
  const gain = options.gain ?? 1;
  if (!(gain >= 0 && gain <= 1)) throw new RangeError(`rateEncode: gain must be within [0, 1] (a probability scale), got ${gain}`);
  const p = overTime(mul(minimum(maximum(x, 0), 1), gain), steps);
  return cast(less(random.uniform(key, p.shape), p), 'float32');
}

export interface LatencyOptions {
  /** 'log' (default: t = tau ln(x / (x - threshold)) steps, an RC neuron's charging time) or 'linear' (t = (1 - x)(steps - 1)). */
  code?: 'log' | 'linear';
  /** Time constant of the log code, in steps (default 5). */
  tau?: number;
  /** Inputs at or under it never reach the threshold (default 0.01). */
  threshold?: number;
  /** Where inputs that do not fire within the window go: 'last' step (default) or 'never'. */
  late?: 'last' | 'never';
}

/**
 * Latency coding: one spike per input (x in [0, 1], clipped), brighter inputs earlier. The log
 * code fires at step floor(tau ln(x / (x - threshold))); the linear code at floor((1 - x)(steps - 1) + 1/2),
 * spanning the window. An input under the threshold, or whose time falls past the window, fires at
 * the last step (or never, with `late: 'never'`).
 *
 * @example
 * latencyEncode(images, 25, { code: 'linear' }) // (n, 25, 28, 28), one spike per pixel
 */
export function latencyEncode(x: Tensor, steps: number, options: LatencyOptions = {}): Tensor {
  checkSteps('latencyEncode', steps);
  checkExamples('latencyEncode', x);
  const code = options.code ?? 'log';
  if (code !== 'log' && code !== 'linear') throw new RangeError(`latencyEncode: code must be 'log' or 'linear', got '${String(code)}'`);
  const tau = options.tau ?? 5;
  if (!(tau > 0 && Number.isFinite(tau))) throw new RangeError(`latencyEncode: tau must be a positive number of steps, got ${tau}`);
  const thr = options.threshold ?? 0.01;
  if (!(thr >= 0 && thr < 1)) throw new RangeError(`latencyEncode: threshold must be within [0, 1), got ${thr}`);
  const late = options.late ?? 'last';
  if (late !== 'last' && late !== 'never') throw new RangeError(`latencyEncode: late must be 'last' or 'never', got '${String(late)}'`);
  const xc = minimum(maximum(x, 0), 1);
  const below = lessEqual(xc, thr);
  let t: Tensor;
  if (code === 'linear') t = floor(add(mul(sub(1, xc), steps - 1), 0.5));
  else {
    // Under the threshold the log is undefined: those inputs take the late path below.
    const safe = where(below, zerosLike(xc).add(1), xc);
    t = floor(mul(log(div(safe, sub(safe, thr))), tau));
  }
  const tooLate = greater(t, steps - 1);
  const lateStep = late === 'last' ? steps - 1 : steps;
  const lateMask = where(below, below, tooLate);
  t = where(lateMask, zerosLike(t).add(lateStep), t);
  const times = reshape(arange(steps), [1, steps, ...x.shape.slice(1).map(() => 1)]);
  return cast(equal(cast(times, t.dtype), overTime(t, steps)), 'float32');
}

/**
 * Delta modulation over an existing time axis: (n, time, ...) -> (n, time, ...), a spike of 1 where
 * x_t - x_{t-1} exceeds `threshold` (x_{-1} = 0, or x_0 with padding: true so the first step never
 * fires); with offSpikes, -1 where it falls by more than `threshold`.
 *
 * @example
 * deltaEncode(signal, { threshold: 0.1, offSpikes: true })
 */
export function deltaEncode(x: Tensor, options: { threshold?: number; offSpikes?: boolean; padding?: boolean } = {}): Tensor {
  if (x.ndim < 2) throw new RangeError(`deltaEncode: x must be (examples, time, ...), got shape [${x.shape.join(', ')}]`);
  const thr = options.threshold ?? 0.1;
  if (!(thr >= 0 && Number.isFinite(thr))) throw new RangeError(`deltaEncode: threshold must be a finite number >= 0, got ${thr}`);
  const [n, steps] = x.shape;
  const first = slice(x, [0, 0], [n, 1]);
  const before = concatenate([options.padding ? first : zerosLike(first), slice(x, [0, 0], [n, steps - 1])], 1);
  const d = sub(x, before);
  const on = cast(greater(d, thr), 'float32');
  if (!options.offSpikes) return on;
  return sub(on, cast(less(d, neg(thr)), 'float32'));
}
