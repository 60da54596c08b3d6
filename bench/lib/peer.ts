/** The interface each benchmarked library implements (one module per library in bench/peers/). */
import type { DenseWeights, ModelCase, StepClock, TrainData } from './common.js';

export interface Peer {
  /** The backend that runs, in words (e.g. 'wasm, SIMD, 1 thread'). */
  readonly backend: string;
  /**
   * Prepares (M x K) @ (K x N) on the library's own arrays and returns a function that computes
   * the product once and reads it back to the host (forcing lazy backends to finish).
   */
  matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): () => ArrayLike<number>;
  /**
   * Trains `model` from `weights` on `data` (batch b = rows [32b, 32b + 32), in order) with Adam
   * and sparse softmax cross-entropy, calling `clock.start()` before the first step and
   * `clock.step(loss)` after each, until it returns false or the data runs out. `lif` (batch 128)
   * trains its first step on `lifSpikes0`, the parent's rate-coded first batch.
   */
  train(model: ModelCase, weights: DenseWeights, data: TrainData, clock: StepClock, seed: number, lifSpikes0?: Uint8Array): void;
}
