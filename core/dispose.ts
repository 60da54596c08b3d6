/**
 * `dispose(tree)`: the caller says it no longer needs these arrays, so their memory can hold the
 * next results (a per-example gradient of 12.8 MB, reused instead of page-faulted afresh on every
 * call). The rule of which buffers may be reused is in core/ndarray.ts (`holders`); the reuse
 * itself is each backend's optional `release` hook (core/backends.ts).
 */
import { registeredBackends } from './backends.js';
import { dropHold, NDArray } from './ndarray.js';
import { Tracer } from './trace.js';
import { treeFlatten } from './tree.js';

/**
 * Deletes every array of `tree` (any pytree of arrays: a gradient, parameters, a list) and lets
 * the backend reuse their memory for later results. Any later use of a disposed array (reading
 * it, passing it to an op or to a jitted function) throws a TypeError naming the function and
 * saying the array was disposed. Disposing an array twice, or one that appears twice in `tree`,
 * is allowed (the second time does nothing), and so is disposing a donated array.
 *
 * A buffer is reused only once no array you may still hold shares it: a view made from the array
 * (reshape, slice, transpose, indexing) keeps the buffer alive until it is disposed too, and
 * arrays that do not share the buffer are never affected. Memory the backend did not hand out
 * (arrays made from your own typed arrays) is never reused: for those, dispose only deletes.
 * A typed array taken from `x.data` (or the `x.nd` view) is the buffer itself: do not keep it
 * past `dispose(x)` (`x.toTyped()` is a copy).
 *
 * @example
 * const perExample = jit(vmap(grad(loss), { inAxes: [null, 0, 0] }));
 * let g = perExample(params, xs, ys);
 * for (const [x, y] of batches) {
 *   dispose(g); // the next call writes its gradients into this memory
 *   g = perExample(params, x, y);
 * }
 */
export function dispose(tree: unknown): void {
  const [leaves] = treeFlatten(tree);
  const marked = new Set<NDArray>();
  const freed: NDArray[] = [];
  for (const x of leaves) {
    if (x instanceof Tracer)
      throw new TypeError(
        `dispose: expected concrete arrays, got a traced ${x.dtype}[${x.shape.join(', ')}] value; ` +
          'dispose frees memory of arrays outside jit/grad/vmap/scan (call it on the results, not inside the traced function)',
      );
    if (!(x instanceof NDArray)) throw new TypeError(`dispose: expected arrays (NDArray), got ${x.constructor.name}`);
    if (x.isDeleted || marked.has(x)) continue;
    marked.add(x);
    if (dropHold(x)) freed.push(x);
  }
  // The backends read the arrays' buffers, so they are marked deleted only afterwards.
  try {
    if (freed.length > 0) for (const b of registeredBackends()) b.release?.(freed);
  } finally {
    for (const x of marked) x.markDisposed();
  }
}
