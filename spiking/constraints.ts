/** Constraints applied to parameters after each optimizer step. */
import { broadcastTo, maximum, mean as meanOp, type Tensor } from '../core/index.js';

/** Replaces w by its mean along `axis` (default -1): e.g. one shared tau for all units. */
export function mean(options: { axis?: number } = {}): (w: Tensor) => Tensor {
  const axis = options.axis ?? -1;
  return (w) => broadcastTo(meanOp(w, axis, { keepdims: true }), w.shape);
}
/** Clips w at 0 from below. */
export function nonNeg(): (w: Tensor) => Tensor {
  return (w) => maximum(w, 0);
}
