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
import { crc32 } from 'node:zlib';

export const PEERS = ['spiketrace', 'pytorch', 'jax-js', 'tfjs-wasm', 'tfjs-cpu'] as const;
export type PeerName = (typeof PEERS)[number];

/** The benchmark's cases, in report order. */
export const CASES = ['matmul', 'm1', 'm2', 'spiking', 'poisson', 'lif', 'lifStopGradient', 'lifNet', 'conv', 'convEveryStep'] as const;
export type CaseName = (typeof CASES)[number];
export type ModelCase = Exclude<CaseName, 'matmul'>;

/**
 * The peers that run each case. jax-js and tfjs have no spiking neuron: the spiking cases' tables
 * show their M2 rows. PyTorch writes the spiking neuron as a custom autograd function and the LIF
 * network (`lifNet`) in plain PyTorch. `lif` and `lifStopGradient` (M2 with leaky neurons, the
 * surrogate written two ways) are spiketrace's alone.
 */
export const CASE_PEERS: Readonly<Record<CaseName, readonly PeerName[]>> = {
  matmul: PEERS,
  m1: PEERS,
  m2: PEERS,
  spiking: ['spiketrace', 'pytorch'],
  poisson: ['spiketrace', 'pytorch'],
  lif: ['spiketrace'],
  lifStopGradient: ['spiketrace'],
  lifNet: ['spiketrace', 'pytorch'],
  // jax-js has convolutions, but its peer module implements only the dense models.
  conv: ['spiketrace', 'pytorch', 'tfjs-wasm', 'tfjs-cpu'],
  // spiketrace's conv network with every step computed; the peers' rows are their conv runs.
  convEveryStep: ['spiketrace'],
};

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
/**
 * The conv case: the spiking CNN example's network with relu in place of the spiking neurons (the
 * peers have none), on the image repeated over TIME_STEPS steps: TimeDistributed Conv2D(32, 3x3)
 * -> relu -> AveragePooling2D(2) -> Conv2D(64, 3x3) -> relu -> AveragePooling2D(2) -> flatten ->
 * mean over time -> Dense(10).
 */
export const CONV = { filters1: 32, filters2: 64, window: 3, flat: 5 * 5 * 64 } as const;

/** The conv case's weights (glorot-uniform kernels with Keras's fans, zero biases), the same for every peer. */
export interface ConvWeights {
  readonly k1: Float32Array; // (3, 3, 1, 32)
  readonly b1: Float32Array;
  readonly k2: Float32Array; // (3, 3, 32, 64)
  readonly b2: Float32Array;
  readonly w: Float32Array; // (1600, 10)
  readonly b: Float32Array;
}
export function convWeights(seed: number): ConvWeights {
  const next = rng(seed + 0x5eed);
  const taps = CONV.window * CONV.window;
  const glorot = (size: number, fanIn: number, fanOut: number): Float32Array => {
    const limit = Math.sqrt(6 / (fanIn + fanOut));
    return Float32Array.from({ length: size }, () => (2 * next() - 1) * limit);
  };
  return {
    k1: glorot(taps * CONV.filters1, taps, taps * CONV.filters1),
    b1: new Float32Array(CONV.filters1),
    k2: glorot(taps * CONV.filters1 * CONV.filters2, taps * CONV.filters1, taps * CONV.filters2),
    b2: new Float32Array(CONV.filters2),
    w: glorot(CONV.flat * CLASSES, CONV.flat, CLASSES),
    b: new Float32Array(CLASSES),
  };
}

/** Spiking layer's dt (the seed's spiking-aware model). */
export const SPIKING_DT = 0.01;
/**
 * The LIF example's network: rate-coded images over 25 steps, Dense(784 -> 1000) -> Leaky ->
 * Dense(1000 -> 10) -> Leaky, cross-entropy on the output spike counts, Adam at 5e-4, batch 128.
 * Leaky: reset by subtraction, computed from the previous potential (detached); spikes H(U - thr)
 * with H(0) = 0 forward, the fast sigmoid 1 / (slope |U - thr| + 1)^2 backward.
 */
export const LIF = { batch: 128, timeSteps: 25, hidden: 1000, beta: 0.95, threshold: 1, slope: 25, lr: 5e-4 } as const;

/** Batch size of a case. */
export function batchOf(c: CaseName): number {
  return c === 'lifNet' ? LIF.batch : BATCH;
}

/** Whole batches in one epoch of 60k samples (the LIF case drops the last 96 rows). */
export function stepsPerEpoch(c: CaseName): number {
  return Math.floor(TRAIN_ROWS / batchOf(c));
}

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
  /**
   * spiketrace's job only: this machine's WebAssembly SIMD multiply-add peak (bench/lib/simd-peak.ts),
   * GFLOP/s on one thread and on all threads (two here) at once, measured after the product.
   */
  readonly simdPeak?: { readonly oneThread: number; readonly allThreads: number; readonly threads: number };
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
  /** Steps in one epoch of this case (the extrapolation's target). */
  readonly stepsPerEpoch: number;
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

/** The two dense layers of a model, row-major (in, out): 784 -> 128 -> 10 (1000 hidden units for LIF). */
export interface DenseWeights {
  readonly w1: Float32Array; // (784, hidden)
  readonly b1: Float32Array; // (hidden,)
  readonly w2: Float32Array; // (hidden, 10)
  readonly b2: Float32Array; // (10,)
}

/** CRC-32 over the bytes of some arrays, as 8 hex digits (Python's zlib.crc32 computes the same). */
export function hashArrays(arrays: readonly Float32Array[]): string {
  let h = 0;
  for (const a of arrays) h = crc32(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), h);
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
  /** The LIF network's layers: (784, 1000), (1000,), (1000, 10), (10,). */
  readonly lifWeights: DenseWeights;
  /**
   * The LIF case's first batch, rate-coded once by the parent: (25, 128, 784) time-major, 0 or 1.
   * Every peer trains its first step on these spikes (so first-step losses compare) and encodes
   * the later batches itself inside its step. Empty when the data has fewer than 128 rows.
   */
  readonly lifSpikes0: Uint8Array;
  readonly matmul: { readonly a: Float32Array; readonly b: Float32Array };
  /** The conv case's weights (convWeights(seed)); the JS peers compute them, the Python peer reads them. */
  readonly conv: ConvWeights;
}

/**
 * manifest.json: the data's size and source, and the constants the Python peer needs (so they are
 * defined once, here).
 */
interface Manifest {
  readonly rows: number;
  readonly source: string;
  readonly constants: {
    readonly image: number;
    readonly hidden: number;
    readonly classes: number;
    readonly timeSteps: number;
    readonly batch: number;
    readonly spikingDt: number;
    readonly adam: typeof ADAM;
    readonly lif: typeof LIF;
    readonly conv: typeof CONV;
  };
}

function bytesOf(a: Float32Array | Int32Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Writes the shared inputs as raw little-endian arrays plus a small manifest. */
export function writeInputs(dir: string, inputs: Inputs): void {
  const w = inputs.weights;
  const constants = {
    image: IMAGE,
    hidden: HIDDEN,
    classes: CLASSES,
    timeSteps: TIME_STEPS,
    batch: BATCH,
    spikingDt: SPIKING_DT,
    adam: ADAM,
    lif: LIF,
    conv: CONV,
  };
  const manifest: Manifest = { rows: inputs.data?.rows ?? 0, source: inputs.data?.source ?? '-', constants };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  if (inputs.data) {
    writeFileSync(join(dir, 'x.f32'), bytesOf(inputs.data.x));
    writeFileSync(join(dir, 'y.i32'), bytesOf(inputs.data.y));
  }
  writeFileSync(join(dir, 'lif_spikes0.u8'), bytesOf(inputs.lifSpikes0));
  const lw = inputs.lifWeights;
  const arrays = {
    w1: w.w1,
    b1: w.b1,
    w2: w.w2,
    b2: w.b2,
    lif_w1: lw.w1,
    lif_b1: lw.b1,
    lif_w2: lw.w2,
    lif_b2: lw.b2,
    a: inputs.matmul.a,
    b: inputs.matmul.b,
    ...Object.fromEntries(Object.entries(inputs.conv).map(([name, a]) => [`conv_${name}`, a])),
  };
  for (const [name, a] of Object.entries(arrays)) writeFileSync(join(dir, `${name}.f32`), bytesOf(a));
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
      ? {
          x: f32('x'),
          y: readArray(join(dir, 'y.i32'), (b, o, n) => new Int32Array(b, o, n)),
          rows: manifest.rows,
          source: manifest.source,
        }
      : null;
  return {
    data,
    weights: { w1: f32('w1'), b1: f32('b1'), w2: f32('w2'), b2: f32('b2') },
    lifWeights: { w1: f32('lif_w1'), b1: f32('lif_b1'), w2: f32('lif_w2'), b2: f32('lif_b2') },
    lifSpikes0: new Uint8Array(readFileSync(join(dir, 'lif_spikes0.u8'))),
    matmul: { a: f32('a'), b: f32('b') },
    conv: { k1: f32('conv_k1'), b1: f32('conv_b1'), k2: f32('conv_k2'), b2: f32('conv_b2'), w: f32('conv_w'), b: f32('conv_b') },
  };
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

  constructor(private readonly job: Pick<Job, 'case' | 'warmupSteps' | 'maxSteps' | 'budgetS'>) {}

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
      stepsPerEpoch: stepsPerEpoch(this.job.case),
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
