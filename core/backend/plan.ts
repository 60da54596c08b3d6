/**
 * The fusion planner shared by the backends' compilers: it partitions a jaxpr into fused
 * elementwise groups (one open group per output shape, so interleaved chains such as an
 * optimizer's per-leaf updates still fuse; a reduction absorbs its elementwise prologue) and
 * single equations, in an order that respects every dependency. Backends only turn the plan into
 * their own code (JS loops, gpu.js kernels).
 */
import { Literal, Var, type Atom, type Eqn, type Jaxpr } from '../ir.js';
import { ELEMENTWISE, type PrimParams, type Primitive } from '../primitives.js';

export type ReduceOp = 'sum' | 'max' | 'min';
export const REDUCE_OPS: Partial<Record<Primitive, ReduceOp>> = { reduce_sum: 'sum', reduce_max: 'max', reduce_min: 'min' };

export interface FusionGroup {
  readonly shape: readonly number[];
  /** Elementwise equations in program order. */
  readonly eqns: readonly Eqn[];
  /** Vars read from outside the group, in first-use order (broadcast literals excluded). */
  readonly inputs: readonly Var[];
  /** Values the group must write out (used later, or program outputs). */
  readonly outputs: readonly Var[];
  /** A reduction over the group's last value; then `outputs` is exactly the reduction's output. */
  readonly reduce?: { readonly op: ReduceOp; readonly axes: readonly number[]; readonly input: Var; readonly output: Var };
}

export type PlanItem = { readonly kind: 'group'; readonly group: FusionGroup } | { readonly kind: 'eqn'; readonly eqn: Eqn };

export interface PlanOptions {
  /** Whether this backend can fuse the elementwise equation (default: every elementwise primitive). */
  fusible?(e: Eqn): boolean;
  /** Whether a reduction may end a group on this backend (default: all). */
  reducible?(e: Eqn): boolean;
}

export interface Plan {
  readonly items: readonly PlanItem[];
  /** The literal a var stands for when it is one literal broadcast to a shape (inlined by codegen). */
  literalOf(a: Atom): Literal | undefined;
}

interface OpenGroup {
  shape: readonly number[];
  eqns: Eqn[];
  inputs: Var[];
  produced: Set<Var>;
  reduce?: { op: ReduceOp; axes: number[]; input: Var; output: Var };
}

export function planFusion(jaxpr: Jaxpr, options: PlanOptions = {}): Plan {
  const fusible = options.fusible ?? (() => true);
  const reducible = options.reducible ?? (() => true);
  const consumers = new Map<Var, number[]>();
  jaxpr.eqns.forEach((e, i) => {
    for (const a of e.inputs) if (a instanceof Var) consumers.set(a, [...(consumers.get(a) ?? []), i]);
  });
  const outSet = new Set<Var>(jaxpr.outvars.filter((a): a is Var => a instanceof Var));
  const eqnIndex = new Map<Eqn, number>(jaxpr.eqns.map((e, i) => [e, i]));
  const literals = new Map<Var, Literal>();
  const literalOf = (a: Atom): Literal | undefined => (a instanceof Literal ? a : literals.get(a));

  const items: PlanItem[] = [];
  const open = new Map<string, OpenGroup>();
  const groupOfVar = new Map<Var, OpenGroup>();

  const flush = (g: OpenGroup): void => {
    open.delete(g.shape.join(','));
    for (const v of g.produced) groupOfVar.delete(v);
    const members = new Set(g.eqns.map((e) => eqnIndex.get(e)!));
    const needed = (v: Var): boolean => outSet.has(v) || (consumers.get(v) ?? []).some((c) => !members.has(c));
    let reduce = g.reduce;
    let eqns = g.eqns;
    let outputs = eqns.flatMap((e) => e.outputs).filter(needed);
    let lateReduce: Eqn | undefined;
    if (reduce && (outputs.length !== 1 || outputs[0] !== reduce.output || needed(reduce.input))) {
      // The prologue is needed elsewhere too: write it out, then reduce it on its own.
      reduce = undefined;
      lateReduce = eqns[eqns.length - 1];
      eqns = eqns.slice(0, -1);
      members.delete(eqnIndex.get(lateReduce)!);
      outputs = eqns.flatMap((e) => e.outputs).filter(needed);
    }
    if (outputs.length > 0) {
      const body = reduce ? eqns.slice(0, -1) : eqns;
      items.push({ kind: 'group', group: { shape: g.shape, eqns: body, inputs: g.inputs, outputs, reduce } });
    }
    if (lateReduce) items.push({ kind: 'eqn', eqn: lateReduce });
  };
  const flushProducers = (atoms: readonly Atom[]): void => {
    for (const a of atoms) {
      const g = a instanceof Var ? groupOfVar.get(a) : undefined;
      if (g !== undefined) flush(g);
    }
  };

  for (const e of jaxpr.eqns) {
    if (e.prim === 'broadcast_to' && e.inputs[0] instanceof Literal) literals.set(e.outputs[0], e.inputs[0]);
    if (ELEMENTWISE.has(e.prim) && fusible(e)) {
      const shape = e.outputs[0].aval.shape;
      const key = shape.join(',');
      let g = open.get(key);
      if (g === undefined) {
        g = { shape, eqns: [], inputs: [], produced: new Set() };
        open.set(key, g);
      }
      for (const a of e.inputs) if (a instanceof Var && !g.produced.has(a) && !literals.has(a) && !g.inputs.includes(a)) g.inputs.push(a);
      g.produced.add(e.outputs[0]);
      groupOfVar.set(e.outputs[0], g);
      g.eqns.push(e);
      continue;
    }
    const op = REDUCE_OPS[e.prim];
    const src = e.inputs[0] instanceof Var ? groupOfVar.get(e.inputs[0]) : undefined;
    if (op && src !== undefined && reducible(e)) {
      src.reduce = { op, axes: (e.params as { axes: number[] }).axes, input: e.inputs[0] as Var, output: e.outputs[0] };
      src.eqns.push(e);
      flush(src);
      continue;
    }
    // Views are index arithmetic and other kernels run in order; either way the groups that
    // produce their inputs are written out first.
    flushProducers(e.inputs);
    items.push({ kind: 'eqn', eqn: e });
  }
  for (const g of [...open.values()]) flush(g);
  return { items, literalOf };
}

/**
 * Replaces every custom_vjp_call by the equations of its primal function (what the call computes;
 * its fwd and bwd matter only to differentiation, which has already happened when a jaxpr is
 * compiled), so a spiking neuron's scan is planned like any other. Both backends' compilers call it;
 * scan bodies are inlined when they are compiled.
 */
export function inlineCustomVjp(jaxpr: Jaxpr): Jaxpr {
  if (!jaxpr.eqns.some((e) => e.prim === 'custom_vjp_call')) return jaxpr;
  const subst = new Map<Var, Atom>();
  const sub = (a: Atom): Atom => (a instanceof Var ? (subst.get(a) ?? a) : a);
  const eqns: Eqn[] = [];
  for (const e of jaxpr.eqns) {
    const inputs = e.inputs.map(sub);
    if (e.prim !== 'custom_vjp_call') {
      eqns.push(inputs.every((a, i) => a === e.inputs[i]) ? e : { ...e, inputs });
      continue;
    }
    const p = e.params as PrimParams['custom_vjp_call'];
    const fun = inlineCustomVjp(p.fun);
    const args = [...inputs.slice(0, p.numFunConsts), ...inputs.slice(p.numFunConsts + p.numFwdConsts + p.numBwdConsts)];
    const local = new Map<Var, Atom>();
    fun.invars.forEach((v, i) => local.set(v, args[i]));
    const loc = (a: Atom): Atom => (a instanceof Var ? (local.get(a) ?? a) : a);
    for (const fe of fun.eqns) {
      // Fresh output vars: the same function may be inlined more than once.
      const outputs = fe.outputs.map((v) => new Var(v.aval));
      const ins = fe.inputs.map(loc);
      fe.outputs.forEach((v, i) => local.set(v, outputs[i]));
      eqns.push({ prim: fe.prim, inputs: ins, params: fe.params, outputs });
    }
    e.outputs.forEach((v, i) => subst.set(v, loc(fun.outvars[i])));
  }
  return { constvars: jaxpr.constvars, invars: jaxpr.invars, eqns, outvars: jaxpr.outvars.map(sub) };
}
