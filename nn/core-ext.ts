/** Core re-exports used across nn, plus small helpers. */
export * from '../core/index.js';
import type { Tensor } from '../core/index.js';
export function fmtShapeOf(x: Tensor): string {
  return `[${x.shape.join(', ')}]`;
}
