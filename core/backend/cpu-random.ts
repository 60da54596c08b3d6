/** Random primitives on the CPU: thin wrappers over the pure threefry functions in core/prng. */
import ndarray from 'ndarray';
import { type DType, type TypedArray } from '../dtype.js';
import { NDArray } from '../ndarray.js';
import type { PrimParams } from '../primitives.js';
import { contiguousStrides, sizeOf } from '../shape.js';
import * as prng from '../prng/index.js';

type RandomPrim = 'random_bits' | 'random_split' | 'random_fold_in' | 'random_uniform' | 'random_normal' | 'random_randint' | 'random_permutation';

function out(data: TypedArray, shape: readonly number[], dtype: DType): NDArray[] {
  return [new NDArray(ndarray(data, shape.slice(), contiguousStrides(shape), 0), dtype)];
}
const keyOf = (k: NDArray): Uint32Array => k.toTyped() as Uint32Array;

export const randomKernels: { [P in RandomPrim]: (inputs: NDArray[], params: PrimParams[P]) => NDArray[] } = {
  random_bits: ([k], { shape }) => out(prng.randomBits(keyOf(k), sizeOf(shape)), shape, 'uint32'),
  random_split: ([k], { n }) => out(prng.splitKey(keyOf(k), n), [n, 2], 'uint32'),
  random_fold_in: ([k], { data }) => out(prng.foldIn(keyOf(k), data), [2], 'uint32'),
  random_uniform: ([k], { shape, dtype, minval, maxval }) => {
    if (dtype !== 'float32' && dtype !== 'float64') throw new TypeError(`uniform: dtype must be float32 or float64, got ${dtype}`);
    return out(prng.uniform(keyOf(k), sizeOf(shape), { dtype, minval, maxval }), shape, dtype);
  },
  random_normal: ([k], { shape, dtype }) => {
    if (dtype !== 'float32' && dtype !== 'float64') throw new TypeError(`normal: dtype must be float32 or float64, got ${dtype}`);
    return out(prng.normal(keyOf(k), sizeOf(shape), dtype), shape, dtype);
  },
  random_randint: ([k], { shape, minval, maxval }) => out(prng.randint(keyOf(k), sizeOf(shape), minval, maxval), shape, 'int32'),
  random_permutation: ([k], { n }) => out(prng.permutation(keyOf(k), n), [n], 'int32'),
};
