/** Control flow and custom differentiation: scan and customVjp, over pytrees. */
import { fmtShape, ShapeError, shapesEqual } from './shape.js';
import { Tensor } from './tensor.js';
import { avalOf, bind, constsAsArgs, traceToJaxpr } from './trace.js';
import { add, cast, less, notEqual, zerosLike } from './ops.js';
import { arange, scalar } from './ndarray.js';
import type { Aval, Jaxpr } from './ir.js';
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
export function scan<C extends Tree, X extends Tree, Y extends Tree>(
  f: (carry: C, x: X) => [C, Y],
  init: C,
  xs: X | null,
  opts: ScanOptions = {},
): [C, Y] {
  const [carryLeaves, carryDef] = treeFlatten(init);
  const [xLeaves, xDef] = treeFlatten(xs);
  let length = opts.length;
  for (const [i, x] of xLeaves.entries()) {
    if (x.ndim === 0) throw new ShapeError(`scan: xs leaf ${i} is a scalar; every xs leaf needs a leading axis to scan over`);
    if (length === undefined) length = x.shape[0];
    else if (x.shape[0] !== length)
      throw new ShapeError(`scan: xs leaf ${i} has shape ${fmtShape(x.shape)}, expected leading axis ${length}`);
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
    if (!treeDefsEqual(c2Def, carryDef))
      throw new TreeStructureError(`scan: f returned a carry with structure ${treeDefString(c2Def)}, expected ${treeDefString(carryDef)}`);
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
export function customVjp<A extends Tree[], O extends Tree, R>(
  f: (...args: A) => O,
  fwd: (...args: A) => [O, R],
  bwd: (residuals: R, ct: O) => (Tree | null)[],
): (...args: A) => O {
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
      if (!treeDefsEqual(d, outDef!))
        throw new TreeStructureError(
          `customVjp(${name}): fwd output structure ${treeDefString(d)} differs from f's ${treeDefString(outDef!)}`,
        );
      const [r, rd] = treeFlatten(res[1]);
      resDef = rd;
      numOuts = o.length;
      return [...o, ...r];
    }, argAvals);
    const resAvals = fwdJ.jaxpr.outvars.slice(numOuts).map((v) => v.aval);
    const outAvals = fun.jaxpr.outvars.map((v) => v.aval);
    const bwdJ = traceToJaxpr(
      (xs) => {
        const residuals = treeUnflatten(resDef!, xs.slice(0, resAvals.length)) as R;
        const cts = treeUnflatten(outDef!, xs.slice(resAvals.length)) as O;
        const r = bwd(residuals, cts);
        if (!Array.isArray(r) || r.length !== args.length)
          throw new TreeStructureError(
            `customVjp(${name}): bwd must return an array of ${args.length} cotangent(s), got ${Array.isArray(r) ? r.length : typeof r}`,
          );
        const out: Tensor[] = [];
        r.forEach((ct, i) => {
          const [argLeaves, argDef] = treeFlatten(args[i]);
          if (ct === null || ct === undefined) {
            for (const l of argLeaves) out.push(zerosLike(l));
            return;
          }
          const [ctLeaves, ctDef] = treeFlatten(ct);
          if (!treeDefsEqual(ctDef, argDef))
            throw new TreeStructureError(
              `customVjp(${name}): cotangent ${i} has structure ${treeDefString(ctDef)}, argument has ${treeDefString(argDef)}`,
            );
          ctLeaves.forEach((c, j) => {
            if (!shapesEqual(c.shape, argLeaves[j].shape))
              throw new ShapeError(
                `customVjp(${name}): bwd returned a cotangent of shape ${fmtShape(c.shape)} for an argument of shape ${fmtShape(argLeaves[j].shape)}`,
              );
          });
          out.push(...ctLeaves);
        });
        return out;
      },
      [...resAvals, ...outAvals],
    );
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

/** Traces `fn` on the leaves' avals; returns the jaxpr (constants as leading args), constants and output structure. */
function traceBranch(
  name: string,
  fn: (...args: Tensor[]) => unknown,
  avals: readonly Aval[],
): { jaxpr: Jaxpr; consts: readonly Tensor[]; outDef: TreeDef } {
  let outDef: TreeDef | null = null;
  const closed = traceToJaxpr((xs) => {
    const [outs, d] = treeFlatten(fn(...xs));
    outDef = d;
    return outs;
  }, avals);
  if (outDef === null) throw new TypeError(`${name}: the function returned nothing`);
  return { jaxpr: constsAsArgs(closed.jaxpr), consts: closed.consts, outDef };
}

const avalsText = (j: Jaxpr): string => j.outvars.map((v) => `${v.aval.dtype}${fmtShape(v.aval.shape)}`).join(', ');

function scalarPredicate(name: string, pred: Tensor): Tensor {
  if (pred.ndim !== 0) throw new ShapeError(`${name}: the predicate must be a scalar, got shape ${fmtShape(pred.shape)}`);
  return pred.dtype === 'bool' ? pred : notEqual(pred, 0);
}

/**
 * Calls `trueFn(...operands)` when `pred` is true, else `falseFn(...operands)`, as JAX's lax.cond:
 * under jit both branches are compiled and the choice is made at run time. Both branches must
 * return the same structure, shapes and dtypes. Differentiable (the gradient flows through the
 * branch taken); under vmap with a batched predicate both branches run and each member takes its own.
 *
 * @example
 * const y = cond(greater(sum(x), 0), (v) => mul(v, 2), (v) => neg(v), x);
 */
export function cond<A extends Tree[], O extends Tree>(
  pred: Tensor | boolean,
  trueFn: (...operands: A) => O,
  falseFn: (...operands: A) => O,
  ...operands: A
): O {
  if (typeof pred === 'boolean') return pred ? trueFn(...operands) : falseFn(...operands);
  const p = scalarPredicate('cond', pred);
  const [leaves, def] = treeFlatten(operands);
  const avals = leaves.map(avalOf);
  const t = traceBranch('cond', (...xs) => trueFn(...(treeUnflatten(def, xs) as A)), avals);
  const f = traceBranch('cond', (...xs) => falseFn(...(treeUnflatten(def, xs) as A)), avals);
  if (!treeDefsEqual(t.outDef, f.outDef))
    throw new TreeStructureError(
      `cond: the branches return different structures: ${treeDefString(t.outDef)} vs ${treeDefString(f.outDef)}`,
    );
  const same = t.jaxpr.outvars.every(
    (v, i) => v.aval.dtype === f.jaxpr.outvars[i].aval.dtype && shapesEqual(v.aval.shape, f.jaxpr.outvars[i].aval.shape),
  );
  if (!same) throw new ShapeError(`cond: the branches return different shapes or dtypes: ${avalsText(t.jaxpr)} vs ${avalsText(f.jaxpr)}`);
  const outs = bind('cond', [p, ...t.consts, ...f.consts, ...leaves], {
    whenTrue: t.jaxpr,
    whenFalse: f.jaxpr,
    numTrueConsts: t.consts.length,
    numFalseConsts: f.consts.length,
  });
  return treeUnflatten(t.outDef, outs) as O;
}

/**
 * Repeats `carry = bodyFn(carry)` while `condFn(carry)` is true and returns the last carry, as
 * JAX's lax.while_loop: the number of iterations is decided at run time, also under jit. The body
 * must keep the carry's structure, shapes and dtypes. Not differentiable in reverse mode (use
 * foriLoop with static bounds or scan for that).
 *
 * @example
 * whileLoop((c) => less(c, 100), (c) => mul(c, 2), scalar(1)); // 128
 */
export function whileLoop<C extends Tree>(condFn: (carry: C) => Tensor, bodyFn: (carry: C) => C, init: C): C {
  const [leaves, def] = treeFlatten(init);
  const avals = leaves.map(avalOf);
  const c = traceBranch(
    'whileLoop',
    (...xs) => {
      const r = condFn(treeUnflatten(def, xs) as C);
      if (!(r instanceof Tensor)) throw new TypeError(`whileLoop: condFn must return a scalar tensor, got ${typeof r}`);
      return scalarPredicate('whileLoop', r);
    },
    avals,
  );
  const b = traceBranch('whileLoop', (...xs) => bodyFn(treeUnflatten(def, xs) as C), avals);
  if (!treeDefsEqual(b.outDef, def))
    throw new TreeStructureError(
      `whileLoop: bodyFn returned a carry with structure ${treeDefString(b.outDef)}, expected ${treeDefString(def)}`,
    );
  b.jaxpr.outvars.forEach((v, i) => {
    if (v.aval.dtype !== avals[i].dtype || !shapesEqual(v.aval.shape, avals[i].shape)) {
      throw new ShapeError(
        `whileLoop: bodyFn returns carry leaf ${i} as ${v.aval.dtype}${fmtShape(v.aval.shape)} but it came in as ${avals[i].dtype}${fmtShape(avals[i].shape)}; the carry must keep its shape and dtype`,
      );
    }
  });
  const outs = bind('while_loop', [...c.consts, ...b.consts, ...leaves], {
    cond: c.jaxpr,
    body: b.jaxpr,
    numCondConsts: c.consts.length,
    numBodyConsts: b.consts.length,
  });
  return treeUnflatten(def, outs) as C;
}

/**
 * `carry = body(i, carry)` for i from `lower` to `upper - 1`, as JAX's lax.fori_loop. With number
 * bounds it is a scan over i (traced once, differentiable in reverse mode); with tensor bounds a
 * whileLoop (not differentiable in reverse mode). `i` is an int32 scalar.
 *
 * @example
 * foriLoop(0, 5, (i, acc) => add(acc, cast(i, 'float32')), scalar(0)); // 0 + 1 + 2 + 3 + 4 = 10
 */
export function foriLoop<C extends Tree>(lower: number | Tensor, upper: number | Tensor, body: (i: Tensor, carry: C) => C, init: C): C {
  if (typeof lower === 'number' && typeof upper === 'number') {
    if (!Number.isInteger(lower) || !Number.isInteger(upper))
      throw new RangeError(`foriLoop: bounds must be integers, got ${lower} and ${upper}`);
    if (upper <= lower) return init;
    const [out] = scan((c: C, i: Tensor): [C, null] => [body(i, c), null], init, arange(lower, upper));
    return out;
  }
  const lo = typeof lower === 'number' ? scalar(lower, 'int32') : cast(lower, 'int32');
  const hi = typeof upper === 'number' ? scalar(upper, 'int32') : cast(upper, 'int32');
  const [, out] = whileLoop(
    ([i]: [Tensor, C]) => less(i, hi),
    ([i, c]: [Tensor, C]): [Tensor, C] => [add(i, 1), body(i, c)],
    [lo, init] as [Tensor, C],
  );
  return out;
}
