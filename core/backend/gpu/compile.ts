/**
 * The gpujs backend's kernels and jaxpr compiler. The planner follows core/backend/cpu-compile.ts:
 * maximal chains of same-shape elementwise equations become one fused program (ending, where it
 * can, in a reduction that absorbs its prologue); matmul and reductions are GPU kernels; views
 * (broadcast_to, transpose, slice, reshape) of device values are metadata; everything else runs
 * through `cpuKernels` with explicit readback of its inputs. Values stay on the device between
 * GPU steps; only what a CPU step needs and the program's outputs are read back.
 */
import { debugEnabled } from '../../debug.js';
import { Literal, Var, printJaxpr, type Atom, type Eqn, type Jaxpr } from '../../ir.js';
import { NDArray } from '../../ndarray.js';
import { ELEMENTWISE, shapeRules, type PrimParams, type Primitive } from '../../primitives.js';
import { contiguousStrides } from '../../shape.js';
import { avalOf, literalArray } from '../../trace.js';
import { cpuKernels } from '../cpu.js';
import type { ElementwisePrim } from '../fusion.js';
import { planFusion, REDUCE_OPS } from '../plan.js';
import { MAX_GPU_INDEX, fusedKernelSource, gpuCode, gpuDtype, lit, matmulKernelSource, type GpuProgram, type InputView } from './codegen.js';
import { launch, readback, release, upload, uploadBuffer, type DevArray } from './runtime.js';

type Val = NDArray | DevArray;
const isDev = (v: Val): v is DevArray => !(v instanceof NDArray);

/** Per-run bookkeeping: every texture made in this run (deleted at its end) and uploads. */
interface Ctx {
  made: DevArray[];
  /** Uploads by host buffer: views of one buffer share its texture. */
  uploaded: Map<unknown, DevArray>;
}
function toDev(v: Val, ctx: Ctx): DevArray {
  if (isDev(v)) return v;
  // Small enough a buffer behind the view: upload it whole (shared by all its views); otherwise
  // only the view's compact data.
  const compactSize = v.shape.reduce((a, d, i) => a * (v.strides[i] === 0 ? 1 : d), 1);
  const whole = v.data.length <= 2 * compactSize + 16;
  const key = whole ? v.data : v;
  let d = ctx.uploaded.get(key);
  if (d === undefined) {
    d = whole ? uploadBuffer(v) : upload(v);
    ctx.uploaded.set(key, d);
    ctx.made.push(d);
  }
  return whole ? { tex: d.tex, bufSize: d.bufSize, shape: v.shape.slice(), strides: v.strides.slice(), offset: v.offset, dtype: v.dtype } : d;
}
const toHost = (v: Val): NDArray => (isDev(v) ? readback(v) : v);
function finish(ctx: Ctx): void {
  for (const d of ctx.made) release(d);
  ctx.made.length = 0;
}

const sizeOf = (s: readonly number[]): number => s.reduce((a, c) => a * c, 1);
const fitsGpu = (s: readonly number[]): boolean => sizeOf(s) > 0 && sizeOf(s) < MAX_GPU_INDEX;

/** The GPU expression of an elementwise equation, or null when it must run on the CPU. */
function eqnCode(prim: Primitive, inputs: readonly Atom[], outDtype: string, params: unknown, name: (a: Var) => string): string | null {
  if (!ELEMENTWISE.has(prim) || !gpuDtype(outDtype as 'float32')) return null;
  const args: string[] = [];
  for (const a of inputs) {
    if (!gpuDtype(a.aval.dtype)) return null;
    if (a instanceof Literal) {
      const l = lit(a.value);
      if (l === null) return null;
      args.push(l);
    } else args.push(name(a));
  }
  return gpuCode[prim as ElementwisePrim](args, params as Record<string, unknown>);
}

const viewOf = (d: DevArray): InputView => ({ strides: d.strides, offset: d.offset });

/** A size-1 host value as a literal (inlined into the kernel instead of uploaded), or null. */
function scalarLiteral(v: Val): string | null {
  // One value, possibly broadcast (every axis of size > 1 has stride 0).
  if (isDev(v) || v.size === 0 || !v.shape.every((d, i) => d === 1 || v.strides[i] === 0)) return null;
  return lit(v.data[v.offset]);
}

/**
 * Runs a fused program (index space `shape`). Size-1 host inputs become literals in the source
 * (one kernel per value: they are the scalar constants of a traced program); others are uploaded.
 */
function runProgram(prog: GpuProgram, shape: readonly number[], vals: Val[], outDtype: 'float32' | 'bool' | string, sources: Map<string, string>, ctx: Ctx): DevArray {
  const lits = vals.map(scalarLiteral);
  const inputs = vals.map((v, i) => (lits[i] === null ? toDev(v, ctx) : null));
  const key = inputs.map((d, i) => (d === null ? `=${lits[i]}` : `${d.bufSize}:${d.strides.join(',')}@${d.offset}`)).join('|');
  let src = sources.get(key);
  if (src === undefined) {
    src = fusedKernelSource(
      prog,
      shape,
      inputs.map((d, i) => (d === null ? { strides: [], offset: 0, literal: lits[i]! } : viewOf(d))),
    );
    sources.set(key, src);
  }
  const axes = prog.reduce?.axes ?? [];
  const outShape = shape.filter((_, i) => !axes.includes(i));
  return launch(src, inputs.filter((d): d is DevArray => d !== null), outShape, outDtype as 'float32');
}

function runMatmul(a: DevArray, b: DevArray): DevArray {
  const r = a.shape.length;
  const batch = a.shape.slice(0, r - 2);
  const [m, k, n] = [a.shape[r - 2], a.shape[r - 1], b.shape[r - 1]];
  const src = matmulKernelSource(batch, m, k, n, viewOf(a), viewOf(b));
  return launch(src, [a, b], [...batch, m, n], 'float32');
}

/** A device view op (no data moves), or null when it needs a copy (reshape of a strided view). */
function viewDev<P extends Primitive>(prim: P, x: DevArray, params: PrimParams[P], ctx: Ctx): DevArray {
  const base = { tex: x.tex, bufSize: x.bufSize, dtype: x.dtype };
  switch (prim) {
    case 'broadcast_to': {
      const { shape } = params as PrimParams['broadcast_to'];
      // A rank-0 source (a scalar) broadcasts along every axis.
      return { ...base, shape: shape.slice(), strides: shape.map((d, i) => (x.shape.length === 0 || (x.shape[i] === 1 && d !== 1) ? 0 : x.strides[i])), offset: x.offset };
    }
    case 'transpose': {
      const { perm } = params as PrimParams['transpose'];
      return { ...base, shape: perm.map((p) => x.shape[p]), strides: perm.map((p) => x.strides[p]), offset: x.offset };
    }
    case 'slice': {
      const { starts, limits } = params as PrimParams['slice'];
      return { ...base, shape: starts.map((s, i) => limits[i] - s), strides: x.strides.slice(), offset: x.offset + starts.reduce((a, s, i) => a + s * x.strides[i], 0) };
    }
    case 'reshape': {
      const { shape } = params as PrimParams['reshape'];
      const contiguous = contiguousStrides(x.shape).every((s, i) => x.shape[i] === 1 || x.strides[i] === s);
      const src = contiguous ? x : copyDev(x, ctx);
      return { tex: src.tex, bufSize: src.bufSize, dtype: src.dtype, shape: shape.slice(), strides: contiguousStrides(shape), offset: src.offset };
    }
  }
  throw new Error(`gpujs: ${prim} is not a view op`);
}

const identity: GpuProgram = { numInputs: 1, lines: [], output: 'v0' };
const copySources = new Map<string, Map<string, string>>();
function copyDev(x: DevArray, ctx: Ctx): DevArray {
  const k = x.shape.join(',');
  let m = copySources.get(k);
  if (m === undefined) copySources.set(k, (m = new Map()));
  const out = runProgram(identity, x.shape, [x], x.dtype, m, ctx);
  ctx.made.push(out);
  return out;
}

const VIEW_OPS = new Set<Primitive>(['broadcast_to', 'transpose', 'slice', 'reshape']);

// ---------------------------------------------------------------------------------------------
// Eager kernels

const eagerSources = new Map<string, Map<string, string>>();
function sourcesFor(key: string): Map<string, string> {
  let m = eagerSources.get(key);
  if (m === undefined) eagerSources.set(key, (m = new Map()));
  return m;
}

/** One primitive on concrete arrays: on the GPU where it has a kernel there, else on the CPU. */
export function gpuRun<P extends Primitive>(prim: P, inputs: NDArray[], params: PrimParams[P]): NDArray[] {
  const outAval = shapeRules[prim](inputs.map(avalOf), params)[0];
  const ctx: Ctx = { made: [], uploaded: new Map() };
  try {
    if (ELEMENTWISE.has(prim) && fitsGpu(outAval.shape)) {
      const vars = inputs.map((x) => new Var(avalOf(x)));
      const expr = eqnCode(prim, vars, outAval.dtype, params, (v) => `v${vars.indexOf(v)}`);
      if (expr !== null) {
        const prog: GpuProgram = { numInputs: inputs.length, lines: [['t0', expr]], output: 't0' };
        const key = `${prim}|${JSON.stringify(params)}|${outAval.dtype}|${outAval.shape.join(',')}`;
        const out = runProgram(prog, outAval.shape, inputs, outAval.dtype, sourcesFor(key), ctx);
        ctx.made.push(out);
        return [readback(out)];
      }
    }
    const op = REDUCE_OPS[prim];
    if (op && inputs[0].dtype === 'float32' && fitsGpu(inputs[0].shape) && fitsGpu(outAval.shape)) {
      const { axes } = params as PrimParams['reduce_sum'];
      const prog: GpuProgram = { numInputs: 1, lines: [], output: 'v0', reduce: { op, axes } };
      const key = `${prim}|${axes.join(',')}|${inputs[0].shape.join(',')}`;
      const out = runProgram(prog, inputs[0].shape, [inputs[0]], 'float32', sourcesFor(key), ctx);
      ctx.made.push(out);
      return [readback(out)];
    }
    if (prim === 'matmul' && inputs[0].dtype === 'float32' && fitsGpu(inputs[0].shape) && fitsGpu(inputs[1].shape) && fitsGpu(outAval.shape)) {
      const out = runMatmul(toDev(inputs[0], ctx), toDev(inputs[1], ctx));
      ctx.made.push(out);
      return [readback(out)];
    }
    return (cpuKernels[prim] as (i: NDArray[], p: PrimParams[P]) => NDArray[])(inputs, params);
  } finally {
    finish(ctx);
  }
}

// ---------------------------------------------------------------------------------------------
// The compiler

type Env = (Val | undefined)[];
interface Step {
  describe: string;
  run: (env: Env, ctx: Ctx) => void;
}


export function compileGpu(jaxpr: Jaxpr): (consts: NDArray[], args: NDArray[]) => NDArray[] {
  const slots = new Map<Var, number>();
  const slotOf = (v: Var): number => {
    let s = slots.get(v);
    if (s === undefined) slots.set(v, (s = slots.size));
    return s;
  };
  jaxpr.constvars.forEach(slotOf);
  jaxpr.invars.forEach(slotOf);
  const steps: Step[] = [];
  const read = (a: Atom, env: Env): Val => (a instanceof Literal ? literalArray(a) : (env[slots.get(a)!] as Val));

  const emitCpu = (e: Eqn): void => {
    const kernel = cpuKernels[e.prim] as (inputs: NDArray[], params: unknown) => NDArray[];
    const outSlots = e.outputs.map(slotOf);
    steps.push({
      describe: `cpu ${e.prim}`,
      run: (env) => {
        const outs = kernel(
          e.inputs.map((a) => toHost(read(a, env))),
          e.params,
        );
        outSlots.forEach((s, i) => (env[s] = outs[i]));
      },
    });
  };
  const emitView = (e: Eqn): void => {
    const out = slotOf(e.outputs[0]);
    const kernel = cpuKernels[e.prim] as (inputs: NDArray[], params: unknown) => NDArray[];
    steps.push({
      describe: `view ${e.prim}`,
      run: (env, ctx) => {
        const x = read(e.inputs[0], env);
        env[out] = isDev(x) ? viewDev(e.prim, x, e.params as never, ctx) : kernel([x], e.params)[0];
      },
    });
  };
  const emitProgram = (describe: string, prog: GpuProgram, shape: readonly number[], inputs: readonly Atom[], out: Var): void => {
    const inSlots = inputs.map((a) => a);
    const outSlot = slotOf(out);
    const sources = new Map<string, string>();
    steps.push({
      describe,
      run: (env, ctx) => {
        const d = runProgram(
          prog,
          shape,
          inSlots.map((a) => read(a, env)),
          out.aval.dtype,
          sources,
          ctx,
        );
        ctx.made.push(d);
        env[outSlot] = d;
      },
    });
  };

  // One literal broadcast to a shape: inlined into the kernels that read it.
  const literalVars = new Map<Var, Literal>();
  for (const e of jaxpr.eqns) if (e.prim === 'broadcast_to' && e.inputs[0] instanceof Literal) literalVars.set(e.outputs[0], e.inputs[0]);
  const literalCode = (a: Var): string | null => {
    const l = literalVars.get(a);
    return l === undefined ? null : lit(l.value);
  };
  const plan = planFusion(jaxpr, {
    fusible: (e) =>
      fitsGpu(e.outputs[0].aval.shape) &&
      e.inputs.every((a) => !(a instanceof Var) || !literalVars.has(a) || literalCode(a) !== null) &&
      eqnCode(e.prim, e.inputs, e.outputs[0].aval.dtype, e.params, () => 'x') !== null,
    reducible: (e) => e.inputs[0].aval.dtype === 'float32' && fitsGpu(e.inputs[0].aval.shape) && fitsGpu(e.outputs[0].aval.shape),
  });
  const reducible = (e: Eqn): boolean => e.inputs[0].aval.dtype === 'float32' && fitsGpu(e.inputs[0].aval.shape) && fitsGpu(e.outputs[0].aval.shape);

  for (const item of plan.items) {
    if (item.kind === 'group') {
      const g = item.group;
      const temps = new Map<Var, string>();
      const lines: [string, string][] = g.eqns.map((e, k) => {
        const code = eqnCode(e.prim, e.inputs, e.outputs[0].aval.dtype, e.params, (a) => literalCode(a) ?? temps.get(a) ?? `v${g.inputs.indexOf(a)}`)!;
        temps.set(e.outputs[0], `t${k}`);
        return [`t${k}`, code];
      });
      const names = g.eqns.map((e) => e.prim).join(',');
      const r = g.reduce;
      if (r) {
        const prog: GpuProgram = { numInputs: g.inputs.length, lines, output: temps.get(r.input)!, reduce: { op: r.op, axes: r.axes } };
        emitProgram(`gpu fused[${names},reduce_${r.op}]`, prog, r.input.aval.shape, g.inputs, r.output);
      } else {
        // gpu.js kernels have one output: one program per value the group writes out.
        for (const v of g.outputs) emitProgram(`gpu fused[${names}] -> ${temps.get(v)}`, { numInputs: g.inputs.length, lines, output: temps.get(v)! }, g.shape, g.inputs, v);
      }
      continue;
    }
    const e = item.eqn;
    const out = e.outputs[0];
    const op = REDUCE_OPS[e.prim];
    if (op && reducible(e)) {
      emitProgram(`gpu reduce_${op}`, { numInputs: 1, lines: [], output: 'v0', reduce: { op, axes: (e.params as { axes: number[] }).axes } }, e.inputs[0].aval.shape, [e.inputs[0]], out);
    } else if (VIEW_OPS.has(e.prim)) {
      emitView(e);
    } else if (e.prim === 'matmul' && out.aval.dtype === 'float32' && e.inputs.every((a) => fitsGpu(a.aval.shape)) && fitsGpu(out.aval.shape)) {
      const [a, b] = e.inputs;
      const outSlot = slotOf(out);
      steps.push({
        describe: 'gpu matmul',
        run: (env, ctx) => {
          const d = runMatmul(toDev(read(a, env), ctx), toDev(read(b, env), ctx));
          ctx.made.push(d);
          env[outSlot] = d;
        },
      });
    } else {
      emitCpu(e);
    }
  }

  if (debugEnabled('plan')) console.error(`[spiketrace gpujs plan]\n${printJaxpr(jaxpr)}\n${steps.map((s) => '  ' + s.describe).join('\n')}`);
  const nSlots = slots.size;
  return (consts, args) => {
    const env: Env = new Array(nSlots);
    jaxpr.constvars.forEach((v, i) => (env[slots.get(v)!] = consts[i]));
    jaxpr.invars.forEach((v, i) => (env[slots.get(v)!] = args[i]));
    const ctx: Ctx = { made: [], uploaded: new Map() };
    try {
      for (const s of steps) s.run(env, ctx);
      return jaxpr.outvars.map((a) => toHost(read(a, env)));
    } finally {
      finish(ctx);
    }
  };
}
