/**
 * Reverse-mode AD: the VJP trace (a tape over primals), the VJP rule table, and the public
 * transformations vjp / grad / valueAndGrad / jvp.
 */
import { isFloat } from './dtype.js';
import type { Aval } from './ir.js';
import { convInputGrad, convKernelGrad } from './conv.js';
import * as ops from './ops.js';
import { type PrimParams, type Primitive } from './primitives.js';
import { fmtShape, ShapeError, shapesEqual } from './shape.js';
import { Tensor } from './tensor.js';
import { avalOf, bind, broadcastSourceOf, constsAsArgs, evalJaxpr, traceToJaxpr, Trace, Tracer } from './trace.js';
import {
  treeDefString,
  treeDefsEqual,
  treeFlatten,
  treeGraft,
  treeUnflatten,
  TreeStructureError,
  type Tree,
  type TreeDef,
} from './tree.js';
import type { DType } from './dtype.js';
import { arange } from './ndarray.js';
import { vmap } from './vmap.js';

/** What a VJP rule returns: the primal outputs and a backward function of their cotangents. */
export interface VjpResult {
  outs: Tensor[];
  backward: (cts: Tensor[]) => (Tensor | null)[];
}
export type VjpRule<P extends Primitive> = (primals: Tensor[], params: PrimParams[P]) => VjpResult;

class VjpTracer extends Tracer {
  constructor(
    readonly trace: VjpTrace,
    readonly primal: Tensor,
    readonly id: number,
  ) {
    super();
  }
  get shape(): readonly number[] {
    return this.primal.shape;
  }
  get dtype(): DType {
    return this.primal.dtype;
  }
  concrete() {
    return this.primal.concrete();
  }
  override broadcastSource(): { source: Tensor; axes: number[] } | null {
    if (!this.trace.alive) return null;
    const inner = broadcastSourceOf(this.primal);
    return inner === null ? null : { source: this.trace.compactOf(this, inner.source, inner.axes), axes: inner.axes };
  }
}

interface TapeNode {
  inputs: (number | null)[];
  outputs: number[];
  outAvals: Aval[];
  backward: (cts: Tensor[]) => (Tensor | null)[];
}

class VjpTrace extends Trace {
  readonly tape: TapeNode[] = [];
  private nextId = 0;

  /** For each output of a broadcast_to on a tracer of this trace, that tracer. */
  private readonly broadcastInputs = new Map<number, VjpTracer>();

  newTracer(primal: Tensor): VjpTracer {
    return new VjpTracer(this, primal, this.nextId++);
  }
  /**
   * A differentiable compact view of `x`, whose primal is a broadcast along `axes` of `source`:
   * the tracer x was broadcast from when it was (exact, and gradients flow as they did), else a
   * new one whose backward spreads its cotangent evenly over the copies, broadcast(ct) / copies.
   * That is x's true cotangent only summed over the copies, which is all the upstream broadcast's
   * own backward (a sum over the same axes) takes from it: every copy is the same function of the
   * inputs, so gradients agree (to rounding) while the backward pass stays compact as well.
   */
  compactOf(x: VjpTracer, source: Tensor, axes: readonly number[]): VjpTracer {
    const from = this.broadcastInputs.get(x.id);
    if (from !== undefined && shapesEqual(from.shape, source.shape)) return from;
    const copies = axes.reduce((n, a) => n * x.shape[a], 1);
    const compact = this.newTracer(source);
    this.tape.push({
      inputs: [x.id],
      outputs: [compact.id],
      outAvals: [avalOf(source)],
      backward: ([ct]) => [ops.div(ops.broadcastTo(ct, x.shape), copies)],
    });
    return compact;
  }
  process<P extends Primitive>(prim: P, inputs: Tensor[], params: PrimParams[P]): Tensor[] {
    const own = (x: Tensor): x is VjpTracer => x instanceof VjpTracer && x.trace === this;
    const primals = inputs.map((x) => (own(x) ? x.primal : x));
    const { outs, backward } = (vjpRules[prim] as VjpRule<P>)(primals, params);
    const tracers = outs.map((o) => this.newTracer(o));
    if (prim === 'broadcast_to' && own(inputs[0])) this.broadcastInputs.set(tracers[0].id, inputs[0]);
    this.tape.push({
      inputs: inputs.map((x) => (own(x) ? x.id : null)),
      outputs: tracers.map((t) => t.id),
      outAvals: outs.map(avalOf),
      backward,
    });
    return tracers;
  }
  /** Walks the tape backwards from the output cotangents; returns the cotangent of each id. */
  backwardPass(seeds: Map<number, Tensor>): Map<number, Tensor> {
    const cts = seeds;
    for (let n = this.tape.length - 1; n >= 0; n--) {
      const node = this.tape[n];
      let any = false;
      const outCts = node.outputs.map((id) => {
        const c = cts.get(id);
        if (c !== undefined) any = true;
        return c;
      });
      if (!any) continue;
      const filled = outCts.map((c, i) => c ?? ops.zerosLike({ shape: node.outAvals[i].shape, dtype: node.outAvals[i].dtype } as Tensor));
      for (const id of node.outputs) cts.delete(id);
      const inCts = node.backward(filled);
      node.inputs.forEach((id, i) => {
        const c = inCts[i];
        if (id === null || c === null || c === undefined) return;
        const prev = cts.get(id);
        cts.set(id, prev === undefined ? c : ops.add(prev, c));
      });
    }
    return cts;
  }
}

const zeroCt = (x: Tensor): Tensor => ops.zerosLike(x, isFloat(x.dtype) ? x.dtype : x.dtype);

// ----------------------------------------------------------------------------- rule factories

/** A rule for primitives whose backward needs only the inputs and the output. */
const simple =
  <P extends Primitive>(prim: P, back: (ct: Tensor, xs: Tensor[], y: Tensor, params: PrimParams[P]) => (Tensor | null)[]): VjpRule<P> =>
  (primals, params) => {
    const outs = bind(prim, primals, params);
    return { outs, backward: ([ct]) => back(ct, primals, outs[0], params) };
  };
const noGrad =
  <P extends Primitive>(prim: P): VjpRule<P> =>
  (primals, params) => ({ outs: bind(prim, primals, params), backward: () => primals.map(() => null) });

/** Sums a cotangent over the axes that broadcast_to expanded, back to the input shape. */
function unbroadcast(ct: Tensor, shape: readonly number[]): Tensor {
  if (shape.length === 0) return ops.sum(ct);
  const axes = shape.map((d, i) => (d === 1 && ct.shape[i] !== 1 ? i : -1)).filter((i) => i >= 0);
  return axes.length ? ops.sum(ct, axes, { keepdims: true }) : ct;
}

// ----------------------------------------------------------------------------- the rule table

export const vjpRules: { [P in Primitive]: VjpRule<P> } = {
  neg: simple('neg', (ct) => [ops.neg(ct)]), // d(-x) = -dx
  exp: simple('exp', (ct, _x, y) => [ops.mul(ct, y)]), // d e^x = e^x dx
  log: simple('log', (ct, [x]) => [ops.div(ct, x)]), // d log x = dx / x
  log1p: simple('log1p', (ct, [x]) => [ops.div(ct, ops.add(x, 1))]), // d log(1 + x) = dx / (1 + x)
  sqrt: simple('sqrt', (ct, _x, y) => [ops.div(ct, ops.mul(y, 2))]), // d sqrt x = dx / (2 sqrt x)
  tanh: simple('tanh', (ct, _x, y) => [ops.mul(ct, ops.sub(1, ops.mul(y, y)))]), // d tanh x = (1 - tanh^2 x) dx
  logistic: simple('logistic', (ct, _x, y) => [ops.mul(ct, ops.mul(y, ops.sub(1, y)))]), // d s(x) = s (1 - s) dx
  abs: simple('abs', (ct, [x]) => [ops.mul(ct, ops.sign(x))]), // d|x| = sign(x) dx
  sign: noGrad('sign'),
  floor: noGrad('floor'),
  add: simple('add', (ct) => [ct, ct]),
  sub: simple('sub', (ct) => [ct, ops.neg(ct)]),
  mul: simple('mul', (ct, [a, b]) => [ops.mul(ct, b), ops.mul(ct, a)]), // d(ab) = b da + a db
  div: simple('div', (ct, [a, b]) => [ops.div(ct, b), ops.neg(ops.div(ops.mul(ct, a), ops.mul(b, b)))]), // d(a/b) = da/b - a db/b^2
  // Ties split the cotangent evenly, as JAX does.
  max: simple('max', (ct, [a, b]) => {
    const share = ops.add(ops.cast(ops.greater(a, b), ct.dtype), ops.mul(ops.cast(ops.equal(a, b), ct.dtype), 0.5));
    return [ops.mul(ct, share), ops.mul(ct, ops.sub(1, share))];
  }),
  min: simple('min', (ct, [a, b]) => {
    const share = ops.add(ops.cast(ops.less(a, b), ct.dtype), ops.mul(ops.cast(ops.equal(a, b), ct.dtype), 0.5));
    return [ops.mul(ct, share), ops.mul(ct, ops.sub(1, share))];
  }),
  // d a^b = b a^(b-1) da + log(a) a^b db (the db term taken as 0 where a <= 0)
  pow: simple('pow', (ct, [a, b], y) => [
    ops.mul(ct, ops.mul(b, ops.pow(a, ops.sub(b, 1)))),
    ops.mul(ct, ops.where(ops.greater(a, 0), ops.mul(ops.log(ops.where(ops.greater(a, 0), a, 1)), y), 0)),
  ]),
  lt: noGrad('lt'),
  le: noGrad('le'),
  gt: noGrad('gt'),
  ge: noGrad('ge'),
  eq: noGrad('eq'),
  ne: noGrad('ne'),
  where: simple('where', (ct, [c]) => [null, ops.where(c, ct, 0), ops.where(c, 0, ct)]),
  cast: simple('cast', (ct, [x]) => [isFloat(x.dtype) && isFloat(ct.dtype) ? ops.cast(ct, x.dtype) : null]),
  stop_gradient: noGrad('stop_gradient'),
  reduce_sum: simple('reduce_sum', (ct, [x], _y, { axes }) => [
    ops.broadcastTo(
      ops.reshape(
        ct,
        x.shape.map((d, i) => (axes.includes(i) ? 1 : d)),
      ),
      x.shape,
    ),
  ]),
  // The cotangent goes to the extremal entries, shared evenly among ties.
  reduce_max: simple('reduce_max', (ct, [x], y, { axes }) => [extremumCt(ct, x, y, axes)]),
  reduce_min: simple('reduce_min', (ct, [x], y, { axes }) => [extremumCt(ct, x, y, axes)]),
  argmax: noGrad('argmax'),
  reshape: simple('reshape', (ct, [x]) => [ops.reshape(ct, x.shape)]),
  transpose: simple('transpose', (ct, _x, _y, { perm }) => {
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [ops.transpose(ct, inv)];
  }),
  broadcast_to: simple('broadcast_to', (ct, [x]) => [unbroadcast(ct, x.shape)]),
  slice: simple('slice', (ct, [x], _y, { starts, limits }) => [
    ops.pad(
      ct,
      starts,
      x.shape.map((d, i) => d - limits[i]),
    ),
  ]),
  pad: simple('pad', (ct, [x], _y, { low }) => [ops.slice(ct, low, x.shape)]),
  concatenate: simple('concatenate', (ct, xs, _y, { axis }) => {
    let at = 0;
    return xs.map((x) => {
      const part = ops.slice(
        ct,
        x.shape.map((_, i) => (i === axis ? at : 0)),
        x.shape,
      );
      at += x.shape[axis];
      return part;
    });
  }),
  // d(AB) = dA B + A dB  =>  ct_A = ct B^T, ct_B = A^T ct
  matmul: simple('matmul', (ct, [a, b]) => [
    bind('matmul', [ct, ops.matrixTranspose(b)], {})[0],
    bind('matmul', [ops.matrixTranspose(a), ct], {})[0],
  ]),
  // Both cotangents are convolutions (core/conv.ts), so they differentiate again.
  conv: simple('conv', (ct, [x, w], _y, p) => [convInputGrad(ct, x.shape, w, p), convKernelGrad(ct, x, w.shape, p)]),
  take_along_axis: simple('take_along_axis', (ct, [x, idx], _y, { axis }) => [
    bind('scatter_add_along_axis', [ct, idx], { axis, shape: x.shape.slice() })[0],
    null,
  ]),
  scatter_add_along_axis: simple('scatter_add_along_axis', (ct, [, idx], _y, { axis }) => [
    bind('take_along_axis', [ct, idx], { axis })[0],
    null,
  ]),
  argsort: noGrad('argsort'),
  random_bits: noGrad('random_bits'),
  random_split: noGrad('random_split'),
  random_fold_in: noGrad('random_fold_in'),
  random_uniform: noGrad('random_uniform'),
  random_normal: noGrad('random_normal'),
  random_randint: noGrad('random_randint'),
  random_permutation: noGrad('random_permutation'),
  // Forward through the user's fwd (outputs and residuals); backward through the user's bwd.
  custom_vjp_call: (primals, { fwd, bwd, numFunConsts, numFwdConsts, numBwdConsts, fun }) => {
    const fwdConsts = primals.slice(numFunConsts, numFunConsts + numFwdConsts);
    const bwdConsts = primals.slice(numFunConsts + numFwdConsts, numFunConsts + numFwdConsts + numBwdConsts);
    const args = primals.slice(numFunConsts + numFwdConsts + numBwdConsts);
    const res = evalJaxpr(fwd, [], [...fwdConsts, ...args]);
    const nOut = fun.outvars.length;
    const outs = res.slice(0, nOut);
    const residuals = res.slice(nOut);
    return {
      outs,
      backward: (cts) => [
        ...primals.slice(0, numFunConsts + numFwdConsts + numBwdConsts).map(() => null),
        ...evalJaxpr(bwd, [], [...bwdConsts, ...residuals, ...cts]),
      ],
    };
  },
  scan: (primals, params) => scanVjp(primals, params),
  cond: (primals, params) => condVjp(primals, params),
  while_loop: (primals, params) => ({
    outs: bind('while_loop', primals, params),
    backward: () => {
      throw new TypeError(
        'whileLoop: reverse-mode differentiation is not supported (the number of iterations is only known at run time); use foriLoop with static bounds or scan',
      );
    },
  }),
};

/**
 * VJP of cond: the forward pass is the cond itself; the backward pass is another cond whose
 * branches recompute the taken branch's VJP from the operands (so both branches return the same
 * cotangent avals, and the backward pass is differentiable again).
 */
function condVjp(primals: Tensor[], params: PrimParams['cond']): VjpResult {
  const { whenTrue, whenFalse, numTrueConsts, numFalseConsts } = params;
  const outs = bind('cond', primals, params);
  return {
    outs,
    backward: (cts) => {
      const rest = primals.slice(1);
      const branchBackward = (branch: typeof whenTrue, taken: boolean) =>
        traceToJaxpr(
          (args) => {
            const ins = args.slice(0, rest.length);
            const c = args.slice(rest.length);
            const [, back] = vjpFlat((xs) => {
              const consts = taken ? xs.slice(0, numTrueConsts) : xs.slice(numTrueConsts, numTrueConsts + numFalseConsts);
              return evalJaxpr(branch, [], [...consts, ...xs.slice(numTrueConsts + numFalseConsts)]);
            }, ins);
            return back(c);
          },
          [...rest.map(avalOf), ...cts.map(avalOf)],
        );
      const t = branchBackward(whenTrue, true);
      const f = branchBackward(whenFalse, false);
      const inCts = bind('cond', [primals[0], ...t.consts, ...f.consts, ...rest, ...cts], {
        whenTrue: constsAsArgs(t.jaxpr),
        whenFalse: constsAsArgs(f.jaxpr),
        numTrueConsts: t.consts.length,
        numFalseConsts: f.consts.length,
      });
      return [null, ...inCts];
    },
  };
}

function extremumCt(ct: Tensor, x: Tensor, y: Tensor, axes: number[]): Tensor {
  const keep = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const yb = ops.broadcastTo(ops.reshape(y, keep), x.shape);
  const mask = ops.cast(ops.equal(x, yb), ct.dtype);
  const count = ops.sum(mask, axes, { keepdims: true });
  return ops.mul(ops.div(mask, count), ops.broadcastTo(ops.reshape(ct, keep), x.shape));
}

/**
 * VJP of scan: a forward scan that also stacks the carry entering each step, then a reverse scan
 * whose body is the VJP of the forward body, accumulating the constants' cotangents in its carry.
 */
function scanVjp(primals: Tensor[], { body, numConsts, numCarry, length, reverse }: PrimParams['scan']): VjpResult {
  const consts = primals.slice(0, numConsts);
  const init = primals.slice(numConsts, numConsts + numCarry);
  const xs = primals.slice(numConsts + numCarry);
  const numYs = body.outvars.length - numCarry;
  const stepAvals = [...consts.map(avalOf), ...init.map(avalOf), ...xs.map((x) => ({ shape: x.shape.slice(1), dtype: x.dtype }))];
  const withCarries = traceToJaxpr((args) => {
    const outs = evalJaxpr(body, [], args);
    return [...outs, ...args.slice(numConsts, numConsts + numCarry)];
  }, stepAvals);
  const fwdOuts = bind('scan', [...withCarries.consts, ...primals], {
    body: constsAsArgs(withCarries.jaxpr),
    numConsts: numConsts + withCarries.consts.length,
    numCarry,
    length,
    reverse,
  });
  const outs = fwdOuts.slice(0, numCarry + numYs);
  const carries = fwdOuts.slice(numCarry + numYs);
  return {
    outs,
    backward: (cts) => {
      const ctCarry = cts.slice(0, numCarry);
      const ctYs = cts.slice(numCarry);
      const ctCarryAvals = ctCarry.map(avalOf);
      const accAvals = consts.map(avalOf);
      const bwdAvals = [
        ...accAvals,
        ...ctCarryAvals,
        ...accAvals,
        ...init.map(avalOf),
        ...xs.map((x) => ({ shape: x.shape.slice(1), dtype: x.dtype })),
        ...ctYs.map((c) => ({ shape: c.shape.slice(1), dtype: c.dtype })),
      ];
      const bwd = traceToJaxpr((args) => {
        let k = 0;
        const cs = args.slice(k, (k += numConsts));
        const ctC = args.slice(k, (k += numCarry));
        const acc = args.slice(k, (k += numConsts));
        const carryT = args.slice(k, (k += numCarry));
        const xT = args.slice(k, (k += xs.length));
        const ctY = args.slice(k);
        const [, back] = vjpFlat((ins) => evalJaxpr(body, [], ins), [...cs, ...carryT, ...xT]);
        const inCts = back([...ctC, ...ctY]);
        const newAcc = acc.map((a, i) => ops.add(a, inCts[i]));
        return [...inCts.slice(numConsts, numConsts + numCarry), ...newAcc, ...inCts.slice(numConsts + numCarry)];
      }, bwdAvals);
      const zeroAcc = consts.map(zeroCt);
      const res = bind('scan', [...bwd.consts, ...consts, ...ctCarry, ...zeroAcc, ...carries, ...xs, ...ctYs], {
        body: constsAsArgs(bwd.jaxpr),
        numConsts: bwd.consts.length + numConsts,
        numCarry: numCarry + numConsts,
        length,
        reverse: !reverse,
      });
      const ctInit = res.slice(0, numCarry);
      const ctConsts = res.slice(numCarry, numCarry + numConsts);
      const ctXs = res.slice(numCarry + numConsts);
      return [...ctConsts, ...ctInit, ...ctXs];
    },
  };
}

// ----------------------------------------------------------------------------- transformations

/**
 * VJP over flat lists: runs fn on tracers of a new VJP trace; returns the primal outputs and a
 * function from output cotangents to input cotangents (zeros where an input does not matter).
 */
export function vjpFlat(fn: (xs: Tensor[]) => Tensor[], primals: Tensor[]): [Tensor[], (cts: Tensor[]) => Tensor[], (x: Tensor) => Tensor] {
  const trace = new VjpTrace();
  let outs: Tensor[];
  const ins = primals.map((p) => trace.newTracer(p));
  try {
    outs = fn(ins);
  } finally {
    trace.alive = false;
  }
  const isOwn = (x: Tensor): x is VjpTracer => x instanceof VjpTracer && x.trace === trace;
  const primalOuts = outs.map((o) => (isOwn(o) ? o.primal : o));
  const back = (cts: Tensor[]): Tensor[] => {
    if (cts.length !== outs.length) throw new TreeStructureError(`vjp: ${cts.length} cotangents for ${outs.length} outputs`);
    const seeds = new Map<number, Tensor>();
    outs.forEach((o, i) => {
      if (!shapesEqual(cts[i].shape, o.shape))
        throw new ShapeError(`vjp: cotangent ${i} has shape ${fmtShape(cts[i].shape)}, expected the output's shape ${fmtShape(o.shape)}`);
      if (isOwn(o)) {
        const prev = seeds.get(o.id);
        seeds.set(o.id, prev === undefined ? cts[i] : ops.add(prev, cts[i]));
      }
    });
    const result = trace.backwardPass(seeds);
    return ins.map((t, i) => result.get(t.id) ?? zeroCt(primals[i]));
  };
  // Values computed under the trace but returned some other way (aux outputs) leave as primals.
  const unwrap = (x: Tensor): Tensor => (isOwn(x) ? x.primal : x);
  return [primalOuts, back, unwrap];
}

/**
 * The VJP of `f` at `primals` (pytrees): returns f's output and a function mapping an output
 * cotangent (same structure) to the cotangents of each argument.
 *
 * @example
 * const [y, back] = vjp((x) => mul(x, x), array([3]));
 * back(array([1])); // [[6]]
 */
export function vjp<A extends Tree[], Out extends Tree>(f: (...args: A) => Out, ...primals: A): [Out, (ct: Out) => Tree[]] {
  const [leaves, inDef] = treeFlatten(primals);
  let outDef = treeFlatten(null)[1];
  const [outs, back] = vjpFlat((xs) => {
    const args = treeUnflatten(inDef, xs) as A;
    const [o, d] = treeFlatten(f(...args));
    outDef = d;
    return o;
  }, leaves);
  const out = treeUnflatten(outDef, outs) as Out;
  return [
    out,
    (ct: Out) => {
      const [cts, ctDef] = treeFlatten(ct);
      if (!treeDefsEqual(ctDef, outDef))
        throw new TreeStructureError(
          `vjp: cotangent structure ${treeDefString(ctDef)} does not match the output structure ${treeDefString(outDef)}`,
        );
      return treeUnflatten(inDef, back(cts)) as Tree[];
    },
  ];
}

export interface GradOptions {
  /** Which positional arguments to differentiate (default 0). */
  argnums?: number | readonly number[];
  /** f returns [value, aux]; aux is passed through undifferentiated. */
  hasAux?: boolean;
}

function gradImpl(
  name: string,
  f: (...args: Tree[]) => unknown,
  opts: GradOptions,
  args: Tree[],
): { value: Tensor; grads: Tree; aux: unknown } {
  const argnums = opts.argnums ?? 0;
  const nums = typeof argnums === 'number' ? [argnums] : argnums;
  for (const n of nums)
    if (n < 0 || n >= args.length) throw new RangeError(`${name}: argnums ${n} out of range for ${args.length} argument(s)`);
  const diffArgs = nums.map((n) => args[n]);
  const [leaves, def] = treeFlatten(diffArgs);
  for (const l of leaves)
    if (!isFloat(l.dtype)) throw new TypeError(`${name}: can only differentiate float arguments, got ${l.dtype}${fmtShape(l.shape)}`);
  let aux: unknown;
  const [[value], back, unwrap] = vjpFlat((xs) => {
    const parts = treeUnflatten(def, xs) as Tree[];
    const full = args.slice();
    nums.forEach((n, i) => (full[n] = parts[i]));
    let out = f(...full);
    if (opts.hasAux) {
      if (!Array.isArray(out) || out.length !== 2) throw new TypeError(`${name}: with hasAux, f must return [value, aux]`);
      [out, aux] = out as [unknown, unknown];
    }
    if (!(out instanceof Tensor)) throw new TypeError(`${name}: f must return a scalar tensor, got ${typeof out}`);
    if (out.ndim !== 0)
      throw new ShapeError(
        `${name}: f must return a scalar (shape []), got shape ${fmtShape(out.shape)}; reduce it (e.g. sum or mean) first`,
      );
    if (!isFloat(out.dtype)) throw new TypeError(`${name}: f must return a float scalar, got ${out.dtype}`);
    return [out];
  }, leaves);
  const g = treeUnflatten(def, back([ops.onesLike(value)])) as Tree[];
  if (opts.hasAux) {
    const [auxLeaves, auxDef] = treeFlatten(aux);
    aux = treeUnflatten(auxDef, auxLeaves.map(unwrap));
  }
  return { value, grads: typeof argnums === 'number' ? g[0] : g, aux };
}

/**
 * The type of a gradient of a value of type T: the same structure with every array a Tensor (a
 * gradient is a traced value inside jit, so an NDArray field becomes a Tensor).
 */
export type Grads<T> = [Tree] extends [T]
  ? Tree
  : T extends Tensor
    ? Tensor
    : T extends readonly unknown[]
      ? { -readonly [K in keyof T]: Grads<T[K]> }
      : T extends object
        ? { -readonly [K in keyof T]: Grads<T[K]> }
        : T;

/** Options for the common case: the gradient with respect to the first argument, no aux output. */
export interface FirstArgGradOptions extends GradOptions {
  argnums?: 0;
  hasAux?: false;
}

/**
 * The gradient of a scalar function with respect to argument(s) `argnums` (pytrees). For the first
 * argument (the default) the result has that argument's type (`Grads<A[0]>`); for other argnums it
 * is a Tree (an array of trees when argnums is an array).
 *
 * @example
 * const df = grad((x) => sum(mul(x, x)));
 * df(array([1, 2])); // [2, 4]
 */
export function grad<A extends [Tree, ...Tree[]]>(f: (...args: A) => Tensor, opts?: FirstArgGradOptions): (...args: A) => Grads<A[0]>;
export function grad<A extends Tree[]>(f: (...args: A) => unknown, opts?: GradOptions): (...args: A) => Tree;
export function grad<A extends Tree[]>(f: (...args: A) => unknown, opts: GradOptions = {}): (...args: A) => Tree {
  return (...args: A) => gradImpl('grad', f as (...a: Tree[]) => unknown, opts, args).grads;
}

/**
 * Like grad, but returns [value, grads] (or [[value, aux], grads] with hasAux). For the first
 * argument the gradient has that argument's type.
 */
export function valueAndGrad<A extends [Tree, ...Tree[]]>(
  f: (...args: A) => Tensor,
  opts?: FirstArgGradOptions,
): (...args: A) => [Tensor, Grads<A[0]>];
export function valueAndGrad<A extends [Tree, ...Tree[]], Aux>(
  f: (...args: A) => readonly [Tensor, Aux],
  opts: { argnums?: 0; hasAux: true },
): (...args: A) => [[Tensor, Aux], Grads<A[0]>];
export function valueAndGrad<A extends Tree[]>(
  f: (...args: A) => unknown,
  opts?: GradOptions,
): (...args: A) => [Tensor | [Tensor, unknown], Tree];
export function valueAndGrad<A extends Tree[]>(
  f: (...args: A) => unknown,
  opts: GradOptions = {},
): (...args: A) => [Tensor | [Tensor, unknown], Tree] {
  return (...args: A) => {
    const r = gradImpl('valueAndGrad', f as (...a: Tree[]) => unknown, opts, args);
    return [opts.hasAux ? [r.value, r.aux] : r.value, r.grads];
  };
}

/** What jvp returns for an output of type O: a lone tensor comes back as a one-element list. */
export type JvpOutput<O> = O extends Tensor ? Tensor[] : O;

/**
 * Forward-mode derivative (Jacobian-vector product) of `f` at `primals` along `tangents`: one
 * pytree per positional argument, tangents with the primals' structure and shapes. Returns f's
 * output and the output tangent, both with f's output structure (a single tensor output comes back
 * as a one-element list). Computed as the transpose of the VJP (exact; about two reverse passes).
 *
 * @example
 * const [[y], [dy]] = jvp((x: Tensor) => mul(x, x), [array([3])], [array([1])]); // y = 9, dy = 6
 * const [out, dout] = jvp((p: { w: Tensor }) => ({ y: exp(p.w) }), [{ w }], [{ w: ones }]);
 */
export function jvp<A extends Tree[], O>(f: (...args: A) => O, primals: A, tangents: A): [JvpOutput<O>, JvpOutput<O>] {
  if (tangents.length !== primals.length) throw new TreeStructureError(`jvp: ${tangents.length} tangents for ${primals.length} primals`);
  const [leaves, def] = treeFlatten(primals);
  const [tanLeaves, tanDef] = treeFlatten(tangents);
  if (!treeDefsEqual(def, tanDef))
    throw new TreeStructureError(`jvp: tangents have structure ${treeDefString(tanDef)}, primals have ${treeDefString(def)}`);
  tanLeaves.forEach((t, i) => {
    if (!shapesEqual(t.shape, leaves[i].shape))
      throw new ShapeError(`jvp: tangent leaf ${i} has shape ${fmtShape(t.shape)}, primal has ${fmtShape(leaves[i].shape)}`);
  });
  let outDef = treeFlatten(null)[1];
  const flatF = (xs: Tensor[]): Tensor[] => {
    const r = f(...(treeUnflatten(def, xs) as A));
    const [outs, d] = treeFlatten(r instanceof Tensor ? [r] : r);
    outDef = d;
    return outs;
  };
  const [outs, back] = vjpFlat(flatF, leaves);
  const zeros = outs.map((o) => ops.zerosLike(o));
  const [, backT] = vjpFlat((cts) => back(cts), zeros);
  const tangentOuts = backT(tanLeaves);
  return [treeUnflatten(outDef, outs) as JvpOutput<O>, treeUnflatten(outDef, tangentOuts) as JvpOutput<O>];
}

export interface JacobianOptions {
  /**
   * Which positional argument(s) to differentiate (default 0), each a pytree of float tensors; a
   * list gives, for every output leaf, a list of Jacobians (one per listed argument), as JAX's tuple.
   */
  argnums?: number | readonly number[];
}

/**
 * The Jacobian of an output of type O with respect to an argument of type In (JAX's layout): O's
 * structure with each tensor replaced by In's structure, whose tensor for an output leaf y and an
 * argument leaf x has shape [...y.shape, ...x.shape].
 */
export type Jacobian<O, In> = [Tree] extends [O]
  ? Tree
  : O extends Tensor
    ? Grads<In>
    : O extends readonly unknown[]
      ? { -readonly [K in keyof O]: Jacobian<O[K], In> }
      : O extends object
        ? { -readonly [K in keyof O]: Jacobian<O[K], In> }
        : O;

/** The arguments listed in argnums N, as a tuple (what a list of argnums differentiates). */
export type ArgsAt<A extends readonly unknown[], N extends readonly number[]> = { -readonly [K in keyof N]: A[N[K] & number] };

/** The rows of an identity matrix of size `shape`'s element count, each shaped like `shape`. */
function basis(shape: readonly number[], dtype: DType): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const iota = arange(n);
  return ops.reshape(ops.cast(ops.equal(ops.reshape(iota, [n, 1]), iota), dtype), [n, ...shape]);
}

/** A function of the differentiated arguments' leaves only, returning f's output leaves. */
interface FlatProblem {
  /** The differentiated arguments' leaves, in tree order. */
  readonly leaves: Tensor[];
  /** Their structure: one argument's tree (number argnums) or a list of them. */
  readonly inDef: TreeDef;
  readonly fn: (xs: Tensor[]) => Tensor[];
  /** f's output structure (known once fn has run). */
  outDef(): TreeDef;
}

function flatProblem(name: string, f: (...args: Tree[]) => unknown, argnums: number | readonly number[], args: Tree[]): FlatProblem {
  const nums = typeof argnums === 'number' ? [argnums] : argnums;
  for (const n of nums)
    if (!Number.isInteger(n) || n < 0 || n >= args.length)
      throw new RangeError(`${name}: argnums ${n} out of range for ${args.length} argument(s)`);
  if (new Set(nums).size !== nums.length) throw new RangeError(`${name}: argnums lists an argument twice: [${nums.join(', ')}]`);
  const [leaves, inDef] = treeFlatten(typeof argnums === 'number' ? args[argnums] : nums.map((n) => args[n]));
  for (const l of leaves)
    if (!isFloat(l.dtype)) throw new TypeError(`${name}: can only differentiate float arguments, got ${l.dtype}${fmtShape(l.shape)}`);
  if (leaves.length === 0)
    throw new TypeError(`${name}: argument(s) ${nums.join(', ')} hold no tensors to differentiate (a pytree of float tensors)`);
  let outDef: TreeDef | undefined;
  const fn = (xs: Tensor[]): Tensor[] => {
    const diff = treeUnflatten(inDef, xs);
    const full = args.slice();
    if (typeof argnums === 'number') full[argnums] = diff;
    else nums.forEach((n, i) => (full[n] = (diff as Tree[])[i]));
    const [outs, d] = treeFlatten(f(...full));
    outs.forEach((o, i) => {
      if (!isFloat(o.dtype))
        throw new TypeError(`${name}: f must return float tensors, got ${o.dtype}${fmtShape(o.shape)} at output leaf ${i}`);
    });
    outDef = d;
    return outs;
  };
  return { leaves, inDef, fn, outDef: () => outDef! };
}

/** jacobians[j][i]: output leaf j by argument leaf i, assembled into output structure of argument structures. */
function assemble(p: FlatProblem, jacobians: readonly (readonly Tensor[])[]): Tree {
  return treeGraft(
    p.outDef(),
    jacobians.map((row) => treeUnflatten(p.inDef, row)),
  );
}

function jacrevImpl(name: string, f: (...args: Tree[]) => unknown, opts: JacobianOptions): (...args: Tree[]) => Tree {
  const argnums = opts.argnums ?? 0;
  return (...args) => {
    const p = flatProblem(name, f, argnums, args);
    const [ys, back] = vjpFlat(p.fn, p.leaves);
    // One VJP per output leaf, vmapped over the rows of its identity (the other leaves' cotangents zero).
    const jacobians = ys.map((y, j) => {
      const zeros = ys.map((o) => ops.zerosLike(o));
      const rows = vmap((ct: Tensor) => back(zeros.map((z, k) => (k === j ? ct : z))))(basis(y.shape, y.dtype));
      return rows.map((r, i) => ops.reshape(r, [...y.shape, ...p.leaves[i].shape]));
    });
    return assemble(p, jacobians);
  };
}

function jacfwdImpl(name: string, f: (...args: Tree[]) => unknown, opts: JacobianOptions): (...args: Tree[]) => Tree {
  const argnums = opts.argnums ?? 0;
  return (...args) => {
    const p = flatProblem(name, f, argnums, args);
    const zeros = p.leaves.map((x) => ops.zerosLike(x));
    // One JVP per argument leaf, vmapped over its basis (the other leaves' tangents zero); batched over
    // the tangent direction, so the batch lands last: [...output leaf shape, n].
    const columns = p.leaves.map((x, i) => {
      const cols = vmap(
        (dx: Tensor) =>
          jvp(
            (...xs: Tensor[]) => p.fn(xs),
            p.leaves,
            zeros.map((z, k) => (k === i ? dx : z)),
          )[1],
        {
          outAxes: -1,
        },
      )(basis(x.shape, x.dtype));
      return cols.map((c) => ops.reshape(c, [...c.shape.slice(0, -1), ...x.shape]));
    });
    const outLeaves = columns[0].length;
    return assemble(
      p,
      Array.from({ length: outLeaves }, (_, j) => columns.map((c) => c[j])),
    );
  };
}

/**
 * The Jacobian of `f` by reverse mode (JAX's jacrev): one VJP per output leaf, vmapped over the
 * rows of the identity. Arguments and output are pytrees: the result has f's output structure with
 * each tensor replaced by the differentiated argument's structure, the tensor for output leaf y and
 * argument leaf x of shape [...y.shape, ...x.shape] (a tensor for a tensor function of a tensor).
 * `argnums` picks the argument (default 0), or a list of them (then a list per output leaf).
 *
 * @example
 * jacrev((x: Tensor) => mul(x, x))(array([1, 2])); // [[2, 0], [0, 4]]
 * // a and b of shape [2]: J[0].a = diag(b) and J[0].b = diag(a) ([2, 2]), J[1].a = [1, 1] and J[1].b = [0, 0] ([2]).
 * const J = jacrev((p: { a: Tensor; b: Tensor }) => [mul(p.a, p.b), sum(p.a)] as const)(p);
 */
export function jacrev<A extends [Tree, ...Tree[]], O extends Tree>(
  f: (...args: A) => O,
  opts?: { argnums?: 0 },
): (...args: A) => Jacobian<O, A[0]>;
export function jacrev<A extends Tree[], O extends Tree, const N extends number>(
  f: (...args: A) => O,
  opts: { argnums: N },
): (...args: A) => Jacobian<O, A[N]>;
export function jacrev<A extends Tree[], O extends Tree, const N extends readonly number[]>(
  f: (...args: A) => O,
  opts: { argnums: N },
): (...args: A) => Jacobian<O, ArgsAt<A, N>>;
export function jacrev<A extends Tree[]>(f: (...args: A) => Tree, opts?: JacobianOptions): (...args: A) => Tree;
export function jacrev<A extends Tree[]>(f: (...args: A) => Tree, opts: JacobianOptions = {}): (...args: A) => Tree {
  return jacrevImpl('jacrev', f as (...args: Tree[]) => unknown, opts);
}

/**
 * The Jacobian of `f` by forward mode (JAX's jacfwd): one JVP per argument leaf, vmapped over the
 * basis of its space. Same structure and shapes as jacrev.
 */
export function jacfwd<A extends [Tree, ...Tree[]], O extends Tree>(
  f: (...args: A) => O,
  opts?: { argnums?: 0 },
): (...args: A) => Jacobian<O, A[0]>;
export function jacfwd<A extends Tree[], O extends Tree, const N extends number>(
  f: (...args: A) => O,
  opts: { argnums: N },
): (...args: A) => Jacobian<O, A[N]>;
export function jacfwd<A extends Tree[], O extends Tree, const N extends readonly number[]>(
  f: (...args: A) => O,
  opts: { argnums: N },
): (...args: A) => Jacobian<O, ArgsAt<A, N>>;
export function jacfwd<A extends Tree[]>(f: (...args: A) => Tree, opts?: JacobianOptions): (...args: A) => Tree;
export function jacfwd<A extends Tree[]>(f: (...args: A) => Tree, opts: JacobianOptions = {}): (...args: A) => Tree {
  return jacfwdImpl('jacfwd', f as (...args: Tree[]) => unknown, opts);
}

/**
 * The Hessian of a scalar function (JAX's hessian): jacfwd of jacrev with respect to the same
 * argument(s). For an argument tree the result is that tree of trees: the tensor at [i][j] has shape
 * [...x_i.shape, ...x_j.shape] (a tensor [...x.shape, ...x.shape] for a tensor argument).
 *
 * @example
 * hessian((x: Tensor) => sum(mul(x, mul(x, x))))(array([1, 2])); // [[6, 0], [0, 12]]
 * hessian((p: { a: Tensor; b: Tensor }) => sum(mul(p.a, p.b)))(p); // { a: { a: 0, b: I }, b: { a: I, b: 0 } }
 */
export function hessian<A extends [Tree, ...Tree[]]>(
  f: (...args: A) => Tensor,
  opts?: { argnums?: 0 },
): (...args: A) => Jacobian<Jacobian<Tensor, A[0]>, A[0]>;
export function hessian<A extends Tree[], const N extends number>(
  f: (...args: A) => Tensor,
  opts: { argnums: N },
): (...args: A) => Jacobian<Jacobian<Tensor, A[N]>, A[N]>;
export function hessian<A extends Tree[], const N extends readonly number[]>(
  f: (...args: A) => Tensor,
  opts: { argnums: N },
): (...args: A) => Jacobian<Jacobian<Tensor, ArgsAt<A, N>>, ArgsAt<A, N>>;
export function hessian<A extends Tree[]>(f: (...args: A) => Tensor, opts?: JacobianOptions): (...args: A) => Tree;
export function hessian<A extends Tree[]>(f: (...args: A) => Tensor, opts: JacobianOptions = {}): (...args: A) => Tree {
  return jacfwdImpl('hessian', jacrevImpl('hessian', f as (...args: Tree[]) => unknown, opts), opts);
}
