/**
 * The elementwise primitives as plain JS functions over numbers: what the interpreted fused loops
 * run where `new Function` is forbidden (a strict Content-Security-Policy). Each is written to give
 * exactly what the generated loop's expression gives (`elementwiseCode` in fusion.ts, same operations
 * in the same order); the rounding to the output dtype (storeAs) is applied by the caller, in both.
 * Comparisons give 1/0 where the generated code gives true/false: every result is stored through
 * storeAs, which maps both to the same number.
 */
import type { DType } from '../dtype.js';
import type { ElementwisePrim } from './fusion.js';

/** (output dtype, operands) -> the unrounded result. */
export type ScalarFn = (outDtype: DType, a: number, b: number, c: number) => number;

const isInt = (dt: DType): boolean => dt === 'int32' || dt === 'uint32';

export const elementwiseFns: { [P in ElementwisePrim]: ScalarFn } = {
  neg: (_d, a) => -a,
  exp: (_d, a) => Math.exp(a),
  log: (_d, a) => Math.log(a),
  sqrt: (_d, a) => Math.sqrt(a),
  tanh: (_d, a) => Math.tanh(a),
  logistic: (_d, a) => 1 / (1 + Math.exp(-a)),
  abs: (_d, a) => Math.abs(a),
  sign: (_d, a) => Math.sign(a),
  floor: (_d, a) => Math.floor(a),
  add: (_d, a, b) => a + b,
  sub: (_d, a, b) => a - b,
  mul: (d, a, b) => (isInt(d) ? Math.imul(a, b) : a * b),
  div: (d, a, b) => (isInt(d) ? Math.trunc(a / b) : a / b),
  max: (_d, a, b) => (a > b || a !== a ? a : b),
  min: (_d, a, b) => (a < b || a !== a ? a : b),
  pow: (_d, a, b) => Math.pow(a, b),
  lt: (_d, a, b) => (a < b ? 1 : 0),
  le: (_d, a, b) => (a <= b ? 1 : 0),
  gt: (_d, a, b) => (a > b ? 1 : 0),
  ge: (_d, a, b) => (a >= b ? 1 : 0),
  eq: (_d, a, b) => (a === b ? 1 : 0),
  ne: (_d, a, b) => (a !== b ? 1 : 0),
  where: (_d, a, b, c) => (a ? b : c),
  cast: (d, a) => (d === 'bool' ? (a != 0 || a !== a ? 1 : 0) : a),
  stop_gradient: (_d, a) => a,
};

/** What an array of `dtype` stores for `x` (storeAs in fusion.ts, as a function). */
export function storeFn(dtype: DType): (x: number) => number {
  switch (dtype) {
    case 'float32':
      return Math.fround;
    case 'float64':
      return (x) => x;
    case 'int32':
      return (x) => x | 0;
    case 'uint32':
      return (x) => x >>> 0;
    case 'bool':
      return (x) => (x ? 1 : 0);
  }
}
