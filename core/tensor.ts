import type { DType, TypedArray } from './dtype.js';
import { sizeOf } from './shape.js';

/** Thrown when a traced value's numbers are read inside `jit`, `scan` or `makeJaxpr`. */
export class ConcretizationError extends Error {
  override name = 'ConcretizationError';
}

/**
 * The base of every array value: a concrete `NDArray` or a `Tracer` standing in for one inside a
 * transformation. All ops accept and return `Tensor`s; fluent methods (`x.add(y)`) are installed
 * by core/ops.ts.
 */
export abstract class Tensor {
  abstract readonly shape: readonly number[];
  abstract readonly dtype: DType;
  get ndim(): number {
    return this.shape.length;
  }
  get size(): number {
    return sizeOf(this.shape);
  }
  /** The concrete array behind this value; throws ConcretizationError where there is none. */
  abstract concrete(): ConcreteArray;
  /** A row-major copy of the values. */
  toTyped(): TypedArray {
    return this.concrete().toTyped();
  }
  /** Values as nested JS arrays (numbers; bools as 0/1). */
  toNested(): NestedArray {
    return this.concrete().toNested();
  }
  /** The value of a one-element array as a JS number. */
  item(): number {
    const c = this.concrete();
    if (c.size !== 1) throw new TypeError(`item(): expected an array of one element, got shape [${c.shape.join(', ')}]`);
    return c.toTyped()[0];
  }
}

export type NestedArray = number | NestedArray[];

/** The structural part of a concrete array that Tensor needs (implemented by NDArray). */
export interface ConcreteArray {
  readonly shape: readonly number[];
  readonly size: number;
  toTyped(): TypedArray;
  toNested(): NestedArray;
}
