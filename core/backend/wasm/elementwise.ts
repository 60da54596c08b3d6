/**
 * Fused float32 elementwise groups as WebAssembly 128-bit SIMD kernels, generated at run time from
 * the fusion plan (one small module per group and operand layout, all sharing one linear memory).
 *
 * Why: on V8 a generated JS loop pays a float64 <-> float32 conversion around every operation
 * (`Math.fround`), so an Adam update over 100k parameters costs ~13 ns per element here; the same
 * program in f32x4 lanes costs a small fraction of that, and copying the operands into the
 * module's memory and the results out (TypedArray.set / slice: memcpy) is cheap beside it.
 *
 * Exactness: every supported operation is one IEEE float32 operation in both paths (JS computes
 * + - * / sqrt in float64 and rounds once, which equals the float32 result for these operations),
 * comparisons and selects are bit manipulations, and maximum/minimum are built from compares and
 * selects with the JS path's NaN and signed-zero rules. So a group gives bit-identical results
 * on either path (NaN payloads aside); test/backend/wasm-elementwise.test.ts checks it on random
 * programs, layouts and special values. Groups with other dtypes or with operations WebAssembly
 * has no instruction for (exp, log, tanh, logistic, pow) stay on the JS path.
 *
 * Layouts: after merging axes (fusion.ts `coalesce`) the last axis is the row and every other
 * axis is flattened into rows; each operand is copied in as a contiguous block, rows one by one (a
 * transposed batch), one broadcast row, a column of per-row scalars, or one scalar. Rows are
 * processed in order with whole 4-lane vectors, so a row whose length is not a multiple of 4
 * writes a few lanes into the next row's start, which that row then overwrites (every buffer is
 * padded by one vector). Outputs go to buffers from core/backend/pool.ts.
 */
import { Literal, Var, type Atom, type Eqn } from '../../ir.js';
import { arenaAlloc, arenaF32, arenaFree, arenaImport, arenaU8, cachedKernel, residentOffset, type KernelFn } from './kernel-cache.js';
import { makeView, NDArray } from '../../ndarray.js';
import { contiguousStrides, stridedOffsets } from '../../shape.js';
import { Code, I32, SIMD_OP, V128, encodeModule, type ValType } from './encoder.js';
import { SCALAR_OPS, isElementwise, type ElementwisePrim, type LaneType } from '../scalar-ops.js';
import { wasmSimdAvailable } from './index.js';
import { coalesce } from '../fusion.js';
import type { TypedArray } from '../../dtype.js';
import { takeBuffer } from '../pool.js';

/** An operand of a fused equation: a group input, an earlier equation's result, or a literal. */
export type WasmOperand = { readonly input: number } | { readonly temp: number } | { readonly literal: number };

/** One equation of a fused group, rendered by its scalar op's `simd` entry. */
export interface WasmFusedEqn {
  readonly prim: ElementwisePrim;
  readonly args: readonly WasmOperand[];
  /** Lane types of the operands and the result, as `SimdRender.result` decided them. */
  readonly argTypes: readonly LaneType[];
  readonly result: LaneType;
}

/** A fused group in the form the WebAssembly generator takes (see `wasmFusedSpec`). */
export interface WasmFusedSpec {
  readonly numInputs: number;
  readonly eqns: readonly WasmFusedEqn[];
  /** Temps written out, in order. */
  readonly outputs: readonly number[];
  /** Lane type of each input and output: float32, or a mask stored as a bool (one byte). */
  readonly inputTypes: readonly LaneType[];
  readonly outputTypes: readonly LaneType[];
}

/**
 * Translates a fused group (its equations in order, the vars it reads, the vars it writes, and the
 * literal each broadcast-literal var stands for) to a WasmFusedSpec; null when the group needs
 * something this generator does not do (a dtype other than float32 at the boundary, float64 or
 * integer intermediates, exp/log/tanh/logistic/pow, a literal float32 cannot hold exactly).
 */
export function wasmFusedSpec(
  eqns: readonly Eqn[],
  inputs: readonly Var[],
  outputs: readonly Var[],
  literalOf: (a: Atom) => Literal | undefined,
): WasmFusedSpec | null {
  const boundary = (v: Var): LaneType | null => (v.aval.dtype === 'float32' ? 'f32' : v.aval.dtype === 'bool' ? 'mask' : null);
  const inputTypes = inputs.map(boundary);
  const outputTypes = outputs.map(boundary);
  if (inputTypes.includes(null) || outputTypes.includes(null)) return null;
  const temps = new Map<Var, number>();
  const types: LaneType[] = [];
  const out: WasmFusedEqn[] = [];
  const operand = (a: Atom): { o: WasmOperand; t: LaneType } | null => {
    const lit = literalOf(a);
    if (lit !== undefined)
      return lit.dtype === 'float32' && Math.fround(lit.value) === lit.value ? { o: { literal: lit.value }, t: 'f32' } : null;
    const v = a as Var;
    const k = temps.get(v);
    if (k !== undefined) return { o: { temp: k }, t: types[k] };
    const i = inputs.indexOf(v);
    return i >= 0 ? { o: { input: i }, t: inputTypes[i] as LaneType } : null;
  };
  for (const e of eqns) {
    if (!isElementwise(e.prim)) return null;
    const render = SCALAR_OPS[e.prim].simd;
    if (render === null) return null;
    const args = e.inputs.map(operand);
    if (args.some((x) => x === null)) return null;
    const a = args as { o: WasmOperand; t: LaneType }[];
    const argTypes = a.map((x) => x.t);
    const t = render.result(argTypes, e.outputs[0].aval.dtype);
    if (t === null) return null;
    temps.set(e.outputs[0], out.length);
    types.push(t);
    out.push({ prim: e.prim, args: a.map((x) => x.o), argTypes, result: t });
  }
  const outTemps = outputs.map((v) => temps.get(v));
  if (outTemps.some((k, j) => k === undefined || types[k] !== outputTypes[j])) return null;
  return {
    numInputs: inputs.length,
    eqns: out,
    outputs: outTemps as number[],
    inputTypes: inputTypes as LaneType[],
    outputTypes: outputTypes as LaneType[],
  };
}

/** How an operand is laid out in the module's memory for one call. */
type Layout = 'vector' | 'splat';

/**
 * Emits the equations of a fused program on f32x4 lanes: input i is in v128 local val[i], the
 * result of equation k goes to v128 local tmp[k].
 */
export function emitEqns(f: Code, eqns: readonly WasmFusedEqn[], val: readonly number[], tmp: readonly number[]): void {
  const push = (o: WasmOperand): void => {
    if ('input' in o) f.get(val[o.input]);
    else if ('temp' in o) f.get(tmp[o.temp]);
    else f.f32x4Const(o.literal);
  };
  eqns.forEach((e, k) => {
    const render = SCALAR_OPS[e.prim].simd;
    if (render === null) throw new Error(`emitEqns: ${e.prim} has no WebAssembly SIMD rendering (wasmFusedSpec keeps it on the JS path)`);
    render.emit(f, (i) => push(e.args[i]), e.argTypes, e.result);
    f.set(tmp[k]);
  });
}

/**
 * The kernel's signature: (rows, vectorsPerRow, outRowBytes, [inPtr, inRowStrideBytes] per input,
 * outPtr per output). Splat inputs hold one value per row (read once per row).
 */
function kernelBytes(spec: WasmFusedSpec, layouts: readonly Layout[]): Uint8Array<ArrayBuffer> {
  const nIn = spec.numInputs;
  const nOut = spec.outputs.length;
  const ROWS = 0;
  const VECS = 1;
  const COLS = 2;
  const inPtr = (i: number) => 3 + 2 * i;
  const inStride = (i: number) => 4 + 2 * i;
  const outPtr = (j: number) => 3 + 2 * nIn + j;
  const params: ValType[] = [I32, I32, I32, ...new Array<ValType>(2 * nIn + nOut).fill(I32)];
  let next = params.length;
  const R = next++;
  const C = next++;
  const p = Array.from({ length: nIn }, () => next++);
  const q = Array.from({ length: nOut }, () => next++);
  const val = Array.from({ length: nIn }, () => next++);
  const tmp = spec.eqns.map(() => next++);
  const locals: ValType[] = [...new Array<ValType>(2 + nIn + nOut).fill(I32), ...new Array<ValType>(nIn + spec.eqns.length).fill(V128)];

  // Masks travel as bools (one byte per element): 4 bytes per vector, widened to i32 lanes and
  // compared with 0 on load; narrowed to bytes of 0/1 on store.
  const isMask = (t: LaneType): boolean => t === 'mask';
  const maskFromBytes = (): void => {
    f.simdOp(SIMD_OP.i16x8ExtendLowI8x16U);
    f.simdOp(SIMD_OP.i32x4ExtendLowI16x8U);
    f.v128Zero();
    f.simdOp(SIMD_OP.i32x4Ne);
  };
  const f = new Code();
  f.loop(); // rows
  f.i32(0).set(C);
  for (let i = 0; i < nIn; i++) {
    if (layouts[i] === 'vector') f.get(inPtr(i)).set(p[i]);
    else if (isMask(spec.inputTypes[i])) {
      f.get(inPtr(i)).v128Load8Splat();
      f.v128Zero();
      f.simdOp(SIMD_OP.i32x4Ne);
      f.set(val[i]);
    } else f.get(inPtr(i)).v128Load32Splat().set(val[i]);
  }
  for (let j = 0; j < nOut; j++) f.get(outPtr(j)).set(q[j]);
  f.loop(); // vectors of the row
  for (let i = 0; i < nIn; i++) {
    if (layouts[i] !== 'vector') continue;
    if (isMask(spec.inputTypes[i])) {
      f.get(p[i]).v128Load32Zero();
      maskFromBytes();
      f.set(val[i]);
    } else f.get(p[i]).v128Load(0, 0).set(val[i]);
  }
  emitEqns(f, spec.eqns, val, tmp);
  for (let j = 0; j < nOut; j++) {
    if (isMask(spec.outputTypes[j])) {
      f.get(q[j]).get(tmp[spec.outputs[j]]);
      f.i32x4Const([1, 1, 1, 1]);
      f.simdOp(SIMD_OP.v128And);
      f.v128Zero();
      f.simdOp(SIMD_OP.i16x8NarrowI32x4U);
      f.v128Zero();
      f.simdOp(SIMD_OP.i8x16NarrowI16x8U);
      f.v128Store32Lane(0);
    } else f.get(q[j]).get(tmp[spec.outputs[j]]).v128Store(0, 0);
  }
  for (let i = 0; i < nIn; i++)
    if (layouts[i] === 'vector')
      f.get(p[i])
        .i32(isMask(spec.inputTypes[i]) ? 4 : 16)
        .add()
        .set(p[i]);
  for (let j = 0; j < nOut; j++)
    f.get(q[j])
      .i32(isMask(spec.outputTypes[j]) ? 4 : 16)
      .add()
      .set(q[j]);
  f.get(C).i32(1).add().tee(C).get(VECS).ltU().brIf(0);
  f.end();
  for (let i = 0; i < nIn; i++) f.get(inPtr(i)).get(inStride(i)).add().set(inPtr(i));
  for (let j = 0; j < nOut; j++) {
    f.get(outPtr(j)).get(COLS);
    if (!isMask(spec.outputTypes[j])) f.i32(4).mul();
    f.add().set(outPtr(j));
  }
  f.get(R).i32(1).add().tee(R).get(ROWS).ltU().brIf(0);
  f.end();
  return encodeModule([{ name: 'run', params, results: [], locals, body: f }], 1, arenaImport());
}

export const wasmElementwiseStats = { calls: 0 };

export type ElementwiseBackend = 'wasm-simd' | 'js';
let choice: ElementwiseBackend | 'auto' = 'auto';

/** Chooses where fused float32 elementwise groups run ('auto': WebAssembly SIMD where available). */
export function setElementwiseBackend(c: ElementwiseBackend | 'auto'): void {
  choice = c;
}

/** Where eligible fused float32 elementwise groups run now. */
export function elementwiseBackendName(): ElementwiseBackend {
  return choice !== 'js' && wasmSimdAvailable() ? 'wasm-simd' : 'js';
}

/** How one operand reaches the kernel under a plan. */
interface Placement {
  layout: Layout;
  /** Read in place (the operand lives in the arena): rowStrideBytes is its own row stride. */
  inPlace: boolean;
  rowStrideBytes: number;
  /** Elements copied into the call's scratch block (0 when read in place). */
  copy: number;
  /** Float offset of the copy within the scratch block. */
  at: number;
  /** Element stride along the row (0: broadcast, 1: contiguous, else gathered). */
  innerStride: number;
  /** Element stride between rows (rank 2). */
  rowStride: number;
  /** Offsets of the rows' starts relative to the operand's offset (rank 3 and up). */
  rowStarts: Int32Array | null;
  /** Whether the rows lie back to back (one block copy). */
  contiguous: boolean;
}

/**
 * Everything about a call that depends only on the shape, the operands' strides and which
 * operands and results live in the arena: computed once, reused while those recur (a compiled
 * program calls each group with the same layout on every step).
 */
interface Plan {
  shape: number[];
  strides: number[][];
  residency: number;
  rows: number;
  cols: number;
  vecs: number;
  size: number;
  placements: Placement[];
  /** Float offset of each result's block in scratch, or -1 when written in place. */
  outAt: number[];
  /** Floats of scratch the call needs. */
  used: number;
  fn: KernelFn;
  args: number[];
  outStrides: number[];
}
const plans = new WeakMap<WasmFusedSpec, Plan[]>();

function sameNums(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameStrides(inputs: readonly NDArray[], strides: readonly (readonly number[])[]): boolean {
  for (let i = 0; i < inputs.length; i++) if (!sameNums(inputs[i].strides, strides[i])) return false;
  return true;
}

function makePlan(spec: WasmFusedSpec, inputs: readonly NDArray[], shape: readonly number[], residency: number): Plan {
  const size = shape.reduce((a, c) => a * c, 1);
  const merged = coalesce(
    [...shape],
    inputs.map((x) => [...x.strides]),
  );
  const rank = merged.shape.length;
  // Every axis but the last is flattened into rows.
  const outer = merged.shape.slice(0, Math.max(0, rank - 1));
  const rows = outer.reduce((a, c) => a * c, 1);
  const cols = rank === 0 ? 1 : merged.shape[rank - 1];
  let used = 0;
  const reserve = (floats: number): number => {
    const at = used;
    used += Math.ceil(floats / 4) * 4 + 4; // one vector of padding for the last row's over-run
    return at;
  };
  const inSize = spec.inputTypes.map((t) => (t === 'mask' ? 1 : 4));
  const outSize = spec.outputTypes.map((t) => (t === 'mask' ? 1 : 4));
  const placements = inputs.map((_, i): Placement => {
    const si = rank === 0 ? 0 : merged.strides[i][rank - 1];
    const e = inSize[i];
    const layout: Layout = si === 0 ? 'splat' : 'vector';
    const fixed = rows === 1 || merged.strides[i].slice(0, rank - 1).every((x) => x === 0);
    const rowStride = rank >= 2 ? merged.strides[i][0] : 0;
    const base = {
      layout,
      innerStride: si,
      rowStride,
      rowStarts: null,
      contiguous: false,
      inPlace: false,
      copy: 0,
      at: 0,
      rowStrideBytes: 0,
    };
    // Rows one stride apart (two merged axes, or one): read in place if resident.
    if ((residency & (1 << i)) !== 0 && (si === 0 || si === 1) && (fixed || rank === 2)) {
      return { ...base, inPlace: true, rowStrideBytes: fixed ? 0 : rowStride * e };
    }
    const room = (elements: number): number => reserve(Math.ceil((elements * e) / 4));
    if (si === 0 && fixed) return { ...base, copy: 1, at: room(1) };
    if (si === 0)
      return {
        ...base,
        copy: rows,
        at: room(rows),
        rowStrideBytes: e,
        rowStarts: rank > 2 ? stridedOffsets(outer, merged.strides[i], 0) : null,
      };
    if (si === 1 && fixed) return { ...base, copy: cols, at: room(cols) };
    const rowStarts = rank > 2 ? stridedOffsets(outer, merged.strides[i], 0) : null;
    const contiguous = si === 1 && (rowStarts === null ? rowStride === cols : rowStarts.every((o, r) => o === r * cols));
    return { ...base, copy: rows * cols, at: room(rows * cols), rowStrideBytes: cols * e, rowStarts, contiguous };
  });
  const nIn = inputs.length;
  const outAt = spec.outputs.map((_, j) =>
    (residency & (1 << (nIn + j))) !== 0 ? -1 : reserve(Math.ceil((rows * cols * outSize[j]) / 4)),
  );
  const layouts = placements.map((pl) => pl.layout);
  const fn = cachedKernel('elementwise', spec, layouts, () => kernelBytes(spec, layouts));
  return {
    shape: shape.slice(),
    strides: inputs.map((x) => x.strides.slice()),
    residency,
    rows,
    cols,
    vecs: Math.ceil(cols / 4),
    size,
    placements,
    outAt,
    used,
    fn,
    args: new Array<number>(3 + 2 * nIn + spec.outputs.length).fill(0),
    outStrides: contiguousStrides(shape as number[]),
  };
}

function planFor(spec: WasmFusedSpec, inputs: readonly NDArray[], shape: readonly number[], residency: number): Plan {
  let list = plans.get(spec);
  if (list === undefined) {
    list = [];
    plans.set(spec, list);
  }
  for (const p of list) if (p.residency === residency && sameNums(p.shape, shape) && sameStrides(inputs, p.strides)) return p;
  const plan = makePlan(spec, inputs, shape, residency);
  // A few layouts per group (first steps with ordinary arrays, later ones resident).
  if (list.length >= 4) list.shift();
  list.push(plan);
  return plan;
}

/**
 * Runs `spec` over inputs of equal logical `shape` (strided views, broadcasts included) and
 * returns its outputs as contiguous float32 (or bool) arrays from the buffer pool; null when
 * WebAssembly SIMD is off or unavailable (the caller's JS loop then runs).
 *
 * Operands that live in the arena (resident buffers, core/backend/pool.ts) are read in place when
 * their rows have one stride; results are written in place when the pool hands out a resident
 * buffer. Everything else is copied into a scratch block of the arena for the call.
 */
export function runWasmFused(
  spec: WasmFusedSpec,
  inputs: readonly NDArray[],
  shape: readonly number[],
  reuse?: readonly (TypedArray | undefined)[],
): NDArray[] | null {
  if (elementwiseBackendName() !== 'wasm-simd') return null;
  let size = 1;
  for (const d of shape) size *= d;
  if (size === 0) return null;
  const nIn = inputs.length;
  const nOut = spec.outputs.length;
  const outs = new Array<Float32Array | Uint8Array>(nOut);
  // Bit i: operand i lives in the arena; bit nIn + j: result j does (groups have far fewer than
  // 31 operands; past that everything is copied).
  let residency = 0;
  for (let i = 0; i < nIn && i < 31; i++) if (residentOffset(inputs[i].data) >= 0) residency |= 1 << i;
  for (let j = 0; j < nOut; j++) {
    // A caller-chosen buffer (an input read for the last time here) or one from the pool.
    outs[j] =
      (reuse?.[j] as Float32Array | Uint8Array | undefined) ??
      (spec.outputTypes[j] === 'mask' ? (takeBuffer('bool', size) as Uint8Array) : (takeBuffer('float32', size) as Float32Array));
    if (nIn + j < 31 && residentOffset(outs[j]) >= 0) residency |= 1 << (nIn + j);
  }
  const plan = planFor(spec, inputs, shape, residency);
  const { rows, cols, used, args } = plan;
  const block = used > 0 ? arenaAlloc(used * 4) : 0;
  if (block < 0) return null;
  const h = arenaF32();
  const hb = arenaU8();
  args[0] = rows;
  args[1] = plan.vecs;
  args[2] = cols;
  for (let i = 0; i < nIn; i++) {
    const x = inputs[i];
    const pl = plan.placements[i];
    const off = x.offset;
    if (pl.inPlace) {
      args[3 + 2 * i] = residentOffset(x.data, off);
      args[4 + 2 * i] = pl.rowStrideBytes;
      continue;
    }
    const ptr = block + pl.at * 4;
    args[3 + 2 * i] = ptr;
    args[4 + 2 * i] = pl.rowStrideBytes;
    // Copies in element units of the operand's own view (floats, or bytes for a mask).
    const mask = spec.inputTypes[i] === 'mask';
    const view: Float32Array | Uint8Array = mask ? hb : h;
    const at = mask ? ptr : ptr >> 2;
    const data = x.data as Float32Array | Uint8Array;
    const si = pl.innerStride;
    if (pl.copy === 1) view[at] = data[off];
    else if (si === 1 && pl.copy === cols) view.set(data.subarray(off, off + cols), at);
    else if (pl.contiguous) view.set(data.subarray(off, off + rows * cols), at);
    else {
      const starts = pl.rowStarts;
      const rs = pl.rowStride;
      if (pl.layout === 'splat') for (let r = 0; r < rows; r++) view[at + r] = data[off + (starts === null ? r * rs : starts[r])];
      else if (si === 1) {
        for (let r = 0; r < rows; r++) {
          const o = off + (starts === null ? r * rs : starts[r]);
          view.set(data.subarray(o, o + cols), at + r * cols);
        }
      } else {
        for (let r = 0, d = at; r < rows; r++)
          for (let c = 0, o = off + (starts === null ? r * rs : starts[r]); c < cols; c++, o += si) view[d++] = data[o];
      }
    }
  }
  for (let j = 0; j < nOut; j++) args[3 + 2 * nIn + j] = plan.outAt[j] < 0 ? residentOffset(outs[j]) : block + plan.outAt[j] * 4;
  plan.fn(...args);
  wasmElementwiseStats.calls++;
  const strides = plan.outStrides;
  const result = new Array<NDArray>(nOut);
  for (let j = 0; j < nOut; j++) {
    const at = plan.outAt[j];
    const mask = spec.outputTypes[j] === 'mask';
    if (at >= 0) {
      if (mask) (outs[j] as Uint8Array).set(hb.subarray(block + at * 4, block + at * 4 + size));
      else (outs[j] as Float32Array).set(h.subarray((block >> 2) + at, (block >> 2) + at + size));
    }
    result[j] = new NDArray(makeView(outs[j], shape.slice(), strides, 0), mask ? 'bool' : 'float32');
  }
  if (used > 0) arenaFree(block, used * 4);
  return result;
}
