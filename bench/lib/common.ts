/**
 * What the parent and every child of the benchmark share: the cases and sizes, the job and report
 * records, a seeded PRNG for the weights, the input files, and the step clock that times a training
 * run the same way for every peer.
 *
 * Nothing here imports a benchmarked library, so a child process loads only its own peer. The
 * parent builds the inputs once (bench/lib/inputs.ts) and writes them to files; each child reads
 * the same bytes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PEERS = ['spiketrace', 'jax-js', 'tfjs-wasm', 'tfjs-cpu'] as const;
export type PeerName = (typeof PEERS)[number];

/** The benchmark's cases, in report order. */
export const CASES = ['matmul', 'm1', 'm2', 'spiking', 'poisson', 'lif', 'lifStopGradient'] as const;
export type CaseName = (typeof CASES)[number];
export type ModelCase = Exclude<CaseName, 'matmul'>;

/** Cases only spiketrace can run (the peers have no spiking neuron). */
export const SPIKETRACE_ONLY: ReadonlySet<CaseName> = new Set<CaseName>(['spiking', 'poisson', 'lif', 'lifStopGradient']);

export const IMAGE = 784;
export const HIDDEN = 128;
export const CLASSES = 10;
export const TIME_STEPS = 10;
export const BATCH = 32;
export const TRAIN_ROWS = 60_000;
export const STEPS_PER_EPOCH = TRAIN_ROWS / BATCH;
/** Keras's Adam defaults. */
export const ADAM = { lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 } as const;
/** The matmul case: (M x K) @ (K x N), the TimeDistributed dense of one batch of 32 x 10 steps. */
export const MATMUL = { m: BATCH * TIME_STEPS, k: IMAGE, n: HIDDEN } as const;
/** Spiking layer's dt (the seed's spiking-aware model). */
export const SPIKING_DT = 0.01;

/** What the parent asks one child to run. */
export interface Job {
  readonly peer: PeerName;
  readonly case: CaseName;
  /** The folder the parent wrote the shared inputs to (see writeInputs). */
  readonly inputsDir: string;
  readonly seed: number;
  /** Training: untimed steps before the measured ones (0 in a full run: the whole epoch is timed). */
  readonly warmupSteps: number;
  /** Training: at most this many measured steps. */
  readonly maxSteps: number;
  /** Training: stop measuring once this many seconds have passed (null: run all maxSteps). */
  readonly budgetS: number | null;
  /** Matmul: timed repetitions (the best is kept), each of enough calls to last about repMs. */
  readonly reps: number;
  readonly repMs: number;
}

export interface MatmulResult {
  readonly kind: 'matmul';
  readonly bestMs: number;
  readonly gflops: number;
  readonly reps: number;
  readonly callsPerRep: number;
  /** Sum of the output, to check that the peers computed the same product. */
  readonly checksum: number;
}

export interface TrainResult {
  readonly kind: 'train';
  readonly warmupSteps: number;
  readonly measuredSteps: number;
  /** Wall time of the measured steps. */
  readonly measuredS: number;
  /** Wall time of the first step (tracing and compilation included). */
  readonly firstStepS: number;
  /** Every step's loss, warm-up steps included. */
  readonly losses: readonly number[];
}

/** What a child sends back. */
export interface WorkerReport {
  readonly job: Job;
  readonly ok: boolean;
  readonly error?: string;
  readonly result?: MatmulResult | TrainResult;
  /** Peak resident set of the child process (MB). */
  readonly peakRssMB: number;
  /** The backend that actually ran (e.g. 'wasm, SIMD, 1 thread'). */
  readonly backend: string;
  /** Hash of the initial weights the peer received (equal across peers). */
  readonly weightsHash: string;
  readonly dataSource: string;
}

// ---------------------------------------------------------------------------------------------
// Seeded numbers

/** A Weyl sequence through MurmurHash3's 32-bit finalizer: a fast, seedable uniform source in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}

/** Keras's glorot-uniform: U(-l, l), l = sqrt(6 / (fanIn + fanOut)), row-major (fanIn, fanOut). */
export function glorotUniform(next: () => number, fanIn: number, fanOut: number): Float32Array {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const w = new Float32Array(fanIn * fanOut);
  for (let i = 0; i < w.length; i++) w[i] = (2 * next() - 1) * limit;
  return w;
}

/** The two dense layers of every model: 784 -> 128 -> 10, biases zero (Keras's defaults). */
export interface DenseWeights {
  readonly w1: Float32Array; // (784, 128)
  readonly b1: Float32Array; // (128,)
  readonly w2: Float32Array; // (128, 10)
  readonly b2: Float32Array; // (10,)
}

/** FNV-1a over the bytes of some arrays, as 8 hex digits. */
export function hashArrays(arrays: readonly Float32Array[]): string {
  let h = 0x811c9dc5;
  for (const a of arrays) {
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

// ---------------------------------------------------------------------------------------------
// Inputs, written once by the parent and read by every child

/** The training rows in batch order: batch b is rows [b * 32, (b + 1) * 32). */
export interface TrainData {
  /** (rows, 784) float32 in [0, 1], row-major. */
  readonly x: Float32Array;
  /** (rows,) int32 labels. */
  readonly y: Int32Array;
  readonly rows: number;
  readonly source: string;
}

/** Everything the peers share, as the files in the inputs folder hold it. */
export interface Inputs {
  readonly data: TrainData | null;
  readonly weights: DenseWeights;
  readonly matmul: { readonly a: Float32Array; readonly b: Float32Array };
}

interface Manifest {
  readonly rows: number;
  readonly source: string;
}

function bytesOf(a: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Writes the shared inputs as raw little-endian arrays plus a small manifest. */
export function writeInputs(dir: string, inputs: Inputs): void {
  const w = inputs.weights;
  const manifest: Manifest = { rows: inputs.data?.rows ?? 0, source: inputs.data?.source ?? '-' };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  if (inputs.data) {
    writeFileSync(join(dir, 'x.f32'), bytesOf(inputs.data.x));
    writeFileSync(join(dir, 'y.i32'), bytesOf(inputs.data.y));
  }
  for (const [name, a] of Object.entries({ w1: w.w1, b1: w.b1, w2: w.w2, b2: w.b2, a: inputs.matmul.a, b: inputs.matmul.b })) {
    writeFileSync(join(dir, `${name}.f32`), bytesOf(a));
  }
}

function readArray<T extends Float32Array | Int32Array>(path: string, make: (b: ArrayBuffer, offset: number, length: number) => T): T {
  const buf = readFileSync(path);
  // Large reads get their own ArrayBuffer; copy only if the bytes are not 4-aligned.
  if (buf.byteOffset % 4 === 0) return make(buf.buffer as ArrayBuffer, buf.byteOffset, buf.byteLength / 4);
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return make(copy.buffer, 0, buf.byteLength / 4);
}

export function readInputs(dir: string, withData: boolean): Inputs {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  const f32 = (name: string): Float32Array => readArray(join(dir, `${name}.f32`), (b, o, n) => new Float32Array(b, o, n));
  const data: TrainData | null =
    withData && manifest.rows > 0
      ? { x: f32('x'), y: readArray(join(dir, 'y.i32'), (b, o, n) => new Int32Array(b, o, n)), rows: manifest.rows, source: manifest.source }
      : null;
  return { data, weights: { w1: f32('w1'), b1: f32('b1'), w2: f32('w2'), b2: f32('b2') }, matmul: { a: f32('a'), b: f32('b') } };
}

// ---------------------------------------------------------------------------------------------
// Timing

/**
 * Times a training run step by step, identically for every peer: call `start()` just before the
 * first step, `step(loss)` after each step once its loss has been read back (which forces any
 * lazy backend to finish the step). `step` returns false when the run should stop.
 */
export class StepClock {
  private t0 = 0;
  private tWarm = 0;
  private tLast = 0;
  private tFirst = 0;
  private readonly losses: number[] = [];

  constructor(private readonly job: Pick<Job, 'warmupSteps' | 'maxSteps' | 'budgetS'>) {}

  /** Total steps a run may take (the data must hold this many batches). */
  get plannedSteps(): number {
    return this.job.warmupSteps + this.job.maxSteps;
  }

  start(): void {
    this.t0 = performance.now();
    this.tWarm = this.t0;
  }

  step(loss: number): boolean {
    const now = performance.now();
    this.losses.push(loss);
    const n = this.losses.length;
    if (n === 1) this.tFirst = now;
    if (n === this.job.warmupSteps) this.tWarm = now;
    this.tLast = now;
    const measured = n - this.job.warmupSteps;
    if (measured >= this.job.maxSteps) return false;
    if (measured > 0 && this.job.budgetS !== null && (now - this.tWarm) / 1000 >= this.job.budgetS) return false;
    return true;
  }

  result(): TrainResult {
    const measuredSteps = Math.max(0, this.losses.length - this.job.warmupSteps);
    return {
      kind: 'train',
      warmupSteps: Math.min(this.job.warmupSteps, this.losses.length),
      measuredSteps,
      measuredS: measuredSteps > 0 ? (this.tLast - this.tWarm) / 1000 : 0,
      firstStepS: (this.tFirst - this.t0) / 1000,
      losses: this.losses,
    };
  }
}

/**
 * Best time per call (ms) over `reps` repetitions, after 3 untimed warm-up calls; each repetition
 * makes enough calls to last about `repMs`, judged from the last warm-up call.
 */
export function bestOf(run: () => void, reps: number, repMs: number): { bestMs: number; callsPerRep: number } {
  let warmMs = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    run();
    warmMs = performance.now() - t;
  }
  const callsPerRep = Math.max(1, Math.min(1000, Math.round(repMs / Math.max(warmMs, 1e-3))));
  let bestMs = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    for (let i = 0; i < callsPerRep; i++) run();
    bestMs = Math.min(bestMs, (performance.now() - t) / callsPerRep);
  }
  return { bestMs, callsPerRep };
}

export function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}
