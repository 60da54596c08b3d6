/**
 * The CPU backend's jaxpr compiler: turns the shared fusion plan (core/backend/plan.ts) into
 * generated JS loops and kernel calls, then runs it with a slot array, releasing each
 * intermediate after its last use.
 */
import { debugEnabled } from '../debug.js';
import { Literal, Var, printJaxpr, type Atom, type Eqn, type Jaxpr } from '../ir.js';
import type { NDArray } from '../ndarray.js';
import type { PrimParams, Primitive } from '../primitives.js';
import { literalArray } from '../trace.js';
import { elementwiseCode, runFused, storeAs, type ElementwisePrim, type FusedProgram } from './fusion.js';
import { planFusion, type FusionGroup } from './plan.js';

type KernelTable = { [P in Primitive]: (inputs: NDArray[], params: PrimParams[P]) => NDArray[] };
type Step = { run: (env: (NDArray | undefined)[]) => void; describe: string; reads: number[]; release: number[] };


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

  const emitGroup = (g: FusionGroup): void => {
    // JS code for the group: inputs v0.., temps t0.., broadcast literals inlined.
    const temps = new Map<Var, string>();
    const lines = g.eqns.map((e, k) => {
      const args = e.inputs.map((a) => {
        const lit = plan.literalOf(a);
        if (lit !== undefined) return `(${String(lit.value)})`;
        return temps.get(a as Var) ?? `v${g.inputs.indexOf(a as Var)}`;
      });
      const out = e.outputs[0];
      temps.set(out, `t${k}`);
      return `const t${k}=${storeAs(elementwiseCode[e.prim as ElementwisePrim](args, e.params as Record<string, unknown>, out.aval.dtype), out.aval.dtype)};`;
    });
    const r = g.reduce;
    const prog: FusedProgram = r
      ? { numInputs: g.inputs.length, lines, outputs: [temps.get(r.input) ?? `v${g.inputs.indexOf(r.input)}`], outDtypes: [r.output.aval.dtype], reduce: { op: r.op, axes: r.axes } }
      : { numInputs: g.inputs.length, lines, outputs: g.outputs.map((v) => temps.get(v)!), outDtypes: g.outputs.map((v) => v.aval.dtype) };
    const inSlots = g.inputs.map(slotOf);
    const outSlots = g.outputs.map(slotOf);
    const shape = r ? r.input.aval.shape : g.shape;
    steps.push({
      describe: `fused[${g.eqns.map((e) => e.prim).join(',')}${r ? `,reduce_${r.op}` : ''}]`,
      reads: inSlots,
      release: [],
      run: (env) => {
        const outs = runFused(
          prog,
          inSlots.map((sl) => env[sl] as NDArray),
          shape,
        );
        for (let i = 0; i < outSlots.length; i++) env[outSlots[i]] = outs[i];
      },
    });
  };

  const plan = planFusion(jaxpr);
  for (const item of plan.items) {
    if (item.kind === 'group') emitGroup(item.group);
    else emitKernel(item.eqn);
  }

  // Release each intermediate after the step that reads it last (inputs and outputs stay).
  const outVars = jaxpr.outvars.filter((a): a is Var => a instanceof Var);
  const keep = new Set<number>([...jaxpr.invars.map(slotOf), ...jaxpr.constvars.map(slotOf), ...outVars.map(slotOf)]);
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
