/** Control flow and custom differentiation: scan and customVjp, over pytrees. */
import { fmtShape, ShapeError } from './shape.js';
import { Tensor } from './tensor.js';
import { avalOf, bind, constsAsArgs, traceToJaxpr } from './trace.js';
import { numLeaves, treeDefString, treeDefsEqual, treeFlatten, treeUnflatten, TreeStructureError, type Tree, type TreeDef } from './tree.js';
import type { FlatBwd, FlatFwd } from './primitives.js';

export interface ScanOptions {
  /** Iterate from the last element of xs to the first (ys stay in xs order). */
  reverse?: boolean;
  /** Number of steps; required when xs is null. */
  length?: number;
}

/**
 * Loops `f(carry, x) -> [carry, y]` over the leading axis of `xs`, like JAX's lax.scan: returns
 * the final carry and the ys stacked along a new leading axis. Traced once; differentiable in
 * reverse mode (the gradient runs a reverse scan).
 *
 * @example
 * const [total, partial] = scan((c, x) => [add(c, x), add(c, x)], scalar(0), array([1, 2, 3]));
 * // total = 6, partial = [1, 3, 6]
 */
export function scan<C extends Tree, X extends Tree, Y extends Tree>(f: (carry: C, x: X) => [C, Y], init: C, xs: X | null, opts: ScanOptions = {}): [C, Y] {
  const [carryLeaves, carryDef] = treeFlatten(init);
  const [xLeaves, xDef] = treeFlatten(xs);
  let length = opts.length;
  for (const [i, x] of xLeaves.entries()) {
    if (x.ndim === 0) throw new ShapeError(`scan: xs leaf ${i} is a scalar; every xs leaf needs a leading axis to scan over`);
    if (length === undefined) length = x.shape[0];
    else if (x.shape[0] !== length) throw new ShapeError(`scan: xs leaf ${i} has shape ${fmtShape(x.shape)}, expected leading axis ${length}`);
  }
  if (length === undefined) throw new ShapeError('scan: give opts.length when xs is null or has no leaves');
  let yDef: TreeDef | null = null;
  const stepAvals = [...carryLeaves.map(avalOf), ...xLeaves.map((x) => ({ shape: x.shape.slice(1), dtype: x.dtype }))];
  const closed = traceToJaxpr((args) => {
    const c = treeUnflatten(carryDef, args.slice(0, carryLeaves.length)) as C;
    const x = treeUnflatten(xDef, args.slice(carryLeaves.length)) as X;
    const res = f(c, x);
    if (!Array.isArray(res) || res.length !== 2) throw new TypeError('scan: f must return [carry, y]');
    const [c2, c2Def] = treeFlatten(res[0]);
    if (!treeDefsEqual(c2Def, carryDef)) throw new TreeStructureError(`scan: f returned a carry with structure ${treeDefString(c2Def)}, expected ${treeDefString(carryDef)}`);
    const [ys, d] = treeFlatten(res[1]);
    yDef = d;
    return [...c2, ...ys];
  }, stepAvals);
  const outs = bind('scan', [...closed.consts, ...carryLeaves, ...xLeaves], {
    body: constsAsArgs(closed.jaxpr),
    numConsts: closed.consts.length,
    numCarry: carryLeaves.length,
    length,
    reverse: opts.reverse ?? false,
  });
  return [treeUnflatten(carryDef, outs.slice(0, carryLeaves.length)) as C, treeUnflatten(yDef!, outs.slice(carryLeaves.length)) as Y];
}

/**
 * A function with a user-defined VJP, as JAX's custom_vjp: `fwd(...args)` returns
 * `[output, residuals]` and `bwd(residuals, outputCotangent)` returns one cotangent per argument
 * (a pytree like the argument, or null for none). Values `f` closes over get no gradient.
 *
 * @example
 * // Spikes forward, the straight-through derivative of relu backward.
 * const spike = customVjp(
 *   (x: Tensor) => floor(x),
 *   (x: Tensor) => [floor(x), x],
 *   (x, ct) => [mul(ct, cast(greater(x, 0), 'float32'))],
 * );
 */
export function customVjp<A extends Tree[], O extends Tree, R>(f: (...args: A) => O, fwd: (...args: A) => [O, R], bwd: (residuals: R, ct: O) => (Tree | null)[]): (...args: A) => O {
  const name = f.name || 'anonymous';
  return (...args: A): O => {
    const [leaves, inDef] = treeFlatten(args);
    let outDef: TreeDef | null = null;
    const closed = traceToJaxpr((xs) => {
      const [o, d] = treeFlatten(f(...(treeUnflatten(inDef, xs) as A)));
      outDef = d;
      return o;
    }, leaves.map(avalOf));
    const flatFwd: FlatFwd = (xs) => {
      const res = fwd(...(treeUnflatten(inDef, xs) as A));
      if (!Array.isArray(res) || res.length !== 2) throw new TypeError(`customVjp(${name}): fwd must return [output, residuals]`);
      const [o, d] = treeFlatten(res[0]);
      if (!treeDefsEqual(d, outDef!)) throw new TreeStructureError(`customVjp(${name}): fwd output structure ${treeDefString(d)} differs from f's ${treeDefString(outDef!)}`);
      return { outs: o, residuals: res[1] };
    };
    const flatBwd: FlatBwd = (residuals, cts) => {
      const r = bwd(residuals as R, treeUnflatten(outDef!, cts) as O);
      if (!Array.isArray(r) || r.length !== args.length) throw new TreeStructureError(`customVjp(${name}): bwd must return an array of ${args.length} cotangent(s), got ${Array.isArray(r) ? r.length : typeof r}`);
      const out: (Tensor | null)[] = [];
      r.forEach((ct, i) => {
        const [argLeaves, argDef] = treeFlatten(args[i]);
        if (ct === null || ct === undefined) {
          for (let k = 0; k < argLeaves.length; k++) out.push(null);
          return;
        }
        const [ctLeaves, ctDef] = treeFlatten(ct);
        if (!treeDefsEqual(ctDef, argDef)) throw new TreeStructureError(`customVjp(${name}): cotangent ${i} has structure ${treeDefString(ctDef)}, argument has ${treeDefString(argDef)}`);
        out.push(...ctLeaves);
      });
      void numLeaves;
      return out;
    };
    const outs = bind('custom_vjp_call', [...closed.consts, ...leaves], { fun: closed.jaxpr, numConsts: closed.consts.length, fwd: flatFwd, bwd: flatBwd, name });
    return treeUnflatten(outDef!, outs) as O;
  };
}
