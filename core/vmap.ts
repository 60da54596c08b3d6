/**
 * vmap: the batching trace and its rule table. A batched value is a BatchTracer holding the array
 * of all batch members (`val`) and the axis of `val` that indexes them (`bdim`); values that do not
 * depend on the batch are left as they are. Each primitive's batching rule rewrites one primitive
 * applied to batch members into primitives applied to the whole batch.
 */
import type { Jaxpr, ClosedJaxpr } from './ir.js';
import * as ops from './ops.js';
import { type PrimParams, type Primitive } from './primitives.js';
import { fmtShape, ShapeError } from './shape.js';
import { ConcretizationError, Tensor } from './tensor.js';
import { bind, bind1, constsAsArgs, evalJaxpr, traceToJaxpr, Trace, Tracer } from './trace.js';
import { numLeaves, treeDefString, treeFlatten, treeUnflatten, TreeStructureError, type TreeDef } from './tree.js';
import type { DType } from './dtype.js';

/** The axis of a value that indexes the batch, or null for a value shared by every member. */
export type BatchDim = number | null;

/**
 * A batching rule: given the operands' arrays and their batch axes (at least one non-null), the
 * results for the whole batch and their batch axes.
 */
export type BatchRule<P extends Primitive> = (
  vals: Tensor[],
  dims: BatchDim[],
  params: PrimParams[P],
  size: number,
) => [Tensor[], BatchDim[]];

class BatchTracer extends Tracer {
  readonly shape: readonly number[];
  constructor(
    readonly trace: BatchTrace,
    readonly val: Tensor,
    readonly bdim: number,
  ) {
    super();
    this.shape = val.shape.filter((_, i) => i !== bdim);
  }
  get dtype(): DType {
    return this.val.dtype;
  }
  concrete(): never {
    throw new ConcretizationError(
      `vmap: cannot read the values of a batched array ${this.dtype}${fmtShape(this.shape)} (each batch member has its own); ` +
        'use where() instead of JS control flow on array values, or return the value from the vmapped function',
    );
  }
}

class BatchTrace extends Trace {
  constructor(readonly size: number) {
    super();
  }
  /** The array and batch axis of `x` as this trace sees it. */
  unwrap(x: Tensor): [Tensor, BatchDim] {
    return x instanceof BatchTracer && x.trace === this ? [x.val, x.bdim] : [x, null];
  }
  wrap(val: Tensor, bdim: BatchDim): Tensor {
    return bdim === null ? val : new BatchTracer(this, val, bdim);
  }
  process<P extends Primitive>(prim: P, inputs: Tensor[], params: PrimParams[P]): Tensor[] {
    const vals: Tensor[] = [];
    const dims: BatchDim[] = [];
    for (const x of inputs) {
      const [v, d] = this.unwrap(x);
      vals.push(v);
      dims.push(d);
    }
    if (dims.every((d) => d === null)) return bind(prim, vals, params);
    const [outs, outDims] = (batchRules[prim] as BatchRule<P>)(vals, dims, params, this.size);
    return outs.map((o, i) => this.wrap(o, outDims[i]));
  }
}

// ----------------------------------------------------------------------------- axis helpers

/** `x` with axis `from` moved to position `to` (the other axes keep their order). */
export function moveAxis(x: Tensor, from: number, to: number): Tensor {
  if (from === to) return x;
  const perm = x.shape.map((_, i) => i).filter((i) => i !== from);
  perm.splice(to, 0, from);
  return ops.transpose(x, perm);
}

/** `x` (batched at `dim`, or shared when null) as an array with the batch on axis `to`. */
export function batchAt(x: Tensor, dim: BatchDim, size: number, to = 0): Tensor {
  if (dim !== null) return moveAxis(x, dim, to);
  const shape = x.shape.slice();
  shape.splice(to, 0, 1);
  const full = x.shape.slice();
  full.splice(to, 0, size);
  return ops.broadcastTo(ops.reshape(x, shape), full);
}

/** The axis of the batched array that holds logical axis `axis` of a member, batch at `dim`. */
const physical = (axis: number, dim: number): number => (axis < dim ? axis : axis + 1);

// ----------------------------------------------------------------------------- rule factories

/**
 * Elementwise primitives: operands already batched on one axis stay there and shared operands are
 * broadcast along it (no transposes); mixed batch axes all move to the front.
 */
export const elementwiseRule =
  <P extends Primitive>(prim: P): BatchRule<P> =>
  (vals, dims, params, size) => {
    const batched = dims.filter((d): d is number => d !== null);
    const at = batched.every((d) => d === batched[0]) ? batched[0] : 0;
    return [
      bind(
        prim,
        vals.map((v, i) => batchAt(v, dims[i], size, at)),
        params,
      ),
      [at],
    ];
  };

/** Primitives with an `axes` list (reductions): the axes are renumbered around the batch axis. */
export const reductionRule =
  <P extends 'reduce_sum' | 'reduce_max' | 'reduce_min'>(prim: P): BatchRule<P> =>
  ([x], [d], params) => {
    const dim = d!;
    const axes = params.axes.map((a) => physical(a, dim));
    return [[bind1(prim, [x], { ...params, axes } as PrimParams[P])], [dim - params.axes.filter((a) => a < dim).length]];
  };

/** Primitives with one `axis` on one operand; `keepsAxis` when the output keeps the operand's rank. */
export const axisRule =
  <P extends 'argmax' | 'argsort'>(prim: P, keepsAxis: boolean): BatchRule<P> =>
  ([x], [d], params) => {
    const dim = d!;
    const out = bind1(prim, [x], { ...params, axis: physical(params.axis, dim) } as PrimParams[P]);
    return [[out], [keepsAxis || params.axis >= dim ? dim : dim - 1]];
  };

/**
 * Rules that move the batch to the front of every operand (broadcasting shared ones) and bind the
 * primitive with parameters rewritten for the extra leading axis.
 */
export const leadingRule =
  <P extends Primitive>(prim: P, shift: (params: PrimParams[P], size: number) => PrimParams[P]): BatchRule<P> =>
  (vals, dims, params, size) => {
    const outs = bind(
      prim,
      vals.map((v, i) => batchAt(v, dims[i], size)),
      shift(params, size),
    );
    return [outs, outs.map(() => 0)];
  };

/** Random primitives with a batch of keys: one draw per key, stacked (equal to per-key draws). */
export const randomRule =
  <P extends Primitive>(prim: P): BatchRule<P> =>
  ([key], [d], params, size) => {
    const keys = moveAxis(key, d!, 0);
    const draws: Tensor[] = [];
    for (let i = 0; i < size; i++) draws.push(bind1(prim, [ops.indexAxis(keys, 0, i)], params));
    return [[ops.stack(draws, 0)], [0]];
  };

/**
 * A jaxpr (no constvars) evaluated on a batch: inputs flagged in `inBatched` carry the batch on
 * axis 0. Outputs come back batched on axis 0 or shared; `forceOut[i]` broadcasts output i to the
 * batch when it is shared. Returns the new closed jaxpr and which outputs are batched.
 */
export function batchJaxpr(
  jaxpr: Jaxpr,
  inBatched: readonly boolean[],
  size: number,
  forceOut: readonly boolean[],
): { closed: ClosedJaxpr; outBatched: boolean[] } {
  const outBatched: boolean[] = [];
  const avals = jaxpr.invars.map((v, i) => (inBatched[i] ? { shape: [size, ...v.aval.shape], dtype: v.aval.dtype } : v.aval));
  const closed = traceToJaxpr((args) => {
    const trace = new BatchTrace(size);
    try {
      const outs = evalJaxpr(
        jaxpr,
        [],
        args.map((a, i) => trace.wrap(a, inBatched[i] ? 0 : null)),
      );
      return outs.map((o, i) => {
        const [v, d] = trace.unwrap(o);
        outBatched[i] = d !== null || forceOut[i] === true;
        return outBatched[i] ? batchAt(v, d, size) : v;
      });
    } finally {
      trace.alive = false;
    }
  }, avals);
  return { closed, outBatched };
}

/**
 * matmul with one batched operand folds the batch into the other matrix dimension of that operand
 * (rows of the left, columns of the right): one larger product, not a loop of small ones. Both
 * batched: the batch becomes matmul's leading batch axis.
 */
const matmulRule: BatchRule<'matmul'> = ([a, b], [da, db], _params, size) => {
  const r = (da === null ? a.ndim : a.ndim - 1) as number;
  if (db === null) {
    const x = moveAxis(a, da!, r - 2); // [...batch, B, m, k]
    const lead = x.shape.slice(0, r - 2);
    const [m, k] = x.shape.slice(r - 1);
    const y = bind1('matmul', [ops.reshape(x, [...lead, size * m, k]), b], {});
    return [[ops.reshape(y, [...lead, size, m, b.shape[r - 1]])], [r - 2]];
  }
  if (da === null) {
    const y = moveAxis(b, db, r - 1); // [...batch, k, B, n]
    const lead = y.shape.slice(0, r - 2);
    const k = y.shape[r - 2];
    const n = y.shape[r];
    const out = bind1('matmul', [a, ops.reshape(y, [...lead, k, size * n])], {});
    return [[ops.reshape(out, [...lead, a.shape[r - 2], size, n])], [r - 1]];
  }
  const x = moveAxis(a, da, 0);
  const y = moveAxis(b, db, 0);
  return [[bind1('matmul', [x, y], {})], [0]];
};

/**
 * conv over a batch: a batched input folds the batch into the conv's own batch axis; a batched
 * kernel becomes more output channels (each group's block widened by the batch), and when both
 * are batched the batch multiplies the feature groups, so member b's channels meet only its kernel.
 */
const convRule: BatchRule<'conv'> = ([x, w], [dx, dw], p, size) => {
  const r = p.strides.length;
  const g = p.featureGroupCount;
  if (dw === null) {
    const xb = moveAxis(x, dx!, 0); // [B, N, ...S, C]
    const y = bind1('conv', [ops.reshape(xb, [size * xb.shape[1], ...xb.shape.slice(2)]), w], p);
    return [[ops.reshape(y, [size, xb.shape[1], ...y.shape.slice(1)])], [0]];
  }
  const wb = moveAxis(w, dw, r + 1); // [...K, Cg, B, O]
  const window = wb.shape.slice(0, r);
  const groupIn = wb.shape[r];
  const groupOut = wb.shape[r + 2] / g;
  if (dx === null) {
    // Output channels ordered (group, member, channel): each group's block stays contiguous.
    const k = ops.transpose(ops.reshape(wb, [...window, groupIn, size, g, groupOut]), [
      ...Array.from({ length: r + 1 }, (_, i) => i),
      r + 2,
      r + 1,
      r + 3,
    ]);
    const y = bind1('conv', [x, ops.reshape(k, [...window, groupIn, g * size * groupOut])], p);
    const lead = y.shape.slice(0, r + 1);
    const split = ops.reshape(y, [...lead, g, size, groupOut]);
    return [
      [
        ops.reshape(ops.transpose(split, [...Array.from({ length: r + 1 }, (_, i) => i), r + 2, r + 1, r + 3]), [
          ...lead,
          size,
          g * groupOut,
        ]),
      ],
      [r + 1],
    ];
  }
  // Both batched: channels (member, group, channel), groups B * G.
  const xb = moveAxis(x, dx, x.ndim - 2); // [N, ...S, B, C]
  const xs = ops.reshape(xb, [...xb.shape.slice(0, r + 1), size * xb.shape[r + 2]]);
  const k = ops.reshape(wb, [...window, groupIn, size * g * groupOut]);
  const y = bind1('conv', [xs, k], { ...p, featureGroupCount: size * g });
  return [[ops.reshape(y, [...y.shape.slice(0, r + 1), size, g * groupOut])], [r + 1]];
};

/**
 * scan over a batch: the batch rides on axis 0 of the constants and carries and on axis 1 of xs
 * and ys. Which carries are batched is found by iterating to a fixed point (a shared initial
 * carry becomes batched when the body mixes batched values into it).
 */
const scanRule: BatchRule<'scan'> = (vals, dims, { body, numConsts, numCarry, length, reverse }, size) => {
  const consts = vals.slice(0, numConsts);
  const carry = vals.slice(numConsts, numConsts + numCarry);
  const xs = vals.slice(numConsts + numCarry);
  const constB = dims.slice(0, numConsts).map((d) => d !== null);
  const carryB = dims.slice(numConsts, numConsts + numCarry).map((d) => d !== null);
  const xsB = dims.slice(numConsts + numCarry).map((d) => d !== null);
  let batchedBody: ReturnType<typeof batchJaxpr>;
  for (;;) {
    const numYs = body.outvars.length - numCarry;
    batchedBody = batchJaxpr(body, [...constB, ...carryB, ...xsB], size, [...carryB, ...new Array<boolean>(numYs).fill(false)]);
    const grew = batchedBody.outBatched.slice(0, numCarry).some((b, i) => b && !carryB[i]);
    if (!grew) break;
    batchedBody.outBatched.slice(0, numCarry).forEach((b, i) => (carryB[i] ||= b));
  }
  const { closed, outBatched } = batchedBody;
  const inputs = [
    ...closed.consts,
    ...consts.map((c, i) => (constB[i] ? moveAxis(c, dims[i]!, 0) : c)),
    ...carry.map((c, i) => (carryB[i] ? batchAt(c, dims[numConsts + i], size) : c)),
    ...xs.map((x, i) => (xsB[i] ? moveAxis(x, dims[numConsts + numCarry + i]!, 1) : x)),
  ];
  const outs = bind('scan', inputs, {
    body: constsAsArgs(closed.jaxpr),
    numConsts: closed.consts.length + numConsts,
    numCarry,
    length,
    reverse,
  });
  return [outs, outs.map((_, i) => (i < numCarry ? (carryB[i] ? 0 : null) : outBatched[i] ? 1 : null))];
};

/**
 * custom_vjp_call over a batch: every operand is broadcast to the batch, so fun, fwd and bwd all
 * run on batches and each argument's cotangent has the batch too (the broadcast's own VJP then
 * sums the cotangent of a shared argument over the batch).
 */
const customVjpRule: BatchRule<'custom_vjp_call'> = (vals, dims, params, size) => {
  const all = vals.map((v, i) => batchAt(v, dims[i], size));
  const { numFunConsts, numFwdConsts, numBwdConsts } = params;
  const numArgs = all.length - numFunConsts - numFwdConsts - numBwdConsts;
  const everything = (n: number): boolean[] => new Array<boolean>(n).fill(true);
  const fun = batchJaxpr(params.fun, everything(params.fun.invars.length), size, everything(params.fun.outvars.length)).closed;
  const fwd = batchJaxpr(params.fwd, everything(params.fwd.invars.length), size, everything(params.fwd.outvars.length)).closed;
  const bwd = batchJaxpr(params.bwd, everything(params.bwd.invars.length), size, everything(params.bwd.outvars.length)).closed;
  let k = 0;
  const funConsts = all.slice(k, (k += numFunConsts));
  const fwdConsts = all.slice(k, (k += numFwdConsts));
  const bwdConsts = all.slice(k, (k += numBwdConsts));
  const args = all.slice(k, k + numArgs);
  const outs = bind('custom_vjp_call', [...fun.consts, ...funConsts, ...fwd.consts, ...fwdConsts, ...bwd.consts, ...bwdConsts, ...args], {
    fun: constsAsArgs(fun.jaxpr),
    fwd: constsAsArgs(fwd.jaxpr),
    bwd: constsAsArgs(bwd.jaxpr),
    numFunConsts: fun.consts.length + numFunConsts,
    numFwdConsts: fwd.consts.length + numFwdConsts,
    numBwdConsts: bwd.consts.length + numBwdConsts,
    name: params.name,
  });
  return [outs, outs.map(() => 0)];
};

/** A bool per member (batch on axis 0) reshaped to select whole members of `like` (batch on axis 0). */
const memberMask = (pred: Tensor, like: Tensor): Tensor =>
  ops.broadcastTo(ops.reshape(pred, [pred.shape[0], ...like.shape.slice(1).map(() => 1)]), like.shape);

/**
 * cond over a batch. A shared predicate keeps one cond whose branches run on the batch; a batched
 * predicate runs both branches on the whole batch and selects per member (as JAX does).
 */
const condRule: BatchRule<'cond'> = (vals, dims, { whenTrue, whenFalse, numTrueConsts, numFalseConsts }, size) => {
  const rest = vals.slice(1);
  const restB = dims.slice(1).map((d) => d !== null);
  const restV = rest.map((v, i) => (restB[i] ? moveAxis(v, dims[i + 1]!, 0) : v));
  const operandsB = restB.slice(numTrueConsts + numFalseConsts);
  const trueIn = [...restB.slice(0, numTrueConsts), ...operandsB];
  const falseIn = [...restB.slice(numTrueConsts, numTrueConsts + numFalseConsts), ...operandsB];
  const trueArgs = [...restV.slice(0, numTrueConsts), ...restV.slice(numTrueConsts + numFalseConsts)];
  const falseArgs = restV.slice(numTrueConsts);
  const nOut = whenTrue.outvars.length;
  if (dims[0] !== null) {
    const all = new Array<boolean>(nOut).fill(true);
    const t = batchJaxpr(whenTrue, trueIn, size, all).closed;
    const f = batchJaxpr(whenFalse, falseIn, size, all).closed;
    const ts = evalJaxpr(t.jaxpr, t.consts, trueArgs);
    const fs = evalJaxpr(f.jaxpr, f.consts, falseArgs);
    const pred = moveAxis(vals[0], dims[0], 0);
    return [ts.map((x, i) => ops.where(memberMask(pred, x), x, fs[i])), ts.map(() => 0)];
  }
  const first = [batchJaxpr(whenTrue, trueIn, size, []).outBatched, batchJaxpr(whenFalse, falseIn, size, []).outBatched];
  const outB = first[0].map((b, i) => b || first[1][i]);
  const t = batchJaxpr(whenTrue, trueIn, size, outB).closed;
  const f = batchJaxpr(whenFalse, falseIn, size, outB).closed;
  const outs = bind('cond', [vals[0], ...t.consts, ...restV.slice(0, numTrueConsts), ...f.consts, ...restV.slice(numTrueConsts)], {
    whenTrue: constsAsArgs(t.jaxpr),
    whenFalse: constsAsArgs(f.jaxpr),
    numTrueConsts: t.consts.length + numTrueConsts,
    numFalseConsts: f.consts.length + numFalseConsts,
  });
  return [outs, outB.map((b) => (b ? 0 : null))];
};

/**
 * while_loop over a batch: every carry gets the batch. With a batched condition the loop runs
 * while any member's condition holds, and members whose condition is false keep their carry.
 */
const whileRule: BatchRule<'while_loop'> = (vals, dims, { cond, body, numCondConsts, numBodyConsts }, size) => {
  const nConsts = numCondConsts + numBodyConsts;
  const inB = dims.map((d, i) => d !== null || i >= nConsts);
  const v = vals.map((x, i) => (i >= nConsts ? batchAt(x, dims[i], size) : inB[i] ? moveAxis(x, dims[i]!, 0) : x));
  const condConsts = v.slice(0, numCondConsts);
  const bodyConsts = v.slice(numCondConsts, nConsts);
  const carry = v.slice(nConsts);
  const carryB = carry.map(() => true);
  const condB = batchJaxpr(cond, [...inB.slice(0, numCondConsts), ...carryB], size, [false]);
  const bodyB = batchJaxpr(body, [...inB.slice(numCondConsts, nConsts), ...carryB], size, carryB).closed;
  if (!condB.outBatched[0]) {
    const outs = bind('while_loop', [...condB.closed.consts, ...condConsts, ...bodyB.consts, ...bodyConsts, ...carry], {
      cond: constsAsArgs(condB.closed.jaxpr),
      body: constsAsArgs(bodyB.jaxpr),
      numCondConsts: condB.closed.consts.length + numCondConsts,
      numBodyConsts: bodyB.consts.length + numBodyConsts,
    });
    return [outs, outs.map(() => 0)];
  }
  const test = condB.closed;
  const avalsOf = (xs: Tensor[]) => xs.map((x) => ({ shape: x.shape, dtype: x.dtype }));
  const anyCond = traceToJaxpr(
    (args) => {
      const p = evalJaxpr(test.jaxpr, test.consts, args)[0];
      return [ops.greater(ops.max(ops.cast(p, 'float32')), 0)];
    },
    [...avalsOf(condConsts), ...avalsOf(carry)],
  );
  const maskedBody = traceToJaxpr(
    (args) => {
      const cc = args.slice(0, numCondConsts);
      const bc = args.slice(numCondConsts, nConsts);
      const c = args.slice(nConsts);
      const p = evalJaxpr(test.jaxpr, test.consts, [...cc, ...c])[0];
      const next = evalJaxpr(bodyB.jaxpr, bodyB.consts, [...bc, ...c]);
      return next.map((x, i) => ops.where(memberMask(p, x), x, c[i]));
    },
    [...avalsOf(condConsts), ...avalsOf(bodyConsts), ...avalsOf(carry)],
  );
  const outs = bind('while_loop', [...anyCond.consts, ...condConsts, ...maskedBody.consts, ...condConsts, ...bodyConsts, ...carry], {
    cond: constsAsArgs(anyCond.jaxpr),
    body: constsAsArgs(maskedBody.jaxpr),
    numCondConsts: anyCond.consts.length + numCondConsts,
    numBodyConsts: maskedBody.consts.length + nConsts,
  });
  return [outs, outs.map(() => 0)];
};

const withLeadingAxis = (xs: readonly number[], value: number): number[] => [value, ...xs];

// ----------------------------------------------------------------------------- the rule table

export const batchRules: { [P in Primitive]: BatchRule<P> } = {
  neg: elementwiseRule('neg'),
  exp: elementwiseRule('exp'),
  log: elementwiseRule('log'),
  log1p: elementwiseRule('log1p'),
  sqrt: elementwiseRule('sqrt'),
  tanh: elementwiseRule('tanh'),
  logistic: elementwiseRule('logistic'),
  abs: elementwiseRule('abs'),
  sign: elementwiseRule('sign'),
  floor: elementwiseRule('floor'),
  add: elementwiseRule('add'),
  sub: elementwiseRule('sub'),
  mul: elementwiseRule('mul'),
  div: elementwiseRule('div'),
  max: elementwiseRule('max'),
  min: elementwiseRule('min'),
  pow: elementwiseRule('pow'),
  lt: elementwiseRule('lt'),
  le: elementwiseRule('le'),
  gt: elementwiseRule('gt'),
  ge: elementwiseRule('ge'),
  eq: elementwiseRule('eq'),
  ne: elementwiseRule('ne'),
  where: elementwiseRule('where'),
  cast: elementwiseRule('cast'),
  stop_gradient: elementwiseRule('stop_gradient'),
  reduce_sum: reductionRule('reduce_sum'),
  reduce_max: reductionRule('reduce_max'),
  reduce_min: reductionRule('reduce_min'),
  argmax: axisRule('argmax', false),
  argsort: axisRule('argsort', true),
  reshape: leadingRule('reshape', ({ shape }, size) => ({ shape: withLeadingAxis(shape, size) })),
  transpose: leadingRule('transpose', ({ perm }) => ({ perm: [0, ...perm.map((p) => p + 1)] })),
  broadcast_to: ([x], [d], { shape }, size) => {
    // A member of rank 0 broadcasts to any shape; give it the target's rank first.
    const v = moveAxis(x, d!, 0);
    const ranked = v.ndim === 1 && shape.length > 0 ? ops.reshape(v, [size, ...shape.map(() => 1)]) : v;
    return [[ops.broadcastTo(ranked, [size, ...shape])], [0]];
  },
  slice: leadingRule('slice', ({ starts, limits }, size) => ({
    starts: withLeadingAxis(starts, 0),
    limits: withLeadingAxis(limits, size),
  })),
  pad: leadingRule('pad', ({ low, high }) => ({ low: withLeadingAxis(low, 0), high: withLeadingAxis(high, 0) })),
  concatenate: leadingRule('concatenate', ({ axis }) => ({ axis: axis + 1 })),
  matmul: matmulRule,
  conv: convRule,
  take_along_axis: leadingRule('take_along_axis', ({ axis }) => ({ axis: axis + 1 })),
  scatter_add_along_axis: leadingRule('scatter_add_along_axis', ({ axis, shape }, size) => ({
    axis: axis + 1,
    shape: withLeadingAxis(shape, size),
  })),
  random_bits: randomRule('random_bits'),
  random_split: randomRule('random_split'),
  random_fold_in: randomRule('random_fold_in'),
  random_uniform: randomRule('random_uniform'),
  random_normal: randomRule('random_normal'),
  random_randint: randomRule('random_randint'),
  random_permutation: randomRule('random_permutation'),
  scan: scanRule,
  custom_vjp_call: customVjpRule,
  cond: condRule,
  while_loop: whileRule,
};

// ----------------------------------------------------------------------------- vmap

/**
 * Batch axes for vmap: a number (the axis of every leaf), null (not batched), or a pytree prefix
 * of the value (an object or array whose entries are again axis specs).
 */
export type AxisSpec = number | null | readonly AxisSpec[] | { readonly [key: string]: AxisSpec };

export interface VmapOptions {
  /**
   * Where each argument holds the batch: one spec for every argument, or an array with one spec
   * per positional argument (default 0: every leaf of every argument on its leading axis).
   */
  readonly inAxes?: AxisSpec;
  /** Where each output gets the batch axis (default 0); null for an output shared by the batch. */
  readonly outAxes?: AxisSpec;
}

/** One axis (or null) per leaf of `def`, from a spec that is a prefix of the tree. */
function leafAxes(what: string, spec: AxisSpec | undefined, def: TreeDef, path: string): BatchDim[] {
  if (spec === undefined) throw new TreeStructureError(`vmap: ${what} has no axis spec at ${path || 'root'}`);
  if (spec === null || typeof spec === 'number') {
    if (typeof spec === 'number' && !Number.isInteger(spec))
      throw new RangeError(`vmap: ${what} axis at ${path || 'root'} must be an integer or null, got ${spec}`);
    return new Array<BatchDim>(numLeaves(def)).fill(spec);
  }
  if (Array.isArray(spec)) {
    if (def.kind !== 'array' || def.children.length !== spec.length) {
      throw new TreeStructureError(
        `vmap: ${what} spec at ${path || 'root'} is an array of ${spec.length} but the value there has structure ${treeDefString(def)}`,
      );
    }
    return def.children.flatMap((c, i) => leafAxes(what, (spec as readonly AxisSpec[])[i], c, `${path}[${i}]`));
  }
  const obj = spec as { readonly [key: string]: AxisSpec };
  if (def.kind !== 'object')
    throw new TreeStructureError(
      `vmap: ${what} spec at ${path || 'root'} is an object but the value there has structure ${treeDefString(def)}`,
    );
  const extra = Object.keys(obj).filter((k) => !def.keys.includes(k));
  if (extra.length)
    throw new TreeStructureError(
      `vmap: ${what} spec at ${path || 'root'} names ${extra.map((k) => `'${k}'`).join(', ')}, which the value does not have (keys: ${def.keys.join(', ')})`,
    );
  return def.children.flatMap((c, i) => leafAxes(what, obj[def.keys[i]], c, `${path}.${def.keys[i]}`));
}

function normalizeBatchAxis(what: string, axis: number, ndim: number): number {
  if (axis < -ndim || axis >= ndim)
    throw new RangeError(`vmap: ${what} axis ${axis} is out of range for an array of rank ${ndim - 1} (batched rank ${ndim})`);
  return axis < 0 ? axis + ndim : axis;
}

/**
 * Vectorizes `f` over a batch axis of its arguments, as JAX's vmap: `vmap(f)(xs)` equals stacking
 * `f(x_i)` over the members `x_i` of the batch, computed in one pass with whole-batch primitives.
 * Composes with grad, jit, scan and itself in any order.
 *
 * @example
 * // Per-example gradients: one gradient per row of xs, the weights shared.
 * const perExample = vmap(grad(loss), { inAxes: [null, 0, 0] })(params, xs, ys);
 */
export function vmap<A extends unknown[], R>(f: (...args: A) => R, options: VmapOptions = {}): (...args: A) => R {
  const inSpec = options.inAxes === undefined ? 0 : options.inAxes;
  const outSpec = options.outAxes === undefined ? 0 : options.outAxes;
  return (...args: A): R => {
    const perArg: AxisSpec = Array.isArray(inSpec) ? inSpec : args.map(() => inSpec as AxisSpec);
    if (Array.isArray(inSpec) && inSpec.length !== args.length) {
      throw new TreeStructureError(
        `vmap: inAxes has ${inSpec.length} entries for ${args.length} argument(s); give one per argument, or a single axis for all`,
      );
    }
    const [leaves, def] = treeFlatten(args);
    const axes = leafAxes('inAxes', perArg, def, 'arguments');
    let size: number | null = null;
    let sizeFrom = '';
    const normalized = leaves.map((leaf, i) => {
      const a = axes[i];
      if (a === null) return null;
      const axis = normalizeBatchAxis(`inAxes for argument leaf ${i} (${leaf.dtype}${fmtShape(leaf.shape)})`, a, leaf.ndim);
      const n = leaf.shape[axis];
      if (size === null) {
        size = n;
        sizeFrom = `argument leaf ${i} (${leaf.dtype}${fmtShape(leaf.shape)}, axis ${axis})`;
      } else if (n !== size) {
        throw new ShapeError(
          `vmap: mismatched batch sizes: ${sizeFrom} has ${size} but argument leaf ${i} (${leaf.dtype}${fmtShape(leaf.shape)}, axis ${axis}) has ${n}`,
        );
      }
      return axis;
    });
    if (size === null) throw new ShapeError('vmap: no argument is batched (every inAxes entry is null); batch at least one argument');
    const batchSize: number = size;
    const trace = new BatchTrace(batchSize);
    let outs: Tensor[];
    let outDef: TreeDef;
    try {
      const inner = leaves.map((l, i) => trace.wrap(l, normalized[i]));
      [outs, outDef] = treeFlatten(f(...(treeUnflatten(def, inner) as A)));
    } finally {
      trace.alive = false;
    }
    const targets = leafAxes('outAxes', outSpec, outDef, 'output');
    const results = outs.map((o, i) => {
      const [v, d] = trace.unwrap(o);
      const target = targets[i];
      if (target === null) {
        if (d !== null)
          throw new ShapeError(
            `vmap: outAxes is null for output leaf ${i} (${o.dtype}${fmtShape(o.shape)}), but it differs across the batch`,
          );
        return v;
      }
      const to = normalizeBatchAxis(`outAxes for output leaf ${i} (${o.dtype}${fmtShape(o.shape)})`, target, o.ndim + 1);
      return batchAt(v, d, batchSize, to);
    });
    return treeUnflatten(outDef, results) as R;
  };
}
