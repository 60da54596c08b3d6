/** Control flow and custom differentiation: scan and customVjp, over pytrees. */
import { fmtShape, ShapeError, shapesEqual } from './shape.js';
import { Tensor } from './tensor.js';
import { avalOf, bind, constsAsArgs, traceToJaxpr } from './trace.js';
import { zerosLike } from './ops.js';
import { treeDefString, treeDefsEqual, treeFlatten, treeUnflatten, TreeStructureError, type Tree, type TreeDef } from './tree.js';

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
    const argAvals = leaves.map(avalOf);
    // f, fwd and bwd are all traced now, into jaxprs whose closed-over values become inputs of
    // the call: the call can then be re-evaluated later (a scan's VJP does) without holding on
    // to tracers of the trace it was made in.
    let outDef: TreeDef | null = null;
    const fun = traceToJaxpr((xs) => {
      const [o, d] = treeFlatten(f(...(treeUnflatten(inDef, xs) as A)));
      outDef = d;
      return o;
    }, argAvals);
    let resDef: TreeDef | null = null;
    let numOuts = 0;
    const fwdJ = traceToJaxpr((xs) => {
      const res = fwd(...(treeUnflatten(inDef, xs) as A));
      if (!Array.isArray(res) || res.length !== 2) throw new TypeError(`customVjp(${name}): fwd must return [output, residuals]`);
      const [o, d] = treeFlatten(res[0]);
      if (!treeDefsEqual(d, outDef!)) throw new TreeStructureError(`customVjp(${name}): fwd output structure ${treeDefString(d)} differs from f's ${treeDefString(outDef!)}`);
      const [r, rd] = treeFlatten(res[1]);
      resDef = rd;
      numOuts = o.length;
      return [...o, ...r];
    }, argAvals);
    const resAvals = fwdJ.jaxpr.outvars.slice(numOuts).map((v) => v.aval);
    const outAvals = fun.jaxpr.outvars.map((v) => v.aval);
    const bwdJ = traceToJaxpr((xs) => {
      const residuals = treeUnflatten(resDef!, xs.slice(0, resAvals.length)) as R;
      const cts = treeUnflatten(outDef!, xs.slice(resAvals.length)) as O;
      const r = bwd(residuals, cts);
      if (!Array.isArray(r) || r.length !== args.length) throw new TreeStructureError(`customVjp(${name}): bwd must return an array of ${args.length} cotangent(s), got ${Array.isArray(r) ? r.length : typeof r}`);
      const out: Tensor[] = [];
      r.forEach((ct, i) => {
        const [argLeaves, argDef] = treeFlatten(args[i]);
        if (ct === null || ct === undefined) {
          for (const l of argLeaves) out.push(zerosLike(l));
          return;
        }
        const [ctLeaves, ctDef] = treeFlatten(ct);
        if (!treeDefsEqual(ctDef, argDef)) throw new TreeStructureError(`customVjp(${name}): cotangent ${i} has structure ${treeDefString(ctDef)}, argument has ${treeDefString(argDef)}`);
        ctLeaves.forEach((c, j) => {
          if (!shapesEqual(c.shape, argLeaves[j].shape)) throw new ShapeError(`customVjp(${name}): bwd returned a cotangent of shape ${fmtShape(c.shape)} for an argument of shape ${fmtShape(argLeaves[j].shape)}`);
        });
        out.push(...ctLeaves);
      });
      return out;
    }, [...resAvals, ...outAvals]);
    const outs = bind('custom_vjp_call', [...fun.consts, ...fwdJ.consts, ...bwdJ.consts, ...leaves], {
      fun: constsAsArgs(fun.jaxpr),
      fwd: constsAsArgs(fwdJ.jaxpr),
      bwd: constsAsArgs(bwdJ.jaxpr),
      numFunConsts: fun.consts.length,
      numFwdConsts: fwdJ.consts.length,
      numBwdConsts: bwdJ.consts.length,
      name,
    });
    return treeUnflatten(outDef!, outs) as O;
  };
}
