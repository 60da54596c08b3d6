/**
 * The gpujs backend's kernels and jaxpr compiler. The planner follows core/backend/cpu-compile.ts:
 * maximal chains of same-shape elementwise equations become one fused program (ending, where it
 * can, in a reduction that absorbs its prologue); matmul and reductions are GPU kernels; views
 * (broadcast_to, transpose, slice, reshape) of device values are metadata; a scan whose body
 * compiles to device steps only runs on the device (its carry stays in textures from step to step,
 * x_t is a view of the stacked xs at a run-time offset, the y_t are assembled on the device);
 * custom_vjp_call is inlined (its primal function). Everything else runs through `cpuKernels`
 * with explicit readback of its inputs. Values stay on the device between GPU steps; only what a
 * CPU step needs and the program's outputs are read back.
 */
import { debugEnabled } from '../../debug.js';
import { Literal, Var, printJaxpr, type Atom, type Eqn, type Jaxpr } from '../../ir.js';
import { makeView, NDArray } from '../../ndarray.js';
import { ELEMENTWISE, shapeRules, type PrimParams, type Primitive } from '../../primitives.js';
import { contiguousStrides } from '../../shape.js';
import { avalOf, literalArray, literalResult } from '../../trace.js';
import { cpuKernels } from '../cpu.js';
import { SCALAR_OPS, type ElementwisePrim } from '../scalar-ops.js';
import { inlineCustomVjp, planFusion, REDUCE_OPS } from '../plan.js';
import {
  MAX_GPU_INDEX,
  STACK_FANIN,
  convKernelSource,
  fusedKernelSource,
  gpuDtype,
  lit,
  matmulKernelSource,
  stackKernelSource,
  type GpuProgram,
  type InputView,
} from './codegen.js';
import { launch, launchArgs, readback, release, upload, uploadBuffer, type DevArray, type GpuBuffer } from './runtime.js';

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
  // An array already in gpujs memory (toDevice) is read where it is: no readback, no upload.
  const own = v.device === 'gpujs' ? (v.deviceBuffer as GpuBuffer) : null;
  if (own !== null)
    return {
      tex: own.tex,
      bufSize: Math.max(1, own.size),
      shape: v.shape.slice(),
      strides: contiguousStrides(v.shape),
      offset: 0,
      dtype: v.dtype,
    };
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
  return whole
    ? { tex: d.tex, bufSize: d.bufSize, shape: v.shape.slice(), strides: v.strides.slice(), offset: v.offset, dtype: v.dtype }
    : d;
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
  return SCALAR_OPS[prim as ElementwisePrim].gpu(args, params as Record<string, unknown>);
}

const viewOf = (d: DevArray): InputView => ({ strides: d.strides, offset: d.offset, dynamic: d.dyn !== undefined });

/** A size-1 host value (possibly broadcast), passed to kernels as a float argument; else null. */
function scalarValue(v: Val): number | null {
  // One value, possibly broadcast (every axis of size > 1 has stride 0).
  if (isDev(v) || v.size === 0 || !v.shape.every((d, i) => d === 1 || v.strides[i] === 0)) return null;
  return Number(v.data[v.offset]);
}

/**
 * Most textures one kernel reads. gpu.js binds texture arguments to units 0, 1, ... and uses unit
 * 15 as scratch whenever it makes an output texture, so a 16th texture argument would read what
 * that leaves there (seen on llvmpipe as a slightly wrong alpha-filter gradient).
 */
const MAX_KERNEL_TEXTURES = 15;

/**
 * Copies `vals` (each read through its view) into new textures, STACK_FANIN per texture, and
 * returns contiguous views of the copies: how a kernel with too many texture inputs gets under
 * MAX_KERNEL_TEXTURES.
 */
function packDev(vals: readonly DevArray[], ctx: Ctx): DevArray[] {
  const out: DevArray[] = [];
  for (let i = 0; i < vals.length; i += STACK_FANIN) {
    const group = vals.slice(i, i + STACK_FANIN);
    const total = group.reduce((a, v) => a + sizeOf(v.shape), 0);
    const packed = launch(stackKernelSource(group.map((v) => ({ shape: v.shape, view: viewOf(v) }))), group, [total], 'float32');
    ctx.made.push(packed);
    let start = 0;
    for (const v of group) {
      out.push({
        tex: packed.tex,
        bufSize: packed.bufSize,
        dtype: v.dtype,
        shape: v.shape.slice(),
        strides: contiguousStrides(v.shape),
        offset: start,
      });
      start += sizeOf(v.shape);
    }
  }
  return out;
}

const textureCount = (inputs: readonly (DevArray | null)[]): number =>
  new Set(inputs.filter((d): d is DevArray => d !== null).map((d) => d.tex)).size;

/** Packs inputs (from the last) until they read at most MAX_KERNEL_TEXTURES textures. */
function fitTextures(inputs: readonly (DevArray | null)[], ctx: Ctx): (DevArray | null)[] {
  const out = inputs.slice();
  let i = out.length - 1;
  while (textureCount(out) > MAX_KERNEL_TEXTURES) {
    const group: number[] = [];
    for (; i >= 0 && group.length < STACK_FANIN; i--) if (out[i] !== null) group.push(i);
    if (group.length < 2) throw new Error(`gpujs: a kernel reads ${textureCount(out)} textures, more than ${MAX_KERNEL_TEXTURES}`);
    const packed = packDev(
      group.map((k) => out[k]!),
      ctx,
    );
    group.forEach((k, j) => (out[k] = packed[j]));
  }
  return out;
}

/**
 * Runs a fused program (index space `shape`). Size-1 host inputs are float arguments (so a value
 * computed at run time does not make a new kernel); others are uploaded. Inputs that share a
 * texture share its kernel parameter.
 */
function runProgram(
  prog: GpuProgram,
  shape: readonly number[],
  vals: Val[],
  outDtype: 'float32' | 'bool' | string,
  sources: Map<string, string>,
  ctx: Ctx,
): DevArray {
  const scalars = vals.map(scalarValue);
  let inputs = vals.map((v, i) => (scalars[i] === null ? toDev(v, ctx) : null));
  if (textureCount(inputs) > MAX_KERNEL_TEXTURES) inputs = fitTextures(inputs, ctx);
  const textures: DevArray[] = [];
  const slotOfTex = new Map<DevArray['tex'], number>();
  const texOf = inputs.map((d) => {
    if (d === null) return -1;
    let j = slotOfTex.get(d.tex);
    if (j === undefined) {
      slotOfTex.set(d.tex, (j = textures.length));
      textures.push(d);
    }
    return j;
  });
  const key = inputs
    .map((d, i) => (d === null ? 's' : `${texOf[i]}:${d.bufSize}:${d.strides.join(',')}@${d.offset}${d.dyn === undefined ? '' : '+d'}`))
    .join('|');
  let src = sources.get(key);
  if (src === undefined) {
    src = fusedKernelSource(
      prog,
      shape,
      inputs.map((d) => (d === null ? { strides: shape.map(() => 0), offset: 0, scalar: true } : viewOf(d))),
      texOf,
    );
    sources.set(key, src);
  }
  const axes = prog.reduce?.axes ?? [];
  const outShape = shape.filter((_, i) => !axes.includes(i));
  const extras: number[] = [];
  inputs.forEach((d, i) => {
    if (d === null) extras.push(scalars[i]!);
    else if (d.dyn !== undefined) extras.push(d.dyn);
  });
  return launchArgs(src, [...textures, ...extras], outShape, outDtype as 'float32');
}

function runMatmul(a: DevArray, b: DevArray): DevArray {
  const r = a.shape.length;
  const batch = a.shape.slice(0, r - 2);
  const [m, k, n] = [a.shape[r - 2], a.shape[r - 1], b.shape[r - 1]];
  const src = matmulKernelSource(batch, m, k, n, viewOf(a), viewOf(b));
  return launch(src, [a, b], [...batch, m, n], 'float32');
}

function runConv(x: DevArray, w: DevArray, p: PrimParams['conv']): DevArray {
  const out = shapeRules.conv(
    [
      { shape: x.shape, dtype: 'float32' },
      { shape: w.shape, dtype: 'float32' },
    ],
    p,
  )[0].shape;
  return launch(convKernelSource(p, x.shape, w.shape, out, viewOf(x), viewOf(w)), [x, w], out, 'float32');
}

/** A device view op (no data moves), or null when it needs a copy (reshape of a strided view). */
function viewDev<P extends Primitive>(prim: P, x: DevArray, params: PrimParams[P], ctx: Ctx): DevArray {
  const base = { tex: x.tex, bufSize: x.bufSize, dtype: x.dtype, dyn: x.dyn };
  switch (prim) {
    case 'broadcast_to': {
      const { shape } = params as PrimParams['broadcast_to'];
      // A rank-0 source (a scalar) broadcasts along every axis.
      return {
        ...base,
        shape: shape.slice(),
        strides: shape.map((d, i) => (x.shape.length === 0 || (x.shape[i] === 1 && d !== 1) ? 0 : x.strides[i])),
        offset: x.offset,
      };
    }
    case 'transpose': {
      const { perm } = params as PrimParams['transpose'];
      return { ...base, shape: perm.map((p) => x.shape[p]), strides: perm.map((p) => x.strides[p]), offset: x.offset };
    }
    case 'slice': {
      const { starts, limits } = params as PrimParams['slice'];
      return {
        ...base,
        shape: starts.map((s, i) => limits[i] - s),
        strides: x.strides.slice(),
        offset: x.offset + starts.reduce((a, s, i) => a + s * x.strides[i], 0),
      };
    }
    case 'reshape': {
      const { shape } = params as PrimParams['reshape'];
      const contiguous = contiguousStrides(x.shape).every((s, i) => x.shape[i] === 1 || x.strides[i] === s);
      const src = contiguous ? x : copyDev(x, ctx);
      return {
        tex: src.tex,
        bufSize: src.bufSize,
        dtype: src.dtype,
        dyn: src.dyn,
        shape: shape.slice(),
        strides: contiguousStrides(shape),
        offset: src.offset,
      };
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
    if (
      prim === 'matmul' &&
      inputs[0].dtype === 'float32' &&
      fitsGpu(inputs[0].shape) &&
      fitsGpu(inputs[1].shape) &&
      fitsGpu(outAval.shape)
    ) {
      const out = runMatmul(toDev(inputs[0], ctx), toDev(inputs[1], ctx));
      ctx.made.push(out);
      return [readback(out)];
    }
    if (prim === 'conv' && inputs[0].dtype === 'float32' && inputs.every((x) => fitsGpu(x.shape)) && fitsGpu(outAval.shape)) {
      const out = runConv(toDev(inputs[0], ctx), toDev(inputs[1], ctx), params as PrimParams['conv']);
      ctx.made.push(out);
      return [readback(out)];
    }
    if (prim === 'scan') return eagerScan(inputs, params as PrimParams['scan']);
    return (cpuKernels[prim] as (i: NDArray[], p: PrimParams[P]) => NDArray[])(inputs, params);
  } finally {
    finish(ctx);
  }
}

// ---------------------------------------------------------------------------------------------
// The compiler

type Env = (Val | undefined)[];
interface Step {
  /** One line, or several (a scan's body, indented). */
  describe: string[];
  run: (env: Env, ctx: Ctx) => void;
}

/** A jaxpr compiled to device steps; `compileGpu` wraps the top level, scans call their bodies. */
interface Compiled {
  /**
   * Runs the steps on `vals` (constvars, then invars); returns the outvars as they are, device
   * arrays where a kernel made them (nothing is read back). Textures made go to `ctx.made`.
   */
  run(ctx: Ctx, vals: readonly Val[]): Val[];
  /** The plan, one line per step. */
  describe: string[];
  /** The primitives that run on the CPU (with a readback of their inputs), in order. */
  cpu: string[];
}

function compileSteps(input: Jaxpr): Compiled {
  const jaxpr = inlineCustomVjp(input);
  const slots = new Map<Var, number>();
  const slotOf = (v: Var): number => {
    let s = slots.get(v);
    if (s === undefined) slots.set(v, (s = slots.size));
    return s;
  };
  jaxpr.constvars.forEach(slotOf);
  jaxpr.invars.forEach(slotOf);
  const steps: Step[] = [];
  const cpu: string[] = [];
  const read = (a: Atom, env: Env): Val => (a instanceof Literal ? literalArray(a) : (env[slots.get(a)!] as Val));

  const emitCpu = (e: Eqn, describe = `cpu ${e.prim}`): void => {
    const kernel = cpuKernels[e.prim] as (inputs: NDArray[], params: unknown) => NDArray[];
    const outSlots = e.outputs.map(slotOf);
    cpu.push(e.prim);
    steps.push({
      describe: [describe],
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
      describe: [`view ${e.prim}`],
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
      describe: [describe],
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
  const emitScan = (e: Eqn): void => {
    const p = e.params as PrimParams['scan'];
    const body = compileSteps(p.body);
    const blockers = scanBlockers(e, body);
    const head = `scan[length=${p.length}${p.reverse ? ', reverse' : ''}, ${p.numConsts} const, ${p.numCarry} carry, ${e.inputs.length - p.numConsts - p.numCarry} xs]`;
    if (blockers.length > 0) {
      emitCpu(e, `cpu ${head} (not on the device: ${blockers.join('; ')})`);
      return;
    }
    const outSlots = e.outputs.map(slotOf);
    steps.push({
      describe: [`gpu ${head}, body:`, ...body.describe.map((l) => `    ${l}`)],
      run: (env, ctx) => {
        const outs = runScanDev(
          body,
          p,
          e.inputs.map((a) => read(a, env)),
          ctx,
        );
        outSlots.forEach((s, i) => (env[s] = outs[i]));
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
  const reducible = (e: Eqn): boolean =>
    e.inputs[0].aval.dtype === 'float32' && fitsGpu(e.inputs[0].aval.shape) && fitsGpu(e.outputs[0].aval.shape);

  for (const item of plan.items) {
    if (item.kind === 'group') {
      const g = item.group;
      const temps = new Map<Var, string>();
      const lines: [string, string][] = g.eqns.map((e, k) => {
        const code = eqnCode(
          e.prim,
          e.inputs,
          e.outputs[0].aval.dtype,
          e.params,
          (a) => literalCode(a) ?? temps.get(a) ?? `v${g.inputs.indexOf(a)}`,
        )!;
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
        for (const v of g.outputs)
          emitProgram(
            `gpu fused[${names}] -> ${temps.get(v)}`,
            { numInputs: g.inputs.length, lines, output: temps.get(v)! },
            g.shape,
            g.inputs,
            v,
          );
      }
      continue;
    }
    const e = item.eqn;
    const out = e.outputs[0];
    const op = REDUCE_OPS[e.prim];
    if (op && reducible(e)) {
      emitProgram(
        `gpu reduce_${op}`,
        { numInputs: 1, lines: [], output: 'v0', reduce: { op, axes: (e.params as { axes: number[] }).axes } },
        e.inputs[0].aval.shape,
        [e.inputs[0]],
        out,
      );
    } else if (VIEW_OPS.has(e.prim)) {
      emitView(e);
    } else if (
      e.prim === 'matmul' &&
      out.aval.dtype === 'float32' &&
      e.inputs.every((a) => fitsGpu(a.aval.shape)) &&
      fitsGpu(out.aval.shape)
    ) {
      const [a, b] = e.inputs;
      const outSlot = slotOf(out);
      steps.push({
        describe: ['gpu matmul'],
        run: (env, ctx) => {
          const d = runMatmul(toDev(read(a, env), ctx), toDev(read(b, env), ctx));
          ctx.made.push(d);
          env[outSlot] = d;
        },
      });
    } else if (
      e.prim === 'conv' &&
      out.aval.dtype === 'float32' &&
      e.inputs.every((a) => fitsGpu(a.aval.shape)) &&
      fitsGpu(out.aval.shape)
    ) {
      const [x, w] = e.inputs;
      const outSlot = slotOf(out);
      const p = e.params as PrimParams['conv'];
      steps.push({
        describe: ['gpu conv'],
        run: (env, ctx) => {
          const d = runConv(toDev(read(x, env), ctx), toDev(read(w, env), ctx), p);
          ctx.made.push(d);
          env[outSlot] = d;
        },
      });
    } else if (e.prim === 'scan') {
      emitScan(e);
    } else {
      emitCpu(e);
    }
  }

  const nSlots = slots.size;
  const inVars = [...jaxpr.constvars, ...jaxpr.invars].map((v) => slots.get(v)!);
  return {
    describe: steps.flatMap((s) => s.describe),
    cpu,
    run: (ctx, vals) => {
      const env: Env = new Array(nSlots);
      inVars.forEach((s, i) => (env[s] = vals[i]));
      for (const s of steps) s.run(env, ctx);
      return jaxpr.outvars.map((a) => (a instanceof Literal ? literalResult(a) : read(a, env)));
    },
  };
}

/** Why a scan cannot run on the device (empty when it can). */
function scanBlockers(e: Eqn, body: Compiled): string[] {
  const p = e.params as PrimParams['scan'];
  const why: string[] = [];
  if (body.cpu.length > 0) why.push(`its body runs ${[...new Set(body.cpu)].join(', ')} on the CPU`);
  const avals = [...e.inputs, ...e.outputs].map((a) => a.aval);
  const bad = [...new Set(avals.filter((a) => !gpuDtype(a.dtype)).map((a) => a.dtype))];
  if (bad.length > 0) why.push(`${bad.join(', ')} values`);
  if (p.length < 1) why.push('no steps');
  else if (!avals.every((a) => fitsGpu(a.shape))) why.push(`a value has no elements or ${MAX_GPU_INDEX} or more`);
  return why;
}

/** x_t: the view of stacked `x` at step t (a run-time offset on the device, so kernels are shared). */
function stepView(x: Val, t: number): Val {
  if (!isDev(x)) return new NDArray(x.nd.pick(t, ...new Array<null>(x.ndim - 1).fill(null)), x.dtype);
  const dyn = x.strides[0] === 0 ? x.dyn : (x.dyn ?? 0) + t * x.strides[0];
  return { tex: x.tex, bufSize: x.bufSize, dtype: x.dtype, shape: x.shape.slice(1), strides: x.strides.slice(1), offset: x.offset, dyn };
}

/** `v` repeated `n` times along a new leading axis (stride 0: no copy). */
function prependAxis(v: Val, n: number): Val {
  if (isDev(v)) return { ...v, host: undefined, shape: [n, ...v.shape], strides: [0, ...v.strides] };
  return new NDArray(makeView(v.data, [n, ...v.shape], [0, ...v.strides], v.offset), v.dtype);
}

/**
 * Runs a scan whose body compiled to device steps only: the carry moves from step to step as
 * textures (no readback), x_t is a view of the (uploaded once) xs at a run-time offset, and each
 * y_t is kept until STACK_FANIN of them are concatenated by one kernel (then chunks of chunks),
 * so the stacked ys are assembled on the device. Textures a step makes are deleted as soon as
 * nothing holds them; what the scan returns goes to `ctx.made`.
 */
function runScanDev(body: Compiled, p: PrimParams['scan'], ins: readonly Val[], ctx: Ctx): Val[] {
  const { numConsts: nC, numCarry: nK, length: T, reverse } = p;
  // Host values are uploaded once, before the loop, except scalars (float arguments of the kernels).
  const prep = (v: Val): Val => (isDev(v) || scalarValue(v) !== null ? v : toDev(v, ctx));
  let consts = ins.slice(0, nC).map(prep);
  let carry = ins.slice(nC, nC + nK).map(prep);
  const xs = ins.slice(nC + nK).map(prep);
  // A body reading more textures than a kernel may would pack some at every step: pack the
  // constants once instead (carries count as textures: after the first step they are).
  const devConsts = consts.filter(isDev);
  if (devConsts.length > 1 && textureCount([...devConsts, ...xs.filter(isDev)]) + nK > MAX_KERNEL_TEXTURES) {
    const packed = packDev(devConsts, ctx);
    let k = 0;
    consts = consts.map((c) => (isDev(c) ? packed[k++] : c));
  }

  // Textures this scan made and still uses (carries, kept y_t, stacked chunks), with holders.
  const owned = new Map<DevArray['tex'], { n: number; d: DevArray }>();
  const adopt = (d: DevArray): void => {
    if (!owned.has(d.tex)) owned.set(d.tex, { n: 0, d });
  };
  const hold = (v: Val): void => {
    const o = isDev(v) ? owned.get(v.tex) : undefined;
    if (o !== undefined) o.n++;
  };
  const drop = (v: Val): void => {
    const o = isDev(v) ? owned.get(v.tex) : undefined;
    if (o !== undefined && --o.n <= 0) {
      owned.delete(o.d.tex);
      release(o.d);
    }
  };

  interface Item {
    v: Val;
    rows: number;
  }
  /** Collects y_t in push (iteration) order; memory order is step order (reversed for reverse). */
  const stacker = (shape: readonly number[], dtype: string): { push(v: Val): void; finish(): Val } => {
    const size = sizeOf(shape);
    const levels: Item[][] = [];
    const concat = (items: Item[]): Item => {
      const ordered = reverse ? items.slice().reverse() : items;
      const specs = ordered.map(({ v }) => ({ shape: v.shape, view: isDev(v) ? viewOf(v) : { strides: [], offset: 0, scalar: true } }));
      const rows = items.reduce((a, it) => a + it.rows, 0);
      const out = launch(
        stackKernelSource(specs),
        ordered.map(({ v }) => (isDev(v) ? v : scalarValue(v)!)),
        [rows * size],
        dtype as 'float32',
      );
      adopt(out);
      hold(out);
      for (const it of items) drop(it.v);
      return { v: out, rows };
    };
    const add = (level: number, item: Item): void => {
      const l = (levels[level] ??= []);
      l.push(item);
      if (l.length === STACK_FANIN) {
        levels[level] = [];
        add(level + 1, concat(l));
      }
    };
    return {
      push(y: Val): void {
        const v = isDev(y) || scalarValue(y) !== null ? y : toDev(y, ctx);
        hold(v);
        add(0, { v, rows: 1 });
      },
      finish(): Val {
        // Earlier pushes sit at higher levels.
        let seq = levels.slice().reverse().flat();
        while (seq.length > 1) {
          const next: Item[] = [];
          for (let i = 0; i < seq.length; i += STACK_FANIN) {
            const g = seq.slice(i, i + STACK_FANIN);
            next.push(g.length === 1 ? g[0] : concat(g));
          }
          seq = next;
        }
        const only = seq[0];
        if (only.rows === 1) return prependAxis(only.v, 1);
        const d = only.v as DevArray;
        const full = [T, ...shape];
        return { tex: d.tex, bufSize: d.bufSize, dtype: d.dtype, shape: full, strides: contiguousStrides(full), offset: 0 };
      },
    };
  };

  const bodyIn = p.body.invars;
  const yOuts = p.body.outvars.slice(nK);
  // A y that is a literal, a constant or x_t itself needs no per-step work.
  const direct: (Val | undefined)[] = yOuts.map((a) => {
    if (a instanceof Literal) return (cpuKernels.broadcast_to([literalArray(a)], { shape: [T] }) as NDArray[])[0];
    const k = bodyIn.indexOf(a);
    if (k >= 0 && k < nC) return prependAxis(consts[k], T);
    if (k >= nC + nK) return xs[k - nC - nK];
    return undefined;
  });
  const stacks = yOuts.map((a, j) => (direct[j] === undefined ? stacker(a.aval.shape, a.aval.dtype) : null));

  try {
    for (let i = 0; i < T; i++) {
      const t = reverse ? T - 1 - i : i;
      const stepCtx: Ctx = { made: [], uploaded: new Map() };
      let outs: Val[];
      try {
        outs = body.run(stepCtx, [...consts, ...carry, ...xs.map((x) => stepView(x, t))]);
      } catch (err) {
        finish(stepCtx);
        throw err;
      }
      for (const d of stepCtx.made) adopt(d);
      const next = outs.slice(0, nK);
      next.forEach(hold);
      outs.slice(nK).forEach((y, j) => stacks[j]?.push(y));
      carry.forEach(drop);
      carry = next;
      // What this step made and nothing holds (intermediates) goes now.
      for (const d of stepCtx.made) {
        const o = owned.get(d.tex);
        if (o !== undefined && o.n === 0) {
          owned.delete(d.tex);
          release(d);
        }
      }
    }
    const ys = yOuts.map((_, j) => direct[j] ?? stacks[j]!.finish());
    return [...carry, ...ys];
  } finally {
    // Whatever the scan still holds is its results (or, after an error, leftovers): the run's
    // context deletes them with its other textures.
    for (const o of owned.values()) ctx.made.push(o.d);
  }
}

/** An eager scan on gpujs: the one-equation program, compiled once per body and input avals. */
const eagerScans = new WeakMap<Jaxpr, Map<string, (consts: NDArray[], args: NDArray[]) => NDArray[]>>();
function eagerScan(inputs: NDArray[], params: PrimParams['scan']): NDArray[] {
  let m = eagerScans.get(params.body);
  if (m === undefined) eagerScans.set(params.body, (m = new Map()));
  const key = JSON.stringify([params.numConsts, params.numCarry, params.length, params.reverse, inputs.map((x) => [x.dtype, x.shape])]);
  let fn = m.get(key);
  if (fn === undefined) {
    const invars = inputs.map((x) => new Var(avalOf(x)));
    const outvars = shapeRules.scan(inputs.map(avalOf), params).map((a) => new Var(a));
    fn = compileGpu({ constvars: [], invars, eqns: [{ prim: 'scan', inputs: invars, params, outputs: outvars }], outvars });
    m.set(key, fn);
  }
  return fn([], inputs);
}

export function compileGpu(jaxpr: Jaxpr): (consts: NDArray[], args: NDArray[]) => NDArray[] {
  const c = compileSteps(jaxpr);
  if (debugEnabled('plan')) console.error(`[spiketrace gpujs plan]\n${printJaxpr(jaxpr)}\n${c.describe.map((l) => '  ' + l).join('\n')}`);
  return (consts, args) => {
    const ctx: Ctx = { made: [], uploaded: new Map() };
    try {
      return c.run(ctx, [...consts, ...args]).map(toHost);
    } finally {
      finish(ctx);
    }
  };
}
