/** Element types an array can hold. */
export type DType = 'float32' | 'float64' | 'int32' | 'uint32' | 'bool';

export type TypedArray = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

export const DTYPES: readonly DType[] = ['float32', 'float64', 'int32', 'uint32', 'bool'];

const constructors = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  uint32: Uint32Array,
  bool: Uint8Array,
} as const;

/** Allocates a zero-filled typed array for `dtype`. */
export function allocate(dtype: DType, size: number): TypedArray {
  return new constructors[dtype](size);
}

export function dtypeOfTyped(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint32Array) return 'uint32';
  if (data instanceof Uint8Array) return 'bool';
  throw new TypeError(`spiketrace: unsupported typed array ${(data as object).constructor.name}`);
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64';
}

/** Short names used by the IR printer, as JAX prints them. */
export const SHORT_NAME: Record<DType, string> = {
  float32: 'f32',
  float64: 'f64',
  int32: 'i32',
  uint32: 'u32',
  bool: 'bool',
};

/** Rounds a JS number to what a typed array of `dtype` would store. */
export function coerceScalar(value: number, dtype: DType): number {
  switch (dtype) {
    case 'float32':
      return Math.fround(value);
    case 'float64':
      return value;
    case 'int32':
      return value | 0;
    case 'uint32':
      return value >>> 0;
    case 'bool':
      return value ? 1 : 0;
  }
}

/** The dtype two operands are promoted to (float64 > float32 > int32 > uint32 > bool). */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a;
  const order: DType[] = ['bool', 'uint32', 'int32', 'float32', 'float64'];
  return order[Math.max(order.indexOf(a), order.indexOf(b))];
}
