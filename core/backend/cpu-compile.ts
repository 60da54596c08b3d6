/**
 * The CPU backend's jaxpr compiler: partitions equations into fused elementwise groups (with an
 * optional reduction absorbing its elementwise prologue) and plain kernel calls, then runs the
 * plan with a slot array, releasing each intermediate after its last use.
 */
import { debugEnabled } from '../debug.js';
import { Literal, Var, printJaxpr, type Atom, type Eqn, type Jaxpr } from '../ir.js';
import type { NDArray } from '../ndarray.js';
import { ELEMENTWISE, type PrimParams, type Primitive } from '../primitives.js';
import { literalArray } from '../trace.js';
import { elementwiseCode, runFused, storeAs, type ElementwisePrim, type FusedProgram, type ReduceOp } from './fusion.js';

type KernelTable = { [P in Primitive]: (inputs: NDArray[], params: PrimParams[P]) => NDArray[] };
type Step = { run: (env: (NDArray | undefined)[]) => void; describe: string; reads: number[]; release: number[] };

const REDUCE: Partial<Record<Primitive, ReduceOp>> = { reduce_sum: 'sum', reduce_max: 'max', reduce_min: 'min' };

interface Group {
  shape: readonly number[];
  eqns: Eqn[];
  inputs: Var[];
  temps: Map<Var, string>;
  lines: string[];
  reduce?: { op: ReduceOp; axes: number[]; input: Var; output: Var };
}

export function compileJaxpr(jaxpr: Jaxpr, kernels: KernelTable): (consts: NDArray[], args: NDArray[]) => NDArray[] {
  const slots = new Map<Var, number>();
  const slotOf = (v: Var): number => {
    let s = slots.get(v);
    if (s === undefined) {
      s = slots.size;
      slots.set(v, s);
    }
    return s;
  };
  jaxpr.constvars.forEach(slotOf);
  jaxpr.invars.forEach(slotOf);

  // Which equation consumes each var, to decide what a fused group must write out.
  const consumers = new Map<Var, number[]>();
  jaxpr.eqns.forEach((e, i) => {
    for (const a of e.inputs) if (a instanceof Var) consumers.set(a, [...(consumers.get(a) ?? []), i]);
  });
  const outSet = new Set<Var>(jaxpr.outvars.filter((a): a is Var => a instanceof Var));
  const eqnIndex = new Map<Eqn, number>(jaxpr.eqns.map((e, i) => [e, i]));

  const steps: Step[] = [];
  const read = (a: Atom, env: (NDArray | undefined)[]): NDArray => (a instanceof Literal ? literalArray(a) : (env[slots.get(a)!] as NDArray));

  const emitKernel = (e: Eqn): void => {
    const kernel = kernels[e.prim] as (inputs: NDArray[], params: unknown) => NDArray[];
    const outSlots = e.outputs.map(slotOf);
    const inputs = e.inputs;
    steps.push({
      describe: e.prim,
      reads: inputs.filter((a): a is Var => a instanceof Var).map(slotOf),
      release: [],
      run: (env) => {
        const outs = kernel(
          inputs.map((a) => read(a, env)),
          e.params,
        );
        for (let i = 0; i < outSlots.length; i++) env[outSlots[i]] = outs[i];
      },
    });
  };

  // Open groups, one per output shape: interleaved chains (an optimizer's update of several
  // parameter leaves) still fuse into one kernel per shape.
  const groups = new Map<string, Group>();
  const groupOfVar = new Map<Var, Group>();
  const flushGroup = (g: Group): void => {
    groups.delete(g.shape.join(','));
    for (const v of g.temps.keys()) groupOfVar.delete(v);
    const members = new Set(g.eqns.map((e) => eqnIndex.get(e)!));
    const needed = (v: Var): boolean => outSet.has(v) || (consumers.get(v) ?? []).some((c) => !members.has(c));
    const produced = g.eqns.flatMap((e) => e.outputs);
    let outputs = produced.filter(needed);
    let reduce = g.reduce;
    if (reduce && (outputs.length !== 1 || outputs[0] !== reduce.output || needed(reduce.input))) reduce = undefined;
    let reduceEqn: Eqn | undefined;
    if (g.reduce && !reduce) {
      // The prologue is needed elsewhere too: write it out, then reduce it in a kernel of its own.
      reduceEqn = g.eqns[g.eqns.length - 1];
      members.delete(eqnIndex.get(reduceEqn)!);
      outputs = g.eqns.slice(0, -1).flatMap((e) => e.outputs).filter(needed);
    }
    if (outputs.length > 0) {
      const prog: FusedProgram = reduce
        ? { numInputs: g.inputs.length, lines: g.lines, outputs: [g.temps.get(reduce.input)!], outDtypes: [reduce.output.aval.dtype], reduce: { op: reduce.op, axes: reduce.axes } }
        : { numInputs: g.inputs.length, lines: g.lines, outputs: outputs.map((v) => g.temps.get(v)!), outDtypes: outputs.map((v) => v.aval.dtype) };
      const inSlots = g.inputs.map(slotOf);
      const outSlots = outputs.map(slotOf);
      const shape = g.shape;
      steps.push({
        describe: `fused[${g.eqns.map((e) => e.prim).join(',')}]`,
        reads: inSlots,
        release: [],
        run: (env) => {
          const outs = runFused(
            prog,
            inSlots.map((s) => env[s] as NDArray),
            shape,
          );
          for (let i = 0; i < outSlots.length; i++) env[outSlots[i]] = outs[i];
        },
      });
    }
    if (reduceEqn) emitKernel(reduceEqn);
  };
  const flushAll = (): void => {
    for (const g of [...groups.values()]) flushGroup(g);
  };
  const groupOf = (a: Atom): Group | undefined => (a instanceof Var ? groupOfVar.get(a) : undefined);
  /** Flushes the open groups that produce any of `atoms` (they must be written before a kernel reads them). */
  const flushProducers = (atoms: readonly Atom[]): void => {
    for (const a of atoms) {
      const g = groupOf(a);
      if (g !== undefined) flushGroup(g);
    }
  };

  // Vars that are one literal broadcast to a shape: fused kernels inline the value.
  const literalOf = new Map<Var, Literal>();
  for (const e of jaxpr.eqns) {
    if (e.prim === 'broadcast_to' && e.inputs[0] instanceof Literal) literalOf.set(e.outputs[0], e.inputs[0]);
    if (ELEMENTWISE.has(e.prim)) {
      const shape = e.outputs[0].aval.shape;
      const key = shape.join(',');
      let g = groups.get(key);
      if (g === undefined) {
        g = { shape, eqns: [], inputs: [], temps: new Map(), lines: [] };
        groups.set(key, g);
      }
      const grp: Group = g;
      const args = e.inputs.map((a) => {
        if (a instanceof Literal) return `(${String(a.value)})`;
        const lit = literalOf.get(a);
        if (lit !== undefined) return `(${String(lit.value)})`;
        const t = grp.temps.get(a);
        if (t !== undefined) return t;
        let i = grp.inputs.indexOf(a);
        if (i < 0) i = grp.inputs.push(a) - 1;
        return `v${i}`;
      });
      const out = e.outputs[0];
      const name = `t${grp.temps.size}`;
      const code = elementwiseCode[e.prim as ElementwisePrim](args, e.params as Record<string, unknown>, out.aval.dtype);
      grp.lines.push(`const ${name}=${storeAs(code, out.aval.dtype)};`);
      grp.temps.set(out, name);
      groupOfVar.set(out, grp);
      grp.eqns.push(e);
      continue;
    }
    const op = REDUCE[e.prim];
    const src = groupOf(e.inputs[0]);
    if (op && src !== undefined) {
      src.reduce = { op, axes: (e.params as { axes: number[] }).axes, input: e.inputs[0] as Var, output: e.outputs[0] };
      src.eqns.push(e);
      flushGroup(src);
      continue;
    }
    // Views of computed values are O(rank) index arithmetic; other kernels run in order. Either
    // way, the groups that produce their inputs are written out first.
    flushProducers(e.inputs);
    emitKernel(e);
  }
  flushAll();

  // Release each intermediate after the step that reads it last (inputs and outputs stay).
  const keep = new Set<number>([...jaxpr.invars.map(slotOf), ...jaxpr.constvars.map(slotOf), ...[...outSet].map(slotOf)]);
  const lastRead = new Map<number, number>();
  steps.forEach((st, i) => st.reads.forEach((slot) => lastRead.set(slot, i)));
  for (const [slot, i] of lastRead) if (!keep.has(slot)) steps[i].release.push(slot);

  const outAtoms = jaxpr.outvars;
  if (debugEnabled('plan')) console.error(`[spiketrace plan]\n${printJaxpr(jaxpr)}\n${steps.map((s) => '  ' + s.describe).join('\n')}`);
  const nSlots = slots.size;
  return (consts, args) => {
    const env = new Array<NDArray | undefined>(nSlots);
    jaxpr.constvars.forEach((v, i) => (env[slots.get(v)!] = consts[i]));
    jaxpr.invars.forEach((v, i) => (env[slots.get(v)!] = args[i]));
    for (const s of steps) {
      s.run(env);
      for (const r of s.release) env[r] = undefined;
    }
    return outAtoms.map((a) => read(a, env));
  };
}
