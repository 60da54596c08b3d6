/**
 * Whole scans as one WebAssembly SIMD kernel, when the scan body is one fused float32 elementwise
 * group: the time loop runs inside the kernel, each vector of the state stays in registers across
 * the steps, and a call replaces `length` calls of the compiled body.
 *
 * Why: a spiking neuron's scan (the seed's SpikingActivation, a lowpass filter, their reverse
 * scans for the gradient) is a handful of elementwise operations per step on a [batch, units]
 * state. Run step by step, each step is a call of the compiled body with its bookkeeping (views of
 * x_t, pool buffers, the copy of y_t into the stacked ys): 9-18 us a step for 32 x 128 units on
 * this machine, several times the arithmetic. Here the state is read once, updated T times in
 * registers and written once.
 *
 * Which bodies: after inlining custom_vjp calls (a surrogate's primal), the fusion plan of the
 * body must be exactly one elementwise group of the state's shape S, plus broadcasts of literals
 * (inlined) and reshapes/broadcasts of scalar consts (read as splats). Every const is a scalar or
 * of shape S, every carry of shape S, every xs of shape [T, ...S], every output a group result or
 * a body input, all float32, and S a multiple of 4 elements (whole vectors, so no vector of one
 * time step spills into the next). Anything else runs step by step, as before.
 *
 * Exactness: the kernel evaluates the same group with the same scalar-op renderings as the
 * step-by-step path's fused kernel (core/backend/wasm/elementwise.ts `emitEqns`), each value
 * rounded to float32 exactly as there, so results are bit-identical to it and to the JS loops
 * (test/backend/wasm-scan.test.ts checks both, NaN and infinities included, and against a float64
 * reference of the spiking update written in the test).
 */
import { Literal, Var, type Atom, type Jaxpr } from '../../ir.js';
import { makeView, NDArray } from '../../ndarray.js';
import type { PrimParams } from '../../primitives.js';
import { contiguousStrides } from '../../shape.js';
import { assignStrided } from '../../strided-view.js';
import { inlineCustomVjp, planFusion, type FusionGroup } from '../plan.js';
import { takeBuffer } from '../pool.js';
import { elementwiseBackendName, emitEqns, wasmFusedSpec, type WasmFusedSpec } from './elementwise.js';
import { Code, I32, V128, encodeModule, type ValType } from './encoder.js';
import { arenaAlloc, arenaF32, arenaFree, arenaImport, cachedKernel, residentOffset } from './kernel-cache.js';

/** Where a value of the kernel comes from: a body input's local, or a group result's. */
type Source = { readonly invar: number } | { readonly temp: number } | { readonly literal: number };

type InvarKind = 'splat' | 'vector' | 'carry' | 'scalarCarry' | 'x';

/** A scan body the kernel can run, and how its inputs and outputs map onto the group. */
export interface ScanKernelSpec {
  readonly spec: WasmFusedSpec;
  /** The body input each group input reads (a scalar view reads its scalar const). */
  readonly groupInputs: readonly number[];
  /**
   * Per body input: read once per call (a scalar const), once per vector (a const or carry of
   * shape S, a scalar carry as a splat), or per step (an x).
   */
  readonly invarKinds: readonly InvarKind[];
  /** The body's outputs: new carries, then each step's ys. */
  readonly outs: readonly Source[];
  readonly numConsts: number;
  readonly numCarry: number;
  readonly reverse: boolean;
  /** Elements of the state (S). */
  readonly size: number;
  readonly stateShape: readonly number[];
  /** Shapes of the final carries (S, or a scalar's). */
  readonly carryShapes: readonly (readonly number[])[];
}

const sizeOf = (shape: readonly number[]): number => shape.reduce((a, c) => a * c, 1);
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

const specs = new WeakMap<Jaxpr, ScanKernelSpec | null>();

/** The kernel spec of a scan, or null when its body is not one elementwise group (see the module comment). */
export function scanKernelSpec(params: PrimParams['scan']): ScanKernelSpec | null {
  const { body, reverse } = params;
  let s = specs.get(body);
  if (s === undefined) {
    s = analyse(params);
    specs.set(body, s);
  }
  return s !== null && s.reverse === reverse ? s : s === null ? null : analyse(params);
}

function analyse({ body, numConsts, numCarry, reverse }: PrimParams['scan']): ScanKernelSpec | null {
  if (body.constvars.length > 0) return null;
  const jaxpr = inlineCustomVjp(body);
  const plan = planFusion(jaxpr);
  const groups: FusionGroup[] = [];
  for (const it of plan.items) if (it.kind === 'group') groups.push(it.group);
  // One group of the state's shape S; others only on scalars (a scalar carry such as the
  // cotangent of a scalar const, computed alike in every lane).
  const stateGroups = groups.filter((g) => sizeOf(g.shape) !== 1);
  if (stateGroups.length !== 1 || groups.some((g) => g.reduce !== undefined)) return null;
  const S = stateGroups[0].shape;
  const size = sizeOf(S);
  if (size === 0 || size % 4 !== 0) return null;
  const invarIndex = new Map<Var, number>(jaxpr.invars.map((v, i) => [v, i]));
  const kinds: InvarKind[] = [];
  for (let i = 0; i < jaxpr.invars.length; i++) {
    const a = jaxpr.invars[i].aval;
    if (a.dtype !== 'float32') return null;
    const scalar = sizeOf(a.shape) === 1;
    if (!scalar && !sameShape(a.shape, S)) return null;
    if (i < numConsts) kinds.push(scalar ? 'splat' : 'vector');
    else if (i < numConsts + numCarry) kinds.push(scalar ? 'scalarCarry' : 'carry');
    else if (scalar) return null;
    else kinds.push('x');
  }
  const isScalarKind = (k: InvarKind): boolean => k === 'splat' || k === 'scalarCarry';
  // Equations outside the groups: literal broadcasts (inlined) and views of scalar consts and
  // carries (read as splats).
  const scalarOf = new Map<Var, number>();
  const literalVars = new Map<Var, Literal>();
  for (const it of plan.items) {
    if (it.kind !== 'eqn') continue;
    const e = it.eqn;
    if (e.prim !== 'reshape' && e.prim !== 'broadcast_to') return null;
    const src = e.inputs[0];
    // A literal (a scalar closed over eagerly), reshaped or broadcast: inlined like one.
    const lit = src instanceof Literal ? src : literalVars.get(src);
    if (lit !== undefined) {
      literalVars.set(e.outputs[0], lit);
      continue;
    }
    if (!(src instanceof Var) || sizeOf(src.aval.shape) !== 1) return null;
    const root = invarIndex.get(src) ?? scalarOf.get(src);
    if (root === undefined || !isScalarKind(kinds[root])) return null;
    scalarOf.set(e.outputs[0], root);
  }
  // The groups as one program, in plan order (which respects every dependency).
  const eqns = groups.flatMap((g) => g.eqns);
  const inputs: Var[] = [];
  const outputs: Var[] = [];
  for (const g of groups) {
    for (const v of g.inputs) if (!inputs.includes(v) && !literalVars.has(v)) inputs.push(v);
    for (const v of g.outputs) if (!outputs.includes(v)) outputs.push(v);
  }
  const groupInputs: number[] = [];
  for (const v of inputs) {
    const i = invarIndex.get(v) ?? scalarOf.get(v);
    if (i === undefined) return null;
    groupInputs.push(i);
  }
  const spec = wasmFusedSpec(eqns, inputs, outputs, (a) => plan.literalOf(a) ?? (a instanceof Var ? literalVars.get(a) : undefined));
  if (spec === null || spec.inputTypes.some((t) => t !== 'f32') || spec.outputTypes.some((t) => t !== 'f32')) return null;
  const outs: Source[] = [];
  for (const o of jaxpr.outvars as readonly Atom[]) {
    const lit = o instanceof Literal ? o : literalVars.get(o);
    if (lit !== undefined) {
      if (lit.dtype !== 'float32' || Math.fround(lit.value) !== lit.value) return null;
      outs.push({ literal: lit.value });
      continue;
    }
    const v = o as Var;
    const j = outputs.indexOf(v);
    if (j >= 0) outs.push({ temp: spec.outputs[j] });
    else {
      const i = invarIndex.get(v) ?? scalarOf.get(v);
      if (i === undefined) return null;
      outs.push({ invar: i });
    }
  }
  // Each output's shape: a scalar (a scalar carry) or S.
  const outScalar = (jaxpr.outvars as readonly Atom[]).map((o) => sizeOf(o instanceof Literal ? [] : o.aval.shape) === 1);
  for (let j = numCarry; j < outs.length; j++) if (outScalar[j]) return null;
  const carryShapes = jaxpr.outvars.slice(0, numCarry).map((o) => (o instanceof Literal ? [] : o.aval.shape.slice()));
  return { spec, groupInputs, invarKinds: kinds, outs, numConsts, numCarry, reverse, size, stateShape: S.slice(), carryShapes };
}

/**
 * The kernel: run(nvec, T, yStrideBytes, [ptr, tStrideBytes] per x, ptr per const, ptr per carry
 * in, ptr per carry out, ptr per y). Vector v of the state: its carries are loaded, T steps run in
 * registers (backwards for a reverse scan) and the carries stored; x and y pointers move one time
 * step (their stride) per step.
 */
function kernelBytes(k: ScanKernelSpec): Uint8Array<ArrayBuffer> {
  const nInv = k.invarKinds.length;
  const xs = k.invarKinds.flatMap((kind, i) => (kind === 'x' ? [i] : []));
  const consts = k.invarKinds.flatMap((kind, i) => (kind === 'splat' || kind === 'vector' ? [i] : []));
  const carries = k.invarKinds.flatMap((kind, i) => (kind === 'carry' || kind === 'scalarCarry' ? [i] : []));
  const numYs = k.outs.length - k.numCarry;
  let next = 0;
  const NVEC = next++;
  const T = next++;
  const YSTRIDE = next++;
  const xPtr: number[] = [];
  const xStride: number[] = [];
  for (let j = 0; j < xs.length; j++) {
    xPtr.push(next++);
    xStride.push(next++);
  }
  const cPtr = consts.map(() => next++);
  const inPtr = carries.map(() => next++);
  const outPtr = carries.map(() => next++);
  const yPtr = Array.from({ length: numYs }, () => next++);
  const params: ValType[] = new Array<ValType>(next).fill(I32);
  const V = next++;
  const OFF = next++;
  const TI = next++;
  const px = xs.map(() => next++);
  const py = Array.from({ length: numYs }, () => next++);
  const i32Locals = next - params.length;
  const inv = Array.from({ length: nInv }, () => next++);
  const tmp = k.spec.eqns.map(() => next++);
  const locals: ValType[] = [...new Array<ValType>(i32Locals).fill(I32), ...new Array<ValType>(nInv + tmp.length).fill(V128)];
  const val = k.groupInputs.map((i) => inv[i]);
  const push = (s: Source): void => {
    if ('invar' in s) f.get(inv[s.invar]);
    else if ('temp' in s) f.get(tmp[s.temp]);
    else f.f32x4Const(s.literal);
  };

  const f = new Code();
  // Scalar consts: one splat for the whole call.
  consts.forEach((c, j) => {
    if (k.invarKinds[c] === 'splat') f.get(cPtr[j]).v128Load32Splat().set(inv[c]);
  });
  f.i32(0).set(V);
  f.loop(); // vectors of the state
  f.get(V).i32(16).mul().set(OFF);
  consts.forEach((c, j) => {
    if (k.invarKinds[c] === 'vector') f.get(cPtr[j]).get(OFF).add().v128Load(0, 0).set(inv[c]);
  });
  carries.forEach((c, j) => {
    // A scalar carry starts from its one value in every vector.
    if (k.invarKinds[c] === 'scalarCarry') f.get(inPtr[j]).v128Load32Splat().set(inv[c]);
    else f.get(inPtr[j]).get(OFF).add().v128Load(0, 0).set(inv[c]);
  });
  // Pointers of this vector at the first step taken (the last one for a reverse scan).
  const startAt = (ptr: number, stride: number, local: number): void => {
    f.get(ptr).get(OFF).add();
    if (k.reverse) f.get(T).i32(1).sub().get(stride).mul().add();
    f.set(local);
  };
  xs.forEach((_, j) => startAt(xPtr[j], xStride[j], px[j]));
  for (let j = 0; j < numYs; j++) startAt(yPtr[j], YSTRIDE, py[j]);
  f.i32(0).set(TI);
  f.loop(); // time steps
  xs.forEach((x, j) => f.get(px[j]).v128Load(0, 0).set(inv[x]));
  emitEqns(f, k.spec.eqns, val, tmp);
  for (let j = 0; j < numYs; j++) {
    f.get(py[j]);
    push(k.outs[k.numCarry + j]);
    f.v128Store(0, 0);
  }
  // The new carries: all read before any is set (a carry may be another's previous value).
  for (let j = 0; j < k.numCarry; j++) push(k.outs[j]);
  for (let j = k.numCarry - 1; j >= 0; j--) f.set(inv[carries[j]]);
  const move = (local: number, stride: number): void => {
    f.get(local).get(stride);
    if (k.reverse) f.sub();
    else f.add();
    f.set(local);
  };
  xs.forEach((_, j) => move(px[j], xStride[j]));
  for (let j = 0; j < numYs; j++) move(py[j], YSTRIDE);
  f.get(TI).i32(1).add().tee(TI).get(T).ltU().brIf(0);
  f.end();
  carries.forEach((c, j) => {
    // A scalar carry ends with the same value in every vector: its (scratch) vector is rewritten.
    f.get(outPtr[j]);
    if (k.invarKinds[c] !== 'scalarCarry') f.get(OFF).add();
    f.get(inv[c]).v128Store(0, 0);
  });
  f.get(V).i32(1).add().tee(V).get(NVEC).ltU().brIf(0);
  f.end();
  return encodeModule([{ name: 'run', params, results: [], locals, body: f }], 1, arenaImport());
}

/** Whether the axes of `shape` past `from` are laid out contiguously by `strides` (axes of length 1 aside). */
function innerContiguous(shape: readonly number[], strides: readonly number[], from: number): boolean {
  let expect = 1;
  for (let d = shape.length - 1; d >= from; d--) {
    if (shape[d] !== 1 && strides[d] !== expect) return false;
    expect *= shape[d];
  }
  return true;
}

/**
 * How many scans ran as one whole-scan kernel, and how many of their time-varying inputs had to be
 * copied in (not in the arena, or strided) rather than read in place (tests and benchmarks read it).
 */
export const wasmScanStats = { calls: 0, xsCopied: 0 };

/**
 * Most elements of one stacked x (T x S) for which a scan runs as this kernel. The kernel walks
 * time innermost, so each vector of the state reads and writes one vector per time step from
 * arrays S elements apart: while those fit in L2 that costs nothing, beyond it every step misses.
 * Measured here: the seed's spiking scan (10 x 32 x 128) 338 -> 109 us; a LIF scan of 25 x 128 x
 * 1000 under jit(grad) 22 -> 42 ms (slower), the same at 25 x 32 x 128 3.2 -> 1.6 ms.
 */
const SCAN_KERNEL_MAX_ELEMENTS = 1 << 17;

/** On unless SPIKETRACE_SCAN_KERNEL=0 (to compare with the step-by-step path). */
let enabled = typeof process === 'undefined' || process.env?.SPIKETRACE_SCAN_KERNEL !== '0';
/** Turns whole-scan kernels off or on (tests and benchmarks compare with the step-by-step path). */
export function setWasmScan(on: boolean): void {
  enabled = on;
}

/**
 * Runs a scan as one kernel call: returns [...final carries, ...stacked ys] as contiguous float32
 * arrays from the buffer pool, or null when the body does not qualify, WebAssembly SIMD is off, or
 * the arena cannot hold the call (the caller then runs the scan step by step).
 */
export function runWasmScan(inputs: readonly NDArray[], params: PrimParams['scan']): NDArray[] | null {
  const { length } = params;
  if (!enabled || length < 1 || elementwiseBackendName() !== 'wasm-simd') return null;
  const k = scanKernelSpec(params);
  if (k === null || length * k.size > SCAN_KERNEL_MAX_ELEMENTS) return null;
  const S = k.size;
  const kinds = k.invarKinds;
  const numYs = k.outs.length - k.numCarry;
  // Where each input is read: in place when it lives in the arena with its state contiguous,
  // else copied into a scratch block (an x broadcast over time: one step's worth, stride 0).
  const place: { at: number; stride: number; copy: boolean }[] = [];
  let used = 0;
  for (let i = 0; i < inputs.length; i++) {
    const x = inputs[i];
    const isX = kinds[i] === 'x';
    const timeStride = isX ? x.strides[0] : 0;
    const resident = residentOffset(x.data, x.offset);
    if (resident >= 0 && innerContiguous(x.shape, x.strides, isX ? 1 : 0)) {
      place.push({ at: resident, stride: 4 * timeStride, copy: false });
      continue;
    }
    const floats = isX && timeStride !== 0 ? length * S : kinds[i] === 'splat' || kinds[i] === 'scalarCarry' ? 4 : S;
    place.push({ at: used, stride: isX && timeStride !== 0 ? 4 * S : 0, copy: true });
    if (isX && timeStride !== 0) wasmScanStats.xsCopied++;
    used += floats;
  }
  const outs = [
    ...k.carryShapes.map((shape) => takeBuffer('float32', sizeOf(shape)) as Float32Array),
    ...Array.from({ length: numYs }, () => takeBuffer('float32', length * S) as Float32Array),
  ];
  const outAt = outs.map((o) => {
    // A scalar carry's vector is stored whole: it goes to scratch, then its first lane out.
    const r = o.length === 1 ? -1 : residentOffset(o);
    if (r >= 0) return { at: r, copy: false };
    const at = used;
    used += Math.max(4, o.length);
    return { at, copy: true };
  });
  const block = used > 0 ? arenaAlloc(used * 4) : 0;
  if (block < 0) return null;
  const h = arenaF32();
  const args: number[] = [S / 4, length, 4 * S];
  const xArgs: number[] = [];
  const cArgs: number[] = [];
  const inArgs: number[] = [];
  for (let i = 0; i < inputs.length; i++) {
    const x = inputs[i];
    const p = place[i];
    let ptr = p.at;
    if (p.copy) {
      ptr = block + 4 * p.at;
      // One step of an x broadcast over time, or the whole array, laid out contiguously.
      const src = kinds[i] === 'x' && p.stride === 0 ? makeView(x.data, x.shape.slice(1), x.strides.slice(1), x.offset) : x.nd;
      // A value broadcast to the whole state (a zero initial carry) is a fill.
      if (src.stride.every((s) => s === 0)) h.fill(x.data[x.offset], ptr >> 2, (ptr >> 2) + sizeOf(src.shape));
      else assignStrided(makeView(h, src.shape, contiguousStrides(src.shape), ptr >> 2), src);
    }
    if (kinds[i] === 'x') xArgs.push(ptr, p.stride);
    else if (kinds[i] === 'carry' || kinds[i] === 'scalarCarry') inArgs.push(ptr);
    else cArgs.push(ptr);
  }
  const outPtrs = outAt.map((o) => (o.copy ? block + 4 * o.at : o.at));
  args.push(...xArgs, ...cArgs, ...inArgs, ...outPtrs);
  const fn = cachedKernel(k.reverse ? 'scan-reverse' : 'scan', k, [], () => kernelBytes(k));
  fn(...args);
  wasmScanStats.calls++;
  const shapes = [...k.carryShapes, ...Array.from({ length: numYs }, () => [length, ...k.stateShape])];
  const result = outs.map((o, j) => {
    if (outAt[j].copy) o.set(h.subarray(outPtrs[j] >> 2, (outPtrs[j] >> 2) + o.length));
    return new NDArray(makeView(o, shapes[j], contiguousStrides(shapes[j]), 0), 'float32');
  });
  if (used > 0) arenaFree(block, used * 4);
  return result;
}
