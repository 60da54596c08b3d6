/**
 * Fused elementwise kernels: an expression program over strided inputs, generated as one JS loop
 * nest with `new Function`, optionally ending in a reduction over the innermost axes. The eager
 * path runs every elementwise primitive through a one-equation program; `jit` fuses chains. Where
 * `new Function` is forbidden (a Content-Security-Policy without 'unsafe-eval'), the same loops run
 * through an interpreter over the program's ops (SCALAR_OPS' `evaluate`), with bit-identical results.
 */
import type { DType, TypedArray } from '../dtype.js';
import { makeView, NDArray } from '../ndarray.js';
import type { PrimParams } from '../primitives.js';
import { contiguousStrides } from '../shape.js';
import { debugEnabled } from '../debug.js';
import { takeBuffer } from './pool.js';
import { numberText } from '../ir.js';
import { evalAllowed, forceEvalForbidden } from './eval-check.js';

import { SCALAR_OPS, storeAs, storeValue, type ElementwisePrim } from './scalar-ops.js';
import type { ReduceOp } from './plan.js';
export type { ElementwisePrim, ReduceOp };

/** An operand of a fused op: input i (`vi`), the result of op k (`tk`), or a literal. */
export type FusedArg = { readonly input: number } | { readonly temp: number } | { readonly literal: number };

/** One op of a fused program: `tk = storeAs(prim(args), dtype)`. */
export interface FusedOp {
  readonly prim: ElementwisePrim;
  readonly params: Record<string, unknown>;
  readonly dtype: DType;
  readonly args: readonly FusedArg[];
}

function argText(a: FusedArg): string {
  return 'input' in a ? `v${a.input}` : 'temp' in a ? `t${a.temp}` : `(${numberText(a.literal)})`;
}

/** The JS line of op k (the generated loop's source and the kernel cache's key). */
export function opLine(k: number, op: FusedOp): string {
  return `const t${k}=${storeAs(SCALAR_OPS[op.prim].js(op.args.map(argText), op.params, op.dtype), op.dtype)};`;
}

/**
 * A straight-line program over inputs v0..vn-1 producing temps t0..; outputs name temps (or
 * inputs). `lines[k]` is `opLine(k, ops[k])`.
 */
export interface FusedProgram {
  readonly numInputs: number;
  readonly ops: readonly FusedOp[];
  readonly lines: readonly string[];
  readonly outputs: readonly string[];
  readonly outDtypes: readonly DType[];
  readonly reduce?: { readonly op: ReduceOp; readonly axes: readonly number[] };
}

export function singleOpProgram<P extends ElementwisePrim>(
  prim: P,
  params: PrimParams[P],
  inDtypes: DType[],
  outDtype: DType,
): FusedProgram {
  const op: FusedOp = { prim, params: params as Record<string, unknown>, dtype: outDtype, args: inDtypes.map((_, i) => ({ input: i })) };
  return {
    numInputs: inDtypes.length,
    ops: [op],
    lines: [opLine(0, op)],
    outputs: ['t0'],
    outDtypes: [outDtype],
  };
}

export type KernelFn = (A: TypedArray[], off: number[], st: number[][], O: TypedArray[], shape: number[]) => void;
const kernelCache = new Map<string, KernelFn>();
export const kernelStats = { compiled: 0 };

function generate(prog: FusedProgram, rank: number, innerRank: number): string {
  const n = prog.numInputs;
  const outerRank = rank - innerRank;
  const src: string[] = [];
  for (let i = 0; i < n; i++) {
    src.push(`const A${i}=A[${i}];`);
    for (let d = 0; d < rank; d++) src.push(`const s${i}_${d}=st[${i}][${d}];`);
  }
  prog.outputs.forEach((_, j) => src.push(`const O${j}=O[${j}];`));
  for (let d = 0; d < rank; d++) src.push(`const n${d}=shape[${d}];`);
  src.push('let q=0;');
  const red = prog.reduce?.op;
  const init = red === 'sum' ? '0' : red === 'max' ? '-Infinity' : 'Infinity';
  const accumulate = (t: string): string =>
    red === 'sum' ? `acc+=${t};` : red === 'max' ? `if(${t}>acc||${t}!==${t})acc=${t};` : `if(${t}<acc||${t}!==${t})acc=${t};`;
  const ptr = (i: number, d: number): string => `p${i}_${d}`;
  const body = (d: number): void => {
    const reads = Array.from({ length: n }, (_, i) => `const v${i}=A${i}[${ptr(i, d)}];`).join('');
    const lines = prog.lines.join('');
    if (red) src.push(reads + lines + accumulate(prog.outputs[0]));
    else src.push(reads + lines + prog.outputs.map((t, j) => `O${j}[q]=${t};`).join('') + 'q++;');
  };
  for (let i = 0; i < n; i++) src.push(`let ${ptr(i, 0)}=off[${i}];`);
  // Loops from axis d to the innermost; each level advances its operands' pointers by their strides.
  const loops = (d: number, last: number, inner: () => void): void => {
    if (d === last) {
      inner();
      return;
    }
    src.push(`for(let i${d}=0;i${d}<n${d};i${d}++){`);
    for (let i = 0; i < n; i++) src.push(`let ${ptr(i, d + 1)}=${ptr(i, d)};`);
    loops(d + 1, last, inner);
    for (let i = 0; i < n; i++) src.push(`${ptr(i, d)}+=s${i}_${d};`);
    src.push('}');
  };
  if (!red) loops(0, rank, () => body(rank));
  else {
    // Outer loops over the kept axes; the accumulator restarts for every output element.
    loops(0, outerRank, () => {
      src.push(`let acc=${init};`);
      loops(outerRank, rank, () => body(rank));
      src.push('O0[q++]=acc;');
    });
  }
  return src.join('\n');
}

/** Per program object, its kernels by rank (a compiled program reuses one program object). */
const kernelsOfProgram = new WeakMap<FusedProgram, Map<number, KernelFn>>();

function getKernel(prog: FusedProgram, rank: number, innerRank: number): KernelFn {
  let byRank = kernelsOfProgram.get(prog);
  if (byRank === undefined) {
    byRank = new Map();
    kernelsOfProgram.set(prog, byRank);
  }
  const rankKey = rank * 64 + innerRank;
  const known = byRank.get(rankKey);
  if (known !== undefined) return known;
  const compiled = evalAllowed();
  const key = `${compiled ? 'js' : 'interpreted'}|${rank}|${innerRank}|${prog.reduce?.op ?? ''}|${prog.numInputs}|${prog.outputs.join(',')}|${prog.lines.join('')}`;
  let fn = kernelCache.get(key);
  if (fn === undefined) {
    fn = compiled ? compileOrInterpret(prog, rank, innerRank) : interpretKernel(prog, rank, innerRank);
    kernelCache.set(key, fn);
    kernelStats.compiled++;
  }
  byRank.set(rankKey, fn);
  return fn;
}

/**
 * The generated loop, or the interpreter if `new Function` throws after all (the first check can
 * pass where later ones fail: Chromium lets code run from the DevTools protocol generate code
 * under a CSP that forbids it to the page's own tasks).
 */
function compileOrInterpret(prog: FusedProgram, rank: number, innerRank: number): KernelFn {
  try {
    return compileKernel(prog, rank, innerRank);
  } catch (e) {
    if (!(e instanceof EvalError)) throw e;
    forceEvalForbidden(true);
    return interpretKernel(prog, rank, innerRank);
  }
}

/** The program's loop nest as generated JS (needs `new Function`). */
export function compileKernel(prog: FusedProgram, rank: number, innerRank: number): KernelFn {
  const source = generate(prog, rank, innerRank);
  if (debugEnabled('kernels')) console.error(`[spiketrace kernel]\n${source}`);
  return new Function('A', 'off', 'st', 'O', 'shape', source) as KernelFn;
}

/**
 * The same loop nest as `generate` writes, walked by an interpreter: the same element order, the
 * same operations per element (SCALAR_OPS' `evaluate`), the same rounding after each op (storeValue)
 * and the same float64 accumulator for reductions, so the results are bit-identical, only slower.
 */
export function interpretKernel(prog: FusedProgram, rank: number, innerRank: number): KernelFn {
  const n = prog.numInputs;
  // Registers: inputs 0..n-1, then one per op, then the literals.
  const literals: number[] = [];
  const reg = (a: FusedArg): number =>
    'input' in a ? a.input : 'temp' in a ? n + a.temp : n + prog.ops.length + literals.push(a.literal) - 1;
  const ops = prog.ops.map((op) => ({
    evaluate: SCALAR_OPS[op.prim].evaluate,
    params: op.params,
    dtype: op.dtype,
    regs: op.args.map(reg),
    argv: op.args.map(() => 0),
  }));
  const outRegs = prog.outputs.map((name) => {
    const m = /^([tv])(\d+)$/.exec(name);
    if (m === null) throw new Error(`interpretKernel: output ${name} is neither an input (vN) nor a temp (tN)`);
    return m[1] === 'v' ? Number(m[2]) : n + Number(m[2]);
  });
  const numOps = ops.length;
  const red = prog.reduce?.op;
  const outerRank = red ? rank - innerRank : rank;
  return (A, off, st, O, shape) => {
    const regs = new Float64Array(n + numOps + literals.length);
    regs.set(literals, n + numOps);
    const ptr = off.slice();
    const step = (): void => {
      for (let i = 0; i < n; i++) regs[i] = A[i][ptr[i]];
      for (let k = 0; k < numOps; k++) {
        const o = ops[k];
        for (let j = 0; j < o.regs.length; j++) o.argv[j] = regs[o.regs[j]];
        regs[n + k] = storeValue(o.evaluate(o.argv, o.params, o.dtype), o.dtype);
      }
    };
    // Walks axes [from, to) in row-major order, calling visit at every position; ptr follows.
    const walk = (from: number, to: number, visit: () => void): void => {
      if (from === to) {
        visit();
        return;
      }
      const saved = ptr.slice();
      for (let j = 0; j < shape[from]; j++) {
        walk(from + 1, to, visit);
        for (let i = 0; i < n; i++) ptr[i] += st[i][from];
      }
      for (let i = 0; i < n; i++) ptr[i] = saved[i];
    };
    let q = 0;
    if (!red) {
      walk(0, rank, () => {
        step();
        for (let j = 0; j < outRegs.length; j++) O[j][q] = regs[outRegs[j]];
        q++;
      });
      return;
    }
    const t = outRegs[0];
    walk(0, outerRank, () => {
      let acc = red === 'sum' ? 0 : red === 'max' ? -Infinity : Infinity;
      walk(outerRank, rank, () => {
        step();
        const v = regs[t];
        if (red === 'sum') acc += v;
        else if (red === 'max') {
          if (v > acc || v !== v) acc = v;
        } else if (v < acc || v !== v) acc = v;
      });
      O[0][q++] = acc;
    });
  };
}

/**
 * Merges adjacent axes that every operand walks contiguously, and drops size-1 axes, so the usual
 * cases (all contiguous; one broadcast operand) run as one or two flat loops.
 */
export function coalesce(shape: number[], strides: number[][]): { shape: number[]; strides: number[][] } {
  const keep = shape.map((d) => d !== 1);
  let outShape: number[] = [];
  let outStrides: number[][] = strides.map(() => []);
  shape.forEach((d, ax) => {
    if (!keep[ax]) return;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, i) => outStrides[i][last] === s[ax] * d)) {
      outShape[last] *= d;
      strides.forEach((s, i) => (outStrides[i][last] = s[ax]));
    } else {
      outShape.push(d);
      strides.forEach((s, i) => outStrides[i].push(s[ax]));
    }
  });
  if (shape.some((d) => d === 0)) {
    outShape = [0];
    outStrides = strides.map(() => [0]);
  }
  return { shape: outShape, strides: outStrides };
}

/**
 * Runs a fused program over equally shaped strided inputs. For a reduction, `shape` is the input
 * shape and `reduce.axes` the reduced axes; the output has the kept axes.
 */
export function runFused(prog: FusedProgram, inputs: readonly NDArray[], shape: readonly number[]): NDArray[] {
  const L = fusedLayout(prog, inputs, shape);
  // Every output element is written (a reduction writes each kept position once).
  const outs = new Array<TypedArray>(prog.outDtypes.length);
  for (let j = 0; j < outs.length; j++) outs[j] = takeBuffer(prog.outDtypes[j], L.outSize);
  if (L.kernel === null) {
    if (prog.reduce && prog.reduce.op !== 'sum') throw new Error(`reduce_${prog.reduce.op}: reduction over an empty axis`);
  } else {
    for (let i = 0; i < inputs.length; i++) {
      L.datas[i] = inputs[i].data;
      L.offsets[i] = inputs[i].offset;
    }
    L.kernel(L.datas, L.offsets, L.fullStrides, outs, L.fullShape);
    // The layout is cached: do not keep the inputs alive through it.
    L.datas.fill(EMPTY);
  }
  const result = new Array<NDArray>(outs.length);
  for (let j = 0; j < outs.length; j++) result[j] = wrap(outs[j], L.outShape, prog.outDtypes[j]);
  return result;
}

const EMPTY = new Float32Array(0);

/** How a program walks inputs of one shape and strides: computed once, reused while they recur. */
interface FusedLayout {
  shape: readonly number[];
  strides: (readonly number[])[];
  outShape: number[];
  outSize: number;
  fullShape: number[];
  fullStrides: number[][];
  kernel: KernelFn | null;
  datas: TypedArray[];
  offsets: number[];
}
const layouts = new WeakMap<FusedProgram, FusedLayout>();

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function fusedLayout(prog: FusedProgram, inputs: readonly NDArray[], shape: readonly number[]): FusedLayout {
  const known = layouts.get(prog);
  if (
    known !== undefined &&
    known.strides.length === inputs.length &&
    sameNumbers(known.shape, shape) &&
    inputs.every((x, i) => sameNumbers(x.strides, known.strides[i]))
  )
    return known;
  const axes = prog.reduce?.axes ?? [];
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const order = [...kept, ...axes];
  const outShape = kept.map((i) => shape[i]);
  const outSize = outShape.reduce((a, c) => a * c, 1);
  const totalSize = shape.reduce((a, c) => a * c, 1);
  const strides = inputs.map((x) => order.map((ax) => x.strides[ax]));
  const perm = order.map((ax) => shape[ax]);
  const outerPart = coalesce(
    perm.slice(0, kept.length),
    strides.map((s) => s.slice(0, kept.length)),
  );
  const innerPart = coalesce(
    perm.slice(kept.length),
    strides.map((s) => s.slice(kept.length)),
  );
  const fullShape = [...outerPart.shape, ...innerPart.shape];
  const fullStrides = strides.map((_, i) => [...outerPart.strides[i], ...innerPart.strides[i]]);
  const layout: FusedLayout = {
    shape: shape.slice(),
    strides: inputs.map((x) => x.strides.slice()),
    outShape,
    outSize,
    fullShape,
    fullStrides,
    kernel: totalSize === 0 ? null : getKernel(prog, fullShape.length, prog.reduce ? innerPart.shape.length : 0),
    datas: inputs.map(() => EMPTY),
    offsets: inputs.map(() => 0),
  };
  layouts.set(prog, layout);
  return layout;
}

function wrap(data: TypedArray, shape: number[], dtype: DType): NDArray {
  return new NDArray(makeView(data, shape, contiguousStrides(shape), 0), dtype);
}
