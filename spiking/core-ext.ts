/** Core re-exports used across spiking, plus small helpers. */
export * from '../core/index.js';
import { transpose, type Tensor } from '../core/index.js';

/** Moves `axis` to the end (a view). */
export function moveAxisLast(x: Tensor, axis: number): Tensor {
  const a = axis < 0 ? axis + x.ndim : axis;
  const perm = x.shape.map((_, i) => i).filter((i) => i !== a);
  perm.push(a);
  return transpose(x, perm);
}
