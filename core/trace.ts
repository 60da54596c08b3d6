/**
 * Traces and `bind`: the dispatch at the heart of every transformation.
 *
 * Each transformation runs under a Trace with a level; `bind` hands a primitive to the highest
 * level among its operands' tracers, or runs the active backend's eager kernel when there is none.
 */
import { Literal, Var, numberText, type Atom, type Aval, type ClosedJaxpr, type Eqn, type Jaxpr } from './ir.js';
import { backendCall, NDArray } from './ndarray.js';
import { ELEMENTWISE, shapeRules, type PrimParams, type Primitive } from './primitives.js';
import { fmtShape, shapesEqual, ShapeError } from './shape.js';
import { ConcretizationError, Tensor } from './tensor.js';
import type { DType } from './dtype.js';
import { getBackend } from './backends.js';

let levelCounter = 0;

export abstract class Trace {
  /** Later traces get higher levels; a nested transformation always outranks its enclosing one. */
  readonly level = ++levelCounter;
  alive = true;
  abstract process<P extends Primitive>(prim: P, inputs: Tensor[], params: PrimParams[P]): Tensor[];
}

export abstract class Tracer extends Tensor {
  abstract readonly trace: Trace;
  /**
   * If this value is known to be a broadcast along some axes: a value of the same trace holding
   * its compact data (size 1 on those axes) and the axes. Null unless the trace can tell (the
   * default); see `broadcastSourceOf`.
   */
  broadcastSource(): { source: Tensor; axes: number[] } | null {
    return null;
  }
}

export { getBackend, registerBackend, setBackend, withBackend, type Backend } from './backends.js';

export function avalOf(x: Tensor): Aval {
  return { shape: x.shape, dtype: x.dtype };
}

/** Applies a primitive: the single entry point every op goes through. */
export function bind<P extends Primitive>(prim: P, inputs: Tensor[], params: PrimParams[P]): Tensor[] {
  let top: Trace | null = null;
  for (const x of inputs) {
    if (x instanceof Tracer) {
      if (!x.trace.alive)
        throw new ConcretizationError(
          `${prim}: a tracer escaped the transformation that made it (was a traced value stored outside jit/grad/scan and used later?)`,
        );
      if (top === null || x.trace.level > top.level) top = x.trace;
    }
  }
  if (top !== null) return top.process(prim, inputs, params);
  for (const x of inputs) if ((x as NDArray).isDeleted) (x as NDArray).checkNotDeleted(prim);
  shapeRules[prim](inputs.map(avalOf), params);
  const backend = getBackend();
  return backendCall(inputs as NDArray[], () => backend.run(prim, inputs as NDArray[], params));
}

export function bind1<P extends Primitive>(prim: P, inputs: Tensor[], params: PrimParams[P]): Tensor {
  return bind(prim, inputs, params)[0];
}

// ---------------------------------------------------------------------------------------------
// The jaxpr trace: records equations.

export class JaxprTracer extends Tracer {
  constructor(
    readonly trace: JaxprTrace,
    readonly variable: Var,
  ) {
    super();
  }
  get shape(): readonly number[] {
    return this.variable.aval.shape;
  }
  get dtype(): DType {
    return this.variable.aval.dtype;
  }
  override broadcastSource(): { source: Tensor; axes: number[] } | null {
    if (!this.trace.alive) return null;
    const b = this.trace.broadcastOf(this.variable);
    if (b === null) return null;
    return { source: b.source instanceof Var ? new JaxprTracer(this.trace, b.source) : literalArray(b.source), axes: b.axes };
  }
  concrete(): never {
    throw new ConcretizationError(
      `cannot read the values of a traced array ${this.dtype}${fmtShape(this.shape)} inside jit/scan/makeJaxpr; ` +
        'use where() instead of JS control flow on array values, or move the read outside the traced function',
    );
  }
}

export class JaxprTrace extends Trace {
  readonly invars: Var[] = [];
  readonly eqns: Eqn[] = [];
  readonly constvars: Var[] = [];
  readonly consts: Tensor[] = [];
  private readonly constIndex = new Map<Tensor, Var>();

  newArg(aval: Aval): JaxprTracer {
    const v = new Var(aval);
    this.invars.push(v);
    return new JaxprTracer(this, v);
  }

  atom(x: Tensor): Atom {
    if (x instanceof JaxprTracer && x.trace === this) return x.variable;
    if (x instanceof NDArray && x.isDeleted) x.checkNotDeleted('jit/scan/makeJaxpr (an array the traced function closed over)');
    if (x instanceof NDArray && x.ndim === 0) return new Literal(x.item(), x.dtype);
    let v = this.constIndex.get(x);
    if (v === undefined && x instanceof NDArray && x.size > 0 && broadcastAxes(x).length > 0 && compactView(x).size === 1) {
      // One value broadcast to a shape: a literal, which fused kernels inline as a constant.
      v = this.emit('broadcast_to', [new Literal(compactView(x).toTyped()[0], x.dtype)], { shape: x.shape.slice() });
      this.constIndex.set(x, v);
    }
    if (v === undefined && x instanceof NDArray && broadcastAxes(x).length > 0) {
      // A broadcast constant (stride-0 axes) enters as broadcast_to of its compact data, so the
      // broadcast rewrites can see through it.
      const compact = compactView(x);
      const cv = new Var(avalOf(compact));
      this.constvars.push(cv);
      this.consts.push(compact);
      v = this.emit('broadcast_to', [cv], { shape: x.shape.slice() });
      this.constIndex.set(x, v);
    }
    if (v === undefined) {
      v = new Var(avalOf(x));
      this.constIndex.set(x, v);
      this.constvars.push(v);
      this.consts.push(x);
    }
    return v;
  }

  private readonly producers = new Map<Var, Eqn>();

  process<P extends Primitive>(prim: P, inputs: Tensor[], params: PrimParams[P]): Tensor[] {
    const atoms = inputs.map((x) => this.atom(x));
    return this.record(prim, atoms, params);
  }

  private record<P extends Primitive>(prim: P, atoms: Atom[], params: PrimParams[P]): JaxprTracer[] {
    const rewritten = rewriteBroadcast(this, prim, atoms, params);
    if (rewritten !== null) return [rewritten];
    const outAvals = shapeRules[prim](
      atoms.map((a) => a.aval),
      params,
    );
    const outputs = outAvals.map((a) => new Var(a));
    const eqn = { prim, inputs: atoms, params, outputs } as Eqn;
    this.eqns.push(eqn);
    for (const v of outputs) this.producers.set(v, eqn);
    return outputs.map((v) => new JaxprTracer(this, v));
  }

  /** Records an equation on atoms of this trace (used by the rewrite rules). */
  emit<P extends Primitive>(prim: P, atoms: Atom[], params: PrimParams[P]): Var {
    return this.record(prim, atoms, params)[0].variable;
  }

  /** If `v` was made by broadcast_to, its source and the axes the broadcast expanded. */
  broadcastOf(v: Atom): { source: Atom; axes: number[] } | null {
    if (!(v instanceof Var)) return null;
    const e = this.producers.get(v);
    if (e === undefined || e.prim !== 'broadcast_to') return null;
    const src = e.inputs[0];
    const scalarSource = src.aval.shape.length === 0;
    const axes = v.aval.shape.map((d, i) => ((scalarSource || src.aval.shape[i] === 1) && d !== 1 ? i : -1)).filter((i) => i >= 0);
    return axes.length ? { source: src, axes } : null;
  }

  finish(outs: Tensor[]): ClosedJaxpr {
    const outvars = outs.map((x) => this.atom(x));
    const jaxpr = dce({ constvars: this.constvars, invars: this.invars, eqns: this.eqns, outvars });
    return { jaxpr, consts: this.consts };
  }
}

/**
 * Broadcast sinking, applied as equations are recorded: an op on values that are broadcast along
 * some axes runs on the compact values and is broadcast afterwards. Exact (the broadcast values
 * are equal along those axes), and it is what makes a time-tiled input cost one time step: the
 * input's stride-0 time axis reaches matmul as a broadcast_to, matmul runs once per example, and
 * the backward pass, which sums over the broadcast axes, stays compact too.
 */
function rewriteBroadcast<P extends Primitive>(trace: JaxprTrace, prim: P, atoms: Atom[], params: PrimParams[P]): JaxprTracer | null {
  const wrap = (v: Var): JaxprTracer => new JaxprTracer(trace, v);
  if (prim === 'broadcast_to') {
    const inner = trace.broadcastOf(atoms[0]);
    if (inner === null) return null;
    // broadcast_to(broadcast_to(c)) = broadcast_to(c)
    return wrap(trace.emit('broadcast_to', [inner.source], params as PrimParams['broadcast_to']));
  }
  if (prim === 'transpose') {
    const b = trace.broadcastOf(atoms[0]);
    if (b === null) return null;
    const { perm } = params as PrimParams['transpose'];
    const t = b.source.aval.shape.length === 0 ? b.source : trace.emit('transpose', [b.source], { perm });
    return wrap(trace.emit('broadcast_to', [t], { shape: perm.map((p) => atoms[0].aval.shape[p]) }));
  }
  if (prim === 'reshape') {
    const b = trace.broadcastOf(atoms[0]);
    if (b === null) return null;
    const { shape } = params as PrimParams['reshape'];
    const from = atoms[0].aval.shape;
    const k = Math.max(...b.axes) + 1;
    // Only reshapes that leave every axis up to the last broadcast one alone keep the structure.
    if (shape.length < k || from.slice(0, k).some((d, i) => d !== shape[i])) return null;
    const compact = shape.map((d, i) => (b.axes.includes(i) ? 1 : d));
    const r = b.source.aval.shape.length === 0 ? b.source : trace.emit('reshape', [b.source], { shape: compact });
    return wrap(trace.emit('broadcast_to', [r], { shape: shape.slice() }));
  }
  if (ELEMENTWISE.has(prim)) {
    const vars = atoms.filter((a): a is Var => a instanceof Var);
    if (vars.length === 0) return null;
    const infos = vars.map((v) => trace.broadcastOf(v));
    if (infos.some((i) => i === null)) return null;
    let common = infos[0]!.axes;
    for (const i of infos) common = common.filter((a) => i!.axes.includes(a));
    if (common.length === 0) return null;
    const full = vars[0].aval.shape;
    const compactShape = full.map((d, i) => (common.includes(i) ? 1 : d));
    const compactAtoms = atoms.map((a) => {
      if (!(a instanceof Var)) return a;
      const src = trace.broadcastOf(a)!.source;
      return shapesEqual(src.aval.shape, compactShape) ? src : trace.emit('broadcast_to', [src], { shape: compactShape });
    });
    const y = trace.emit(prim, compactAtoms, params);
    return wrap(trace.emit('broadcast_to', [y], { shape: full.slice() }));
  }
  return null;
}

/**
 * If `x` is known to be a broadcast (a concrete stride-0 view, a traced broadcast_to, or inside
 * grad a value whose primal is one), the compact source (same rank, size 1 on the broadcast axes;
 * differentiable inside grad, see VjpTrace.compactOf) and those axes.
 */
export function broadcastSourceOf(x: Tensor): { source: Tensor; axes: number[] } | null {
  if (x instanceof NDArray) {
    const axes = broadcastAxes(x);
    return axes.length ? { source: compactView(x), axes } : null;
  }
  return x instanceof Tracer ? x.broadcastSource() : null;
}

/** Axes of a concrete array that are broadcast (stride 0, size > 1). */
export function broadcastAxes(x: NDArray): number[] {
  return x.shape.map((d, i) => (d > 1 && x.strides[i] === 0 ? i : -1)).filter((i) => i >= 0);
}

/** The same data with its broadcast axes cut to size 1 (a view). */
export function compactView(x: NDArray): NDArray {
  const axes = broadcastAxes(x);
  if (axes.length === 0) return x;
  return new NDArray(x.nd.hi(...x.shape.map((d, i) => (axes.includes(i) ? 1 : d))), x.dtype);
}

/** Drops equations whose outputs are never used (no primitive here has side effects). */
export function dce(jaxpr: Jaxpr): Jaxpr {
  const live = new Set<Var>();
  for (const a of jaxpr.outvars) if (a instanceof Var) live.add(a);
  const kept: Eqn[] = [];
  for (let i = jaxpr.eqns.length - 1; i >= 0; i--) {
    const e = jaxpr.eqns[i];
    if (!e.outputs.some((v) => live.has(v))) continue;
    kept.push(e);
    for (const a of e.inputs) if (a instanceof Var) live.add(a);
  }
  kept.reverse();
  return { ...jaxpr, eqns: kept };
}

/** Traces `fn` on abstract values of the given avals into a closed jaxpr. */
export function traceToJaxpr(fn: (args: Tensor[]) => Tensor[], avals: readonly Aval[]): ClosedJaxpr {
  const trace = new JaxprTrace();
  try {
    const args = avals.map((a) => trace.newArg(a));
    const outs = fn(args);
    for (const o of outs) {
      if (!(o instanceof Tensor)) throw new TypeError(`traced function returned ${typeof o} where an array was expected`);
    }
    return trace.finish(outs);
  } finally {
    trace.alive = false;
  }
}

/**
 * The jaxpr with its constvars turned into leading invars: scan bodies take their constants as
 * ordinary leading arguments, so one calling convention serves the eager loop and the VJP.
 */
export function constsAsArgs(jaxpr: Jaxpr): Jaxpr {
  return { constvars: [], invars: [...jaxpr.constvars, ...jaxpr.invars], eqns: jaxpr.eqns, outvars: jaxpr.outvars };
}

/** Evaluates a jaxpr by binding each equation (so an enclosing trace records it). */
export function evalJaxpr(jaxpr: Jaxpr, consts: readonly Tensor[], args: readonly Tensor[]): Tensor[] {
  if (args.length !== jaxpr.invars.length) throw new ShapeError(`evalJaxpr: expected ${jaxpr.invars.length} arguments, got ${args.length}`);
  const env = new Map<Var, Tensor>();
  jaxpr.constvars.forEach((v, i) => env.set(v, consts[i]));
  jaxpr.invars.forEach((v, i) => env.set(v, args[i]));
  const read = (a: Atom): Tensor => {
    if (a instanceof Literal) return literalArray(a);
    const x = env.get(a);
    if (x === undefined) throw new Error('evalJaxpr: unbound variable (malformed jaxpr)');
    return x;
  };
  for (const eqn of jaxpr.eqns) {
    const outs = bind(eqn.prim, eqn.inputs.map(read), eqn.params);
    eqn.outputs.forEach((v, i) => env.set(v, outs[i]));
  }
  return jaxpr.outvars.map((a) => (a instanceof Literal ? literalResult(a) : read(a)));
}

const literalCache = new Map<string, NDArray>();
/**
 * A literal as a result handed to the caller: a fresh array, never the cached one that every
 * program shares as an operand (the caller may dispose what it gets).
 */
export function literalResult(lit: Literal): NDArray {
  return scalarArray(lit.value, lit.dtype);
}
export function literalArray(lit: Literal): NDArray {
  const k = `${lit.dtype}:${numberText(lit.value)}`;
  let a = literalCache.get(k);
  if (a === undefined) {
    a = scalarArray(lit.value, lit.dtype);
    if (literalCache.size < 4096) literalCache.set(k, a);
  }
  return a;
}

import { scalar as scalarArray } from './ndarray.js';
