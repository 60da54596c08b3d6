/**
 * The scalar-op table: what every elementwise primitive computes on one element, written once and
 * rendered by every backend (as tinygrad's `code_for_op` and jax-js's ALU ops are):
 *
 * - `js`: a JS expression for the generated loop nests (core/backend/fusion.ts, cpu-compile.ts);
 *   the result is rounded to the output dtype by `storeAs` afterwards;
 * - `evaluate`: the same computation as a plain function on numbers, for interpreters that may
 *   not generate code (a CSP page) and as the reference the table's tests hold `js` to;
 * - `simd`: how the op runs on float32x4 lanes in the generated WebAssembly kernels
 *   (core/backend/wasm/elementwise.ts), or `null` where WebAssembly has no exact instruction
 *   sequence for it and the group stays on the JS path;
 * - `gpu`: a gpu.js-JS expression (transpiled to GLSL) over float32 values, with bools held as
 *   1.0 / 0.0; null where the GPU kernels cannot express the case (casts to integer dtypes).
 *
 * The table is typed `{ [P in ElementwisePrim]: ScalarOp }`: a new elementwise primitive does not
 * compile until it says what it is on every backend, including an explicit `simd: null`.
 */
import { coerceScalar, type DType } from '../dtype.js';
import { ELEMENTWISE, type ElementwisePrim, type Primitive } from '../primitives.js';
import { SIMD_OP, type Code as WasmCode } from './wasm/encoder.js';

export type { ElementwisePrim };

/** Operand expressions, the equation's params and its output dtype -> a JS expression. */
export type JsRender = (args: readonly string[], params: Readonly<Record<string, unknown>>, outDtype: DType) => string;
/** Operand values, params and output dtype -> the value before it is stored as `outDtype`. */
export type Evaluate = (args: readonly number[], params: Readonly<Record<string, unknown>>, outDtype: DType) => number;
/** Operand expressions and params -> a gpu.js expression, or null when the GPU kernels cannot express it. */
export type GpuRender = (args: readonly string[], params: Readonly<Record<string, unknown>>) => string | null;

/** A value in a WebAssembly kernel: float32 lanes, or a lane mask (the bool dtype). */
export type LaneType = 'f32' | 'mask';

export interface SimdRender {
  /** The lane type of the result for these operand lane types and output dtype; null when unsupported. */
  result(args: readonly LaneType[], outDtype: DType): LaneType | null;
  /** Emits the op: `operand(i)` pushes operand i; leaves one v128 of lane type `result` on the stack. */
  emit(f: WasmCode, operand: (i: number) => void, args: readonly LaneType[], result: LaneType): void;
}

export interface ScalarOp {
  readonly arity: 1 | 2 | 3;
  readonly js: JsRender;
  readonly evaluate: Evaluate;
  /** Explicitly null where WebAssembly SIMD has no exact instruction sequence (the JS path runs). */
  readonly simd: SimdRender | null;
  readonly gpu: GpuRender;
  /** The result is the operand itself, so the eager kernel returns it without copying. */
  readonly identity?: true;
}

const isInteger = (dt: DType): boolean => dt === 'int32' || dt === 'uint32';

/** Wraps an intermediate so it holds exactly what an array of `dtype` would store. */
export function storeAs(expr: string, dtype: DType): string {
  switch (dtype) {
    case 'float32':
      return `Math.fround(${expr})`;
    case 'float64':
      return expr;
    case 'int32':
      return `((${expr})|0)`;
    case 'uint32':
      return `((${expr})>>>0)`;
    case 'bool':
      return `((${expr})?1:0)`;
  }
}

/** `storeAs` on a value: what an array of `dtype` holds after storing `value` (the same rounding as `coerceScalar`). */
export const storeValue: (value: number, dtype: DType) => number = coerceScalar;

const js1 =
  (f: (a: string) => string): JsRender =>
  (args) =>
    f(args[0]);
const js2 =
  (f: (a: string, b: string) => string): JsRender =>
  (args) =>
    f(args[0], args[1]);
/**
 * log(1 + a) = a - a^2/2 + a^3/3 - ... in Horner form, 13 terms: for |a| < 0.25 the first term
 * left out is below 2^-24 of the result, so the series is as exact as float32 arithmetic allows.
 */
function log1pSeries(a: string): string {
  const coefficient = (k: number): string => (k === 1 ? '1.0' : String(Math.fround(1 / k)));
  let acc = coefficient(13);
  for (let k = 12; k >= 1; k--) acc = `(${coefficient(k)} - ${a} * ${acc})`;
  return `(${a} * ${acc})`;
}

const gpu1 =
  (f: (a: string) => string): GpuRender =>
  (args) =>
    f(args[0]);
const gpu2 =
  (f: (a: string, b: string) => string): GpuRender =>
  (args) =>
    f(args[0], args[1]);

const allF32 = (args: readonly LaneType[]): boolean => args.every((t) => t === 'f32');

/** A float32 -> float32 op that is one SIMD instruction on the operands in order. */
function simdArith(opcode: number): SimdRender {
  return {
    result: (args, outDtype) => (allF32(args) && outDtype === 'float32' ? 'f32' : null),
    emit(f, operand, args) {
      for (let i = 0; i < args.length; i++) operand(i);
      f.simdOp(opcode);
    },
  };
}

/** A float32 comparison: one SIMD instruction giving a lane mask. */
function simdCompare(opcode: number): SimdRender {
  return {
    result: (args) => (allF32(args) ? 'mask' : null),
    emit(f, operand) {
      operand(0);
      operand(1);
      f.simdOp(opcode);
    },
  };
}

/** (a > b || a != a) ? a : b, the JS path's NaN-propagating rule (f32x4.max differs on signed zeros). */
function simdMaxMin(compare: number): SimdRender {
  return {
    result: (args, outDtype) => (allF32(args) && outDtype === 'float32' ? 'f32' : null),
    emit(f, operand) {
      operand(0);
      operand(1);
      operand(0);
      operand(1);
      f.simdOp(compare);
      operand(0);
      operand(0);
      f.simdOp(SIMD_OP.f32x4Ne);
      f.simdOp(SIMD_OP.v128Or);
      f.simdOp(SIMD_OP.v128Bitselect);
    },
  };
}

const maxJs = (a: string, c: string): string => `(${a}>${c}||${a}!==${a}?${a}:${c})`;
const minJs = (a: string, c: string): string => `(${a}<${c}||${a}!==${a}?${a}:${c})`;

export const SCALAR_OPS: { readonly [P in ElementwisePrim]: ScalarOp } = {
  neg: {
    arity: 1,
    js: js1((a) => `(-${a})`),
    evaluate: ([a]) => -a,
    simd: simdArith(SIMD_OP.f32x4Neg),
    gpu: gpu1((a) => `(-${a})`),
  },
  exp: { arity: 1, js: js1((a) => `Math.exp(${a})`), evaluate: ([a]) => Math.exp(a), simd: null, gpu: gpu1((a) => `Math.exp(${a})`) },
  log: { arity: 1, js: js1((a) => `Math.log(${a})`), evaluate: ([a]) => Math.log(a), simd: null, gpu: gpu1((a) => `Math.log(${a})`) },
  log1p: {
    arity: 1,
    js: js1((a) => `Math.log1p(${a})`),
    evaluate: ([a]) => Math.log1p(a),
    simd: null,
    // GLSL has no log1p, and a shader compiler may fold (1 + a) - 1 to a (Mesa does), so the usual
    // log(u) * a / (u - 1) trick is not safe: small |a| uses the series, the rest log(1 + a).
    gpu: gpu1((a) => `(Math.abs(${a}) < 0.25 ? ${log1pSeries(a)} : Math.log(1.0 + ${a}))`),
  },
  sqrt: {
    arity: 1,
    js: js1((a) => `Math.sqrt(${a})`),
    evaluate: ([a]) => Math.sqrt(a),
    simd: simdArith(SIMD_OP.f32x4Sqrt),
    gpu: gpu1((a) => `Math.sqrt(${a})`),
  },
  tanh: {
    arity: 1,
    js: js1((a) => `Math.tanh(${a})`),
    evaluate: ([a]) => Math.tanh(a),
    simd: null,
    // GLSL ES 1.0 has no tanh: 1 - 2 / (e^2a + 1) saturates correctly at both ends.
    gpu: gpu1((a) => `(1.0 - 2.0 / (Math.exp(2.0 * ${a}) + 1.0))`),
  },
  logistic: {
    arity: 1,
    js: js1((a) => `(1/(1+Math.exp(-${a})))`),
    evaluate: ([a]) => 1 / (1 + Math.exp(-a)),
    simd: null,
    gpu: gpu1((a) => `(1.0 / (1.0 + Math.exp(-${a})))`),
  },
  abs: {
    arity: 1,
    js: js1((a) => `Math.abs(${a})`),
    evaluate: ([a]) => Math.abs(a),
    simd: simdArith(SIMD_OP.f32x4Abs),
    gpu: gpu1((a) => `Math.abs(${a})`),
  },
  sign: {
    arity: 1,
    js: js1((a) => `Math.sign(${a})`),
    evaluate: ([a]) => Math.sign(a),
    // Math.sign: 1 where a > 0, -1 where a < 0, else a itself (keeps -0, +0 and NaN).
    simd: {
      result: (args, outDtype) => (allF32(args) && outDtype === 'float32' ? 'f32' : null),
      emit(f, operand) {
        f.f32x4Const(-1);
        f.f32x4Const(1);
        operand(0);
        operand(0);
        f.v128Zero();
        f.simdOp(SIMD_OP.f32x4Gt);
        f.simdOp(SIMD_OP.v128Bitselect);
        operand(0);
        f.v128Zero();
        f.simdOp(SIMD_OP.f32x4Lt);
        f.simdOp(SIMD_OP.v128Bitselect);
      },
    },
    gpu: gpu1((a) => `(${a} > 0.0 ? 1.0 : (${a} < 0.0 ? -1.0 : 0.0))`),
  },
  floor: {
    arity: 1,
    js: js1((a) => `Math.floor(${a})`),
    evaluate: ([a]) => Math.floor(a),
    simd: simdArith(SIMD_OP.f32x4Floor),
    gpu: gpu1((a) => `Math.floor(${a})`),
  },
  add: {
    arity: 2,
    js: js2((a, c) => `(${a}+${c})`),
    evaluate: ([a, c]) => a + c,
    simd: simdArith(SIMD_OP.f32x4Add),
    gpu: gpu2((a, c) => `(${a} + ${c})`),
  },
  sub: {
    arity: 2,
    js: js2((a, c) => `(${a}-${c})`),
    evaluate: ([a, c]) => a - c,
    simd: simdArith(SIMD_OP.f32x4Sub),
    gpu: gpu2((a, c) => `(${a} - ${c})`),
  },
  mul: {
    arity: 2,
    js: (args, _p, dt) => (isInteger(dt) ? `Math.imul(${args[0]},${args[1]})` : `(${args[0]}*${args[1]})`),
    evaluate: ([a, c], _p, dt) => (isInteger(dt) ? Math.imul(a, c) : a * c),
    simd: simdArith(SIMD_OP.f32x4Mul),
    gpu: gpu2((a, c) => `(${a} * ${c})`),
  },
  div: {
    arity: 2,
    js: (args, _p, dt) => (isInteger(dt) ? `Math.trunc(${args[0]}/${args[1]})` : `(${args[0]}/${args[1]})`),
    evaluate: ([a, c], _p, dt) => (isInteger(dt) ? Math.trunc(a / c) : a / c),
    simd: simdArith(SIMD_OP.f32x4Div),
    gpu: gpu2((a, c) => `(${a} / ${c})`),
  },
  // NaN-propagating like numpy's maximum/minimum (the GPU follows its own NaN rules).
  max: {
    arity: 2,
    js: js2(maxJs),
    evaluate: ([a, c]) => (a > c || a !== a ? a : c),
    simd: simdMaxMin(SIMD_OP.f32x4Gt),
    gpu: gpu2((a, c) => `((${a} > ${c} || ${a} !== ${a}) ? ${a} : ${c})`),
  },
  min: {
    arity: 2,
    js: js2(minJs),
    evaluate: ([a, c]) => (a < c || a !== a ? a : c),
    simd: simdMaxMin(SIMD_OP.f32x4Lt),
    gpu: gpu2((a, c) => `((${a} < ${c} || ${a} !== ${a}) ? ${a} : ${c})`),
  },
  pow: {
    arity: 2,
    js: js2((a, c) => `Math.pow(${a},${c})`),
    evaluate: ([a, c]) => Math.pow(a, c),
    simd: null,
    // GLSL pow is undefined for a negative base: integer exponents get their sign back by hand.
    gpu: gpu2(
      (a, c) =>
        `(${a} >= 0.0 ? Math.pow(${a}, ${c}) : (Math.floor(${c}) === ${c} ? (Math.abs(${c} - 2.0 * Math.floor(${c} * 0.5)) > 0.5 ? -Math.pow(-${a}, ${c}) : Math.pow(-${a}, ${c})) : Math.sqrt(-1.0 - Math.abs(${a}))))`,
    ),
  },
  // GPU compares: ordered compares are false when either side is NaN, written with explicit NaN
  // tests; a compiler that assumes no NaN otherwise turns a compare feeding a select into max/min
  // (Mesa made relu's where(x <= 0, 0, x) a max(x, 0), which drops NaN).
  lt: {
    arity: 2,
    js: js2((a, c) => `(${a}<${c})`),
    evaluate: ([a, c]) => (a < c ? 1 : 0),
    simd: simdCompare(SIMD_OP.f32x4Lt),
    gpu: gpu2((a, c) => `(${a} >= ${c} || ${a} !== ${a} || ${c} !== ${c} ? 0.0 : 1.0)`),
  },
  le: {
    arity: 2,
    js: js2((a, c) => `(${a}<=${c})`),
    evaluate: ([a, c]) => (a <= c ? 1 : 0),
    simd: simdCompare(SIMD_OP.f32x4Le),
    gpu: gpu2((a, c) => `(${a} > ${c} || ${a} !== ${a} || ${c} !== ${c} ? 0.0 : 1.0)`),
  },
  gt: {
    arity: 2,
    js: js2((a, c) => `(${a}>${c})`),
    evaluate: ([a, c]) => (a > c ? 1 : 0),
    simd: simdCompare(SIMD_OP.f32x4Gt),
    gpu: gpu2((a, c) => `(${a} <= ${c} || ${a} !== ${a} || ${c} !== ${c} ? 0.0 : 1.0)`),
  },
  ge: {
    arity: 2,
    js: js2((a, c) => `(${a}>=${c})`),
    evaluate: ([a, c]) => (a >= c ? 1 : 0),
    simd: simdCompare(SIMD_OP.f32x4Ge),
    gpu: gpu2((a, c) => `(${a} < ${c} || ${a} !== ${a} || ${c} !== ${c} ? 0.0 : 1.0)`),
  },
  eq: {
    arity: 2,
    js: js2((a, c) => `(${a}===${c})`),
    evaluate: ([a, c]) => (a === c ? 1 : 0),
    simd: simdCompare(SIMD_OP.f32x4Eq),
    gpu: gpu2((a, c) => `(${a} === ${c} ? 1.0 : 0.0)`),
  },
  ne: {
    arity: 2,
    js: js2((a, c) => `(${a}!==${c})`),
    evaluate: ([a, c]) => (a !== c ? 1 : 0),
    simd: simdCompare(SIMD_OP.f32x4Ne),
    gpu: gpu2((a, c) => `(${a} !== ${c} ? 1.0 : 0.0)`),
  },
  where: {
    arity: 3,
    js: (args) => `(${args[0]}?${args[1]}:${args[2]})`,
    evaluate: ([m, a, c]) => (m ? a : c),
    simd: {
      result: ([m, a, c]) => (m === 'mask' && a === 'f32' && c === 'f32' ? 'f32' : null),
      emit(f, operand) {
        operand(1);
        operand(2);
        operand(0);
        f.simdOp(SIMD_OP.v128Bitselect);
      },
    },
    gpu: (a) => `(${a[0]} > 0.5 ? ${a[1]} : ${a[2]})`,
  },
  // To bool, NaN counts as true as in numpy (a plain truthiness test would make it false).
  cast: {
    arity: 1,
    js: (args, _p, dt) => (dt === 'bool' ? `(${args[0]}!=0||${args[0]}!==${args[0]})` : args[0]),
    evaluate: ([a], _p, dt) => (dt === 'bool' ? (a != 0 || a !== a ? 1 : 0) : a),
    simd: {
      result: (_args, outDtype) => (outDtype === 'float32' ? 'f32' : outDtype === 'bool' ? 'mask' : null),
      emit(f, operand, [from], to) {
        operand(0);
        if (from === 'mask' && to === 'f32') {
          f.f32x4Const(1);
          f.simdOp(SIMD_OP.v128And);
        } else if (from === 'f32' && to === 'mask') {
          // NaN counts as true, as in the JS path (a != 0 is true for NaN).
          f.v128Zero();
          f.simdOp(SIMD_OP.f32x4Ne);
        }
      },
    },
    gpu: (a, p) => (p.dtype === 'float32' ? a[0] : p.dtype === 'bool' ? `(${a[0]} !== 0.0 ? 1.0 : 0.0)` : null),
  },
  stop_gradient: {
    arity: 1,
    js: js1((a) => a),
    evaluate: ([a]) => a,
    simd: { result: ([a]) => a, emit: (_f, operand) => operand(0) },
    gpu: gpu1((a) => a),
    identity: true,
  },
};

/** True for the primitives the scalar-op table covers (one element in, one element out). */
export function isElementwise(prim: Primitive): prim is ElementwisePrim {
  return ELEMENTWISE.has(prim);
}
