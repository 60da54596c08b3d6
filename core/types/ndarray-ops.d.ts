declare module 'ndarray-ops' {
  import type { NdArray } from 'ndarray';
  type Data = NdArray<ArrayLike<number> & { [i: number]: number }>;
  /** dst[i] = src[i] over two equally shaped views (any strides). */
  export function assign(dst: Data, src: Data): void;
  /** dst[i] = value over a view. */
  export function assigns(dst: Data, value: number): void;
}
