/**
 * The CPU backend's jaxpr compiler: turns the shared fusion plan (core/backend/plan.ts) into
 * generated JS loops and kernel calls, then runs it with a slot array, releasing each
 * intermediate after its last use.
 */
import { debugEnabled, profileRecord } from '../debug.js';
import { Literal, Var, printJaxpr, type Atom, type Eqn, type Jaxpr } from '../ir.js';
import { makeView, NDArray } from '../ndarray.js';
import type { PrimParams, Primitive } from '../primitives.js';
import type { CompiledProgram } from '../backends.js';
import { literalArray, literalResult } from '../trace.js';
import { opLine, runFused, type FusedArg, type FusedOp, type FusedProgram } from './fusion.js';
import type { ElementwisePrim } from './scalar-ops.js';
import { inlineCustomVjp, planFusion, type FusionGroup } from './plan.js';
import { runWasmFused, wasmFusedSpec, type WasmFusedSpec } from './wasm/elementwise.js';
import { runWasmReduce, type WasmReduceSpec } from './wasm/reduce.js';
import { giveBuffer, isResident, recyclable, residentActive, residentScope, takeBuffer } from './pool.js';
import type { TypedArray } from '../dtype.js';

/**
 * Fewest elements for which a float32 group runs as WebAssembly SIMD rather than a JS loop
 * (below it the copies and the call cost more than the loop; measured with npm run bench:kernels).
 */
const WASM_ELEMENTWISE_MIN = 256;

type KernelTable = { [P in Primitive]: (inputs: NDArray[], params: PrimParams[P]) => NDArray[] };
/**
 * A compiled step as plain data, run by the module-level `runStep` (not a closure per step): V8
 * keeps type feedback and optimized code per closure, so closures made per step and per program
 * would each start cold, and a training step's first hundreds of calls ran unoptimized.
 */
type Step = KernelStep | GroupStep;
interface StepBase {
  describe: string;
  reads: number[];
  writes: number[];
  release: number[];
  /** Donated arguments whose last reader this step is. */
  releaseDonated: { arg: number; slot: number }[];
  /**
   * Whether everything this step writes is a program result that no later step reads: when the
   * results leave for the caller as ordinary arrays, the step then writes them there directly
   * instead of into the arena and a copy.
   */
  leaves: boolean;
}
interface KernelStep extends StepBase {
  kind: 'kernel';
  prim: Primitive;
  kernel: (inputs: NDArray[], params: unknown) => NDArray[];
  params: unknown;
  inSlots: number[];
  /** Literal operands, resolved at compile time (undefined: read the slot). */
  fixed: (NDArray | undefined)[];
  args: NDArray[];
}
interface GroupStep extends StepBase {
  kind: 'group';
  shape: readonly number[];
  prog: FusedProgram;
  wasmSpec: WasmFusedSpec | null;
  reduceSpec: WasmReduceSpec | null;
  axes: readonly number[];
  ins: NDArray[];
  /** Input positions whose slot this step releases (intermediates, or donated arguments). */
  releasedInputs: number[];
}

/**
 * Buffers a fused WebAssembly group may write its results into in place: inputs read for the last
 * time here that nothing else holds (an Adam update's donated parameter and moments, a gradient),
 * whole contiguous float32 or bool buffers of the result's size. Every element is read before it
 * is written at the same position (all loads of a vector come before its stores), so writing
 * over the inputs is exact, and it keeps an optimizer step's memory footprint to its inputs'.
 */
function inPlaceTargets(
  s: GroupStep,
  env: (NDArray | undefined)[],
  live: Map<TypedArray, number>,
  donated: readonly boolean[] | undefined,
  argOfSlot: Map<number, number>,
): (TypedArray | undefined)[] | undefined {
  if (s.wasmSpec === null || s.releasedInputs.length === 0) return undefined;
  // A row whose length is not a multiple of 4 lanes ends with a store into the next row's first
  // elements before that row is read: only whole-vector rows (or one row) may alias an input.
  const rank = s.shape.length;
  if (rank > 1 && s.shape[rank - 1] % 4 !== 0) return undefined;
  const size = s.shape.reduce((a, c) => a * c, 1);
  let reuse: (TypedArray | undefined)[] | undefined;
  for (const i of s.releasedInputs) {
    const slot = s.reads[i];
    const arg = argOfSlot.get(slot);
    if (arg !== undefined && donated?.[arg] !== true) continue;
    const x = env[slot];
    if (x === undefined || x.offset !== 0 || x.data.length !== size || !recyclable(x.data) || live.get(x.data) !== 1 || !x.isContiguous())
      continue;
    const t = s.wasmSpec.inputTypes[i];
    for (let j = 0; j < s.wasmSpec.outputTypes.length; j++) {
      if (s.wasmSpec.outputTypes[j] !== t || reuse?.[j] !== undefined) continue;
      if (t === 'f32' ? !(x.data instanceof Float32Array) : !(x.data instanceof Uint8Array)) break;
      reuse ??= new Array<TypedArray | undefined>(s.wasmSpec.outputTypes.length);
      reuse[j] = x.data;
      break;
    }
  }
  return reuse;
}

function runStep(s: Step, env: (NDArray | undefined)[], reuse?: (TypedArray | undefined)[]): void {
  if (s.kind === 'kernel') {
    const args = s.args;
    for (let i = 0; i < args.length; i++) args[i] = s.fixed[i] ?? (env[s.inSlots[i]] as NDArray);
    const outs = s.kernel(args, s.params);
    args.fill(NO_ARRAY);
    for (let i = 0; i < s.writes.length; i++) env[s.writes[i]] = outs[i];
    return;
  }
  const ins = s.ins;
  for (let i = 0; i < ins.length; i++) ins[i] = env[s.reads[i]] as NDArray;
  const reduced = s.reduceSpec !== null ? runWasmReduce(s.reduceSpec, ins, s.shape, s.axes) : null;
  const outs =
    reduced !== null
      ? [reduced]
      : ((s.wasmSpec !== null ? runWasmFused(s.wasmSpec, ins, s.shape, reuse) : null) ?? runFused(s.prog, ins, s.shape));
  ins.fill(NO_ARRAY);
  for (let i = 0; i < s.writes.length; i++) env[s.writes[i]] = outs[i];
}

/** Placeholder left in a step's reusable argument array between calls (holds no buffer alive). */
/** Shapes for a profile label: "32x784,784x128". */
const shapes = (vs: readonly { readonly aval: { readonly shape: readonly number[] } }[]): string =>
  vs.map((v) => v.aval.shape.join('x')).join(',');

const NO_ARRAY = undefined as unknown as NDArray;

/** The per-program data the module-level runner needs. */
interface Program {
  steps: Step[];
  nSlots: number;
  constSlots: number[];
  argSlots: number[];
  outAtoms: readonly Atom[];
  slots: Map<Var, number>;
  /** Argument position of each argument slot. */
  argOfSlot: Map<number, number>;
  /** Arguments no step reads and no output returns: released at once when donated. */
  unreadArgs: { arg: number; slot: number }[];
  profile: boolean;
}

/**
 * Runs a program's steps. Buffers are recycled by reference count over the live slots: a view
 * (reshape, transpose, broadcast) shares its source's buffer, so a buffer goes back to the pool
 * only when the last slot holding it is released; buffers of inputs, constants and outputs are
 * never released.
 */
function runProgram(
  p: Program,
  consts: NDArray[],
  args: NDArray[],
  donated: readonly boolean[] | undefined,
  resultsLeave: boolean,
): NDArray[] {
  const env = new Array<NDArray | undefined>(p.nSlots);
  const live = new Map<TypedArray, number>();
  for (let i = 0; i < consts.length; i++) env[p.constSlots[i]] = consts[i];
  for (let i = 0; i < args.length; i++) env[p.argSlots[i]] = args[i];
  // Every buffer in the environment counts once per slot holding it; caller-owned ones (not
  // donated) count once more, so that they are never given back.
  for (const x of env) hold(live, x);
  for (const x of consts) hold(live, x);
  for (let i = 0; i < args.length; i++) if (donated?.[i] !== true) hold(live, args[i]);
  // A donated argument nothing reads (a scan carry or layer state the body overwrites) goes back
  // now; otherwise its buffer would be lost to the pool.
  if (donated !== undefined) for (const { arg, slot } of p.unreadArgs) if (donated[arg] === true) drop(live, env, slot);
  const steps = p.steps;
  for (let k = 0; k < steps.length; k++) {
    const s = steps[k];
    const reuse = s.kind === 'group' ? inPlaceTargets(s, env, live, donated, p.argOfSlot) : undefined;
    const t0 = p.profile ? performance.now() : 0;
    // A result made in the arena would be copied out to the caller at the end (a per-example
    // gradient of 12.8 MB: written, read back and written again into fresh memory); ordinary
    // memory from the start is written once.
    if (resultsLeave && s.leaves) residentScope(false, () => runStep(s, env, reuse));
    else runStep(s, env, reuse);
    if (p.profile) profileRecord(s.describe, performance.now() - t0);
    for (const w of s.writes) hold(live, env[w]);
    for (const r of s.release) drop(live, env, r);
    if (donated !== undefined) for (const { arg, slot } of s.releaseDonated) if (donated[arg] === true) drop(live, env, slot);
  }
  return p.outAtoms.map((a) => (a instanceof Literal ? literalResult(a) : (env[p.slots.get(a)!] as NDArray)));
}

function hold(live: Map<TypedArray, number>, x: NDArray | undefined): void {
  if (x !== undefined && recyclable(x.data)) live.set(x.data, (live.get(x.data) ?? 0) + 1);
}

function drop(live: Map<TypedArray, number>, env: (NDArray | undefined)[], slot: number): void {
  const x = env[slot];
  env[slot] = undefined;
  if (x === undefined || !recyclable(x.data)) return;
  const n = live.get(x.data)! - 1;
  if (n > 0) live.set(x.data, n);
  else {
    live.delete(x.data);
    giveBuffer(x.data, x.dtype);
  }
}

/**
 * A compiled program (core/backends.ts CompiledProgram): `donated[i]` lets it recycle argument i's
 * buffer after its last use; `keepInBackend` lets results stay in the kernels' arena (the caller
 * then passes them back donated or copies them out with detachResident, the backend's `toHost`),
 * otherwise the outermost call copies them out.
 */
export type { CompiledProgram };

/**
 * Ordinary (non-arena) copies of the arrays that live in the kernels' arena; views keep their
 * shape, strides and offset, and views of one buffer share one copy. With `recycle`, the arena
 * buffers copied are given back to the pool (the caller promises never to use the originals).
 * The copies come from the pool's ordinary (non-arena) buffers, so results the caller disposes
 * (`dispose`) or donates go back there too.
 */
export function detachResident(xs: readonly NDArray[], recycle = false): NDArray[] {
  const copies = new Map<TypedArray, TypedArray>();
  const out = xs.map((x) => {
    if (!isResident(x.data)) return x;
    let copy = copies.get(x.data);
    if (copy === undefined) {
      const n = x.data.length;
      copy = residentScope(false, () => takeBuffer(x.dtype, n));
      copy.set(x.data as never);
      copies.set(x.data, copy);
    }
    return new NDArray(makeView(copy, x.shape.slice(), x.strides.slice(), x.offset), x.dtype);
  });
  if (recycle) for (const x of xs) if (copies.delete(x.data) && recyclable(x.data)) giveBuffer(x.data, x.dtype);
  return out;
}

export function compileJaxpr(input: Jaxpr, kernels: KernelTable): CompiledProgram {
  // A custom_vjp_call computes its primal function: compiled inline, it fuses like any other code.
  const jaxpr = inlineCustomVjp(input);
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

  const emitKernel = (e: Eqn): void => {
    const kernel = kernels[e.prim] as (inputs: NDArray[], params: unknown) => NDArray[];
    const outSlots = e.outputs.map(slotOf);
    const inputs = e.inputs;
    // Literal operands are resolved once, here; variables by slot at run time.
    const fixed = inputs.map((a) => (a instanceof Literal ? literalArray(a) : undefined));
    const inSlots = inputs.map((a) => (a instanceof Var ? slotOf(a) : -1));
    steps.push({
      kind: 'kernel',
      prim: e.prim,
      // A matmul's label names its operands too: the products of a step share output shapes.
      describe: `${e.prim} ${shapes(e.outputs)}${e.prim === 'matmul' ? ` <- ${shapes(e.inputs)}` : ''}`,
      reads: inputs.filter((a): a is Var => a instanceof Var).map(slotOf),
      writes: outSlots,
      release: [],
      releaseDonated: [],
      leaves: false,
      kernel,
      params: e.params,
      inSlots,
      fixed,
      args: new Array<NDArray>(inSlots.length).fill(NO_ARRAY),
    });
  };

  const emitGroup = (g: FusionGroup): void => {
    // JS code for the group: inputs v0.., temps t0.., broadcast literals inlined.
    const temps = new Map<Var, string>();
    const tempIndex = new Map<Var, number>();
    const ops = g.eqns.map((e, k): FusedOp => {
      const args = e.inputs.map((a): FusedArg => {
        const lit = plan.literalOf(a);
        if (lit !== undefined) return { literal: lit.value };
        const t = tempIndex.get(a as Var);
        return t !== undefined ? { temp: t } : { input: g.inputs.indexOf(a as Var) };
      });
      const out = e.outputs[0];
      temps.set(out, `t${k}`);
      tempIndex.set(out, k);
      return { prim: e.prim as ElementwisePrim, params: e.params as Record<string, unknown>, dtype: out.aval.dtype, args };
    });
    const lines = ops.map((op, k) => opLine(k, op));
    const r = g.reduce;
    const prog: FusedProgram = r
      ? {
          numInputs: g.inputs.length,
          ops,
          lines,
          outputs: [temps.get(r.input) ?? `v${g.inputs.indexOf(r.input)}`],
          outDtypes: [r.output.aval.dtype],
          reduce: { op: r.op, axes: r.axes },
        }
      : {
          numInputs: g.inputs.length,
          ops,
          lines,
          outputs: g.outputs.map((v) => temps.get(v)!),
          outDtypes: g.outputs.map((v) => v.aval.dtype),
        };
    const inSlots = g.inputs.map(slotOf);
    const outSlots = g.outputs.map(slotOf);
    const shape = r ? r.input.aval.shape : g.shape;
    const size = shape.reduce((a, c) => a * c, 1);
    const wasmSpec = r || size < WASM_ELEMENTWISE_MIN ? null : wasmFusedSpec(g.eqns, g.inputs, g.outputs, plan.literalOf);
    let reduceSpec: WasmReduceSpec | null = null;
    // The reduction kernel reads float32 operands only.
    if (r && size >= WASM_ELEMENTWISE_MIN && r.output.aval.dtype === 'float32' && g.inputs.every((v) => v.aval.dtype === 'float32')) {
      const i = g.inputs.indexOf(r.input);
      const prologue: WasmFusedSpec | null =
        i >= 0 && g.eqns.length === 0
          ? { numInputs: g.inputs.length, eqns: [], outputs: [], inputTypes: g.inputs.map(() => 'f32' as const), outputTypes: [] }
          : wasmFusedSpec(g.eqns, g.inputs, [r.input], plan.literalOf);
      if (prologue)
        reduceSpec = { prologue, reduced: i >= 0 && g.eqns.length === 0 ? { input: i } : { temp: prologue.outputs[0] }, op: r.op };
    }
    steps.push({
      kind: 'group',
      describe: `${wasmSpec || reduceSpec ? 'wasm-' : ''}fused[${g.eqns.map((e) => e.prim).join(',')}${r ? `,reduce_${r.op}${JSON.stringify(r.axes)}` : ''}] ${shape.join('x')}`,
      reads: inSlots,
      writes: outSlots,
      release: [],
      releaseDonated: [],
      leaves: false,
      shape,
      prog,
      wasmSpec,
      reduceSpec,
      axes: r?.axes ?? [],
      ins: new Array<NDArray>(inSlots.length).fill(NO_ARRAY),
      releasedInputs: [],
    });
  };

  const plan = planFusion(jaxpr);
  for (const item of plan.items) {
    if (item.kind === 'group') emitGroup(item.group);
    else emitKernel(item.eqn);
  }
  // Steps nothing reads are dropped: chiefly literal broadcasts (an optimizer's constants) whose
  // every consumer is a fused group that inlined the literal. Every primitive here is pure.
  {
    const needed = new Set<number>(jaxpr.outvars.filter((a): a is Var => a instanceof Var).map(slotOf));
    const live: Step[] = [];
    for (let i = steps.length - 1; i >= 0; i--) {
      const st = steps[i];
      if (!st.writes.some((w) => needed.has(w))) continue;
      live.push(st);
      for (const r of st.reads) needed.add(r);
    }
    steps.splice(0, steps.length, ...live.reverse());
  }

  // Release each intermediate after the step that reads it last (inputs and outputs stay).
  const outVars = jaxpr.outvars.filter((a): a is Var => a instanceof Var);
  const keep = new Set<number>([...jaxpr.invars.map(slotOf), ...jaxpr.constvars.map(slotOf), ...outVars.map(slotOf)]);
  const lastRead = new Map<number, number>();
  steps.forEach((st, i) => st.reads.forEach((slot) => lastRead.set(slot, i)));
  for (const [slot, i] of lastRead) if (!keep.has(slot)) steps[i].release.push(slot);
  // Results nothing reads (a scan's final carry when only its ys are used) go back right after
  // the step that made them.
  steps.forEach((st) => {
    for (const w of st.writes) if (!lastRead.has(w) && !keep.has(w) && !st.release.includes(w)) st.release.push(w);
  });
  // Donated arguments (not themselves outputs) are released after their last reader, if asked.
  const outSlots = new Set(outVars.map(slotOf));
  jaxpr.invars.forEach((v, arg) => {
    const slot = slotOf(v);
    const i = lastRead.get(slot);
    if (i !== undefined && !outSlots.has(slot)) steps[i].releaseDonated.push({ arg, slot });
  });

  if (debugEnabled('plan')) console.error(`[spiketrace plan]\n${printJaxpr(jaxpr)}\n${steps.map((st) => '  ' + st.describe).join('\n')}`);
  const program: Program = {
    steps,
    nSlots: slots.size,
    constSlots: jaxpr.constvars.map((v) => slots.get(v)!),
    argSlots: jaxpr.invars.map((v) => slots.get(v)!),
    outAtoms: jaxpr.outvars,
    slots,
    argOfSlot: new Map(jaxpr.invars.map((v, i) => [slots.get(v)!, i] as [number, number])),
    unreadArgs: jaxpr.invars.flatMap((v, arg) => {
      const slot = slots.get(v)!;
      return lastRead.has(slot) || outSlots.has(slot) ? [] : [{ arg, slot }];
    }),
    profile: debugEnabled('profile'),
  };
  // Steps whose results all leave (program outputs nothing later reads). Steps holding jaxprs run
  // nested programs that manage their own memory, and keep the arena.
  const HOLDS_JAXPR = new Set<Primitive>(['scan', 'cond', 'while_loop', 'custom_vjp_call']);
  steps.forEach((st, i) => {
    st.leaves =
      st.writes.length > 0 &&
      (st.kind === 'group' || !HOLDS_JAXPR.has(st.prim)) &&
      st.writes.every((w) => outSlots.has(w) && !(lastRead.get(w)! > i));
  });
  // Which inputs of each group step are read for the last time there (candidates to be written
  // over in place, when nothing else holds them at run time).
  for (const st of steps) {
    if (st.kind !== 'group') continue;
    const gone = new Set<number>([...st.release, ...st.releaseDonated.map((d) => d.slot)]);
    st.reads.forEach((slot, i) => {
      if (gone.has(slot) && st.reads.indexOf(slot) === i) st.releasedInputs.push(i);
    });
  }
  return (consts, args, donated, keepInBackend) => {
    // Called from another program's step (a scan body), results stay for that program to manage.
    const nested = residentActive();
    const outs = residentScope(true, () => runProgram(program, consts, args, donated, !nested && keepInBackend !== true));
    if (nested || keepInBackend === true) return outs;
    // The outermost call hands ordinary arrays to its caller: results made in the arena are
    // copied out and their arena buffers recycled (never a caller's own buffer passed through).
    if (!outs.some((x) => isResident(x.data))) return outs;
    const passedIn = new Set<TypedArray>([...consts, ...args].map((x) => x.data));
    const detached = detachResident(outs);
    const recycled = new Set<TypedArray>();
    for (const x of outs) {
      if (isResident(x.data) && recyclable(x.data) && !passedIn.has(x.data) && !recycled.has(x.data)) {
        recycled.add(x.data);
        giveBuffer(x.data, x.dtype);
      }
    }
    return detached;
  };
}
