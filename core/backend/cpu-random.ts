/** Random primitives on the CPU: thin wrappers over the pure threefry functions in core/prng. */
import { type DType, type TypedArray } from '../dtype.js';
import { makeView, NDArray } from '../ndarray.js';
import type { PrimParams } from '../primitives.js';
import { contiguousStrides, sizeOf } from '../shape.js';
import * as prng from '../prng/index.js';
import { isPartitionable } from '../prng/bits.js';
import { takeBuffer } from './pool.js';
import { wasmRandomBits, wasmUniform01 } from './wasm/threefry.js';

/** Fewest words for which the WebAssembly threefry (same words) beats the JS loop's call cost. */
const WASM_RANDOM_MIN = 256;

type RandomPrim =
  'random_bits' | 'random_split' | 'random_fold_in' | 'random_uniform' | 'random_normal' | 'random_randint' | 'random_permutation';

function out(data: TypedArray, shape: readonly number[], dtype: DType): NDArray[] {
  return [new NDArray(makeView(data, shape.slice(), contiguousStrides(shape), 0), dtype)];
}
const keyOf = (k: NDArray): Uint32Array => k.toTyped() as Uint32Array;

export const randomKernels: { [P in RandomPrim]: (inputs: NDArray[], params: PrimParams[P]) => NDArray[] } = {
  random_bits: ([k], { shape }) => {
    const key = keyOf(k);
    const n = sizeOf(shape);
    const fast =
      n >= WASM_RANDOM_MIN && !isPartitionable(undefined) && key.length === 2
        ? wasmRandomBits(key[0], key[1], n, takeBuffer('uint32', n) as Uint32Array)
        : null;
    return out(fast ?? prng.randomBits(key, n), shape, 'uint32');
  },
  random_split: ([k], { n }) => out(prng.splitKey(keyOf(k), n), [n, 2], 'uint32'),
  random_fold_in: ([k], { data }) => out(prng.foldIn(keyOf(k), data), [2], 'uint32'),
  random_uniform: ([k], { shape, dtype, minval, maxval }) => {
    if (dtype !== 'float32' && dtype !== 'float64') throw new TypeError(`uniform: dtype must be float32 or float64, got ${dtype}`);
    const key = keyOf(k);
    const n = sizeOf(shape);
    // [0, 1) float32 in the classic layout: the same bits and floats from the WebAssembly threefry.
    const simple =
      dtype === 'float32' && minval === 0 && maxval === 1 && n >= WASM_RANDOM_MIN && !isPartitionable(undefined) && key.length === 2;
    // Into a pool buffer: inside a compiled program it lives in the arena, where the kernel writes
    // it in place and the comparison that follows (poissonEncode) reads it in place; a fresh array
    // of a Poisson batch's 2.5M floats cost more in page faults and copies than the hash.
    const fast = simple ? wasmUniform01(key[0], key[1], n, takeBuffer('float32', n) as Float32Array) : null;
    return out(fast ?? prng.uniform(key, n, { dtype, minval, maxval }), shape, dtype);
  },
  random_normal: ([k], { shape, dtype }) => {
    if (dtype !== 'float32' && dtype !== 'float64') throw new TypeError(`normal: dtype must be float32 or float64, got ${dtype}`);
    return out(prng.normal(keyOf(k), sizeOf(shape), dtype), shape, dtype);
  },
  random_randint: ([k], { shape, minval, maxval }) => out(prng.randint(keyOf(k), sizeOf(shape), minval, maxval), shape, 'int32'),
  random_permutation: ([k], { n }) => out(prng.permutation(keyOf(k), n), [n], 'int32'),
};
