/**
 * The training loop: fit / evaluate / predict over concrete arrays, with a jit-compiled step,
 * Keras-style progress output and callbacks.
 */
import {
  add,
  concatenate,
  gatherRows,
  jit,
  makeJaxpr,
  NDArray,
  random,
  scalar,
  ShapeError,
  Tensor,
  toHost,
  valueAndGrad,
  type Tree,
} from '../core/index.js';
import type { Layer } from './layer.js';
import { findBadLabel, type LossFn, type MetricFn } from './losses.js';
import { applyUpdates, type GradientTransformation } from './optimizers.js';

/** Everything a model's training carries between steps. */
export interface Variables {
  readonly params: Tree;
  readonly state: Tree;
  readonly optState?: Tree;
}

export type Logs = Record<string, number>;

/** What callbacks see and may change between batches (e.g. replace `state` to set dt). */
export interface TrainingControl {
  params: Tree;
  state: Tree;
  optState: Tree;
  epoch: number;
  batch: number;
  readonly stepsPerEpoch: number;
  readonly model: Layer;
  stopTraining: boolean;
  stopReason?: string;
}

export interface Callback {
  onTrainBegin?(ctl: TrainingControl): void;
  onEpochBegin?(epoch: number, ctl: TrainingControl): void;
  onBatchBegin?(batch: number, ctl: TrainingControl): void;
  onBatchEnd?(batch: number, logs: Logs, ctl: TrainingControl): void;
  onEpochEnd?(epoch: number, logs: Logs, ctl: TrainingControl): void;
  onTrainEnd?(ctl: TrainingControl): void;
}

export interface FitOptions {
  optimizer: GradientTransformation;
  loss: LossFn;
  metrics?: readonly MetricFn[];
  epochs?: number;
  batchSize?: number;
  shuffle?: boolean;
  /** Drives shuffling and the layers' per-step keys. */
  key?: Tensor;
  validationData?: [NDArray, NDArray];
  callbacks?: readonly Callback[];
  /** 0 silent, 1 a progress bar per epoch, 2 one line per epoch. */
  verbose?: 0 | 1 | 2;
  /** Where progress goes (default process.stdout). */
  write?: (s: string) => void;
}

export interface History {
  readonly epochs: number[];
  readonly history: Record<string, number[]>;
  stopReason?: string;
}

export interface FitResult extends Variables {
  readonly optState: Tree;
  readonly history: History;
}

function checkData(fn: string, x: NDArray, y: NDArray, what = 'x and y'): void {
  if (!(x instanceof NDArray) || !(y instanceof NDArray)) throw new TypeError(`${fn}: ${what} must be concrete arrays`);
  if (x.ndim === 0 || y.ndim === 0)
    throw new ShapeError(`${fn}: ${what} need a leading example axis, got shapes [${x.shape.join(', ')}] and [${y.shape.join(', ')}]`);
  if (x.shape[0] !== y.shape[0])
    throw new ShapeError(
      `${fn}: ${what === 'x and y' ? 'x' : 'validationData x'} has ${x.shape[0]} examples but ${what === 'x and y' ? 'y' : 'validationData y'} has ${y.shape[0]} (shapes [${x.shape.join(', ')}] and [${y.shape.join(', ')}])`,
    );
  if (x.shape[0] === 0)
    throw new RangeError(`${fn}: ${what === 'x and y' ? 'x' : 'validationData'} has no examples (shape [${x.shape.join(', ')}])`);
}

// ----------------------------------------------------------------------------- option checks

/** A printable form of an option's value for error messages ("2" stays quoted, so a string is visible). */
function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v instanceof Tensor) return `a ${v.dtype}[${v.shape.join(', ')}] tensor`;
  if (v !== null && typeof v === 'object') return 'an object';
  return String(v);
}

function badOption(fn: string, name: string, value: unknown, allowed: string): never {
  const message = `${fn}: option ${name} must be ${allowed}, got ${shown(value)}`;
  throw typeof value === 'number' ? new RangeError(message) : new TypeError(message);
}

function checkPositiveInteger(fn: string, name: string, value: unknown): void {
  if (value === undefined) return;
  if (!(typeof value === 'number' && Number.isInteger(value) && value >= 1)) badOption(fn, name, value, 'a positive integer (1, 2, ...)');
}

function checkFunction(fn: string, name: string, value: unknown, required: boolean): void {
  if (value === undefined && !required) return;
  if (typeof value !== 'function') badOption(fn, name, value, required ? 'a function (it is required)' : 'a function');
}

function checkKeyOption(fn: string, value: unknown): void {
  if (value === undefined) return;
  if (!(value instanceof Tensor) || value.dtype !== 'uint32' || value.shape.length !== 1 || value.shape[0] !== 2)
    badOption(fn, 'key', value, 'a PRNG key (a uint32[2] tensor from random.key(seed))');
}

function checkMetrics(fn: string, value: unknown): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) badOption(fn, 'metrics', value, 'an array of metric functions (e.g. [accuracy])');
  (value as unknown[]).forEach((m, i) => {
    if (typeof m !== 'function' || typeof (m as MetricFn).metricName !== 'string')
      badOption(fn, `metrics[${i}]`, m, 'a metric function with a metricName (e.g. accuracy)');
  });
}

function checkVerbose(fn: string, value: unknown): void {
  if (value !== undefined && value !== 0 && value !== 1 && value !== 2)
    badOption(fn, 'verbose', value, '0 (silent), 1 (progress bar) or 2 (one line per epoch)');
}

function checkKnownOptions(fn: string, opts: object, known: readonly string[]): void {
  if (opts === null || typeof opts !== 'object') throw new TypeError(`${fn}: options must be an object, got ${shown(opts)}`);
  for (const k of Object.keys(opts))
    if (!known.includes(k)) throw new TypeError(`${fn}: unknown option '${k}'; the options are ${known.join(', ')}`);
}

const FIT_OPTIONS = [
  'optimizer',
  'loss',
  'metrics',
  'epochs',
  'batchSize',
  'shuffle',
  'key',
  'validationData',
  'callbacks',
  'verbose',
  'write',
] as const;
const EVALUATE_OPTIONS = ['loss', 'key', 'metrics', 'batchSize', 'verbose', 'write'] as const;
const PREDICT_OPTIONS = ['batchSize', 'key'] as const;

function checkFitOptions(opts: FitOptions, fn: string): void {
  checkKnownOptions(fn, opts, fn === 'fitAsync' ? [...FIT_OPTIONS, 'yieldEveryMs', 'signal'] : FIT_OPTIONS);
  const optimizer = opts.optimizer as unknown;
  if (
    optimizer === null ||
    typeof optimizer !== 'object' ||
    typeof (optimizer as GradientTransformation).init !== 'function' ||
    typeof (optimizer as GradientTransformation).update !== 'function'
  ) {
    badOption(fn, 'optimizer', optimizer, 'an optimizer ({ init, update }, e.g. adam()); it is required');
  }
  checkFunction(fn, 'loss', opts.loss, true);
  checkMetrics(fn, opts.metrics);
  checkPositiveInteger(fn, 'epochs', opts.epochs);
  checkPositiveInteger(fn, 'batchSize', opts.batchSize);
  if (opts.shuffle !== undefined && typeof opts.shuffle !== 'boolean') badOption(fn, 'shuffle', opts.shuffle, 'true or false');
  checkKeyOption(fn, opts.key);
  if (opts.validationData !== undefined) {
    const v = opts.validationData as unknown;
    if (!Array.isArray(v) || v.length !== 2) badOption(fn, 'validationData', v, 'a pair [x, y] of arrays');
    checkData(fn, v[0] as NDArray, v[1] as NDArray, 'validationData x and y');
  }
  if (opts.callbacks !== undefined) {
    if (!Array.isArray(opts.callbacks)) badOption(fn, 'callbacks', opts.callbacks, 'an array of callbacks');
    opts.callbacks.forEach((c, i) => {
      if (c === null || typeof c !== 'object') badOption(fn, `callbacks[${i}]`, c, 'a callback object ({ onEpochEnd?, onBatchEnd?, ... })');
    });
  }
  checkVerbose(fn, opts.verbose);
  checkFunction(fn, 'write', opts.write, false);
}

function checkEvaluateOptions(opts: EvaluateOptions): void {
  const fn = 'evaluate';
  checkKnownOptions(fn, opts, EVALUATE_OPTIONS);
  checkFunction(fn, 'loss', opts.loss, true);
  checkMetrics(fn, opts.metrics);
  checkPositiveInteger(fn, 'batchSize', opts.batchSize);
  checkKeyOption(fn, opts.key);
  checkVerbose(fn, opts.verbose);
  checkFunction(fn, 'write', opts.write, false);
}

/**
 * For a loss over class indices, the first label of `y` that is not one of the model's classes
 * raises, naming it and its index. The class count is the last axis of the model's output, found
 * by tracing it once on the first batch (nothing is computed; a model that rejects the input's
 * shape says so here, with the batch's shape, as the first step would).
 */
function checkLabels(
  fn: string,
  model: Layer,
  variables: Variables,
  loss: LossFn,
  x: NDArray,
  y: NDArray,
  batchSize: number,
  which = 'y',
): void {
  if (loss.integerLabels !== true) return;
  const probe = makeJaxpr((p: Tree, s: Tree, xb: Tensor) => model.apply(p, xb, { training: false, key: random.key(0) }, s).y);
  const firstBatch = Int32Array.from({ length: Math.min(batchSize, x.shape[0]) }, (_, i) => i);
  const out = probe(variables.params, variables.state, gatherRows(x, firstBatch)).jaxpr.outvars[0];
  const classes = out.aval.shape[out.aval.shape.length - 1];
  const bad = findBadLabel(y.toTyped() as ArrayLike<number>, classes);
  if (bad !== null) {
    const problem = Number.isNaN(bad.value) ? 'is NaN' : Number.isInteger(bad.value) ? `is outside [0, ${classes})` : 'is not an integer';
    throw new RangeError(
      `${fn}: label ${bad.value} at index ${bad.index} of ${which} ${problem}; the model has ${classes} classes, so labels must be integers in [0, ${classes})`,
    );
  }
}

function defaultWrite(s: string): void {
  if (typeof process !== 'undefined' && process.stdout) process.stdout.write(s);
}

/** Keras's progress line: `1875/1875 [======] - 9s 5ms/step - loss: 0.4979 - accuracy: 0.8250`. */
export function progressLine(step: number, total: number, elapsedS: number, logs: Logs, done: boolean): string {
  const width = 30;
  const filled = Math.floor((width * step) / total);
  const bar = done
    ? '='.repeat(width)
    : '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + '.'.repeat(width - Math.max(filled, 0));
  const pad = String(total).length;
  const perStep = (elapsedS / Math.max(step, 1)) * 1000;
  const timing = done
    ? `${Math.round(elapsedS)}s ${Math.round(perStep)}ms/step`
    : `ETA: ${Math.round((elapsedS / Math.max(step, 1)) * (total - step))}s`;
  const metrics = Object.entries(logs)
    .map(([k, v]) => ` - ${k}: ${v.toFixed(4)}`)
    .join('');
  return `${String(step).padStart(pad)}/${total} [${bar}] - ${timing}${metrics}`;
}

function makeTrainStep(model: Layer, opts: FitOptions) {
  const metrics = opts.metrics ?? [];
  return jit((params: Tree, state: Tree, optState: Tree, x: Tensor, y: Tensor, key: Tensor) => {
    const lossOf = (p: Tree): [Tensor, { state: Tree; yPred: Tensor }] => {
      const r = model.apply(p, x, { training: true, key }, state);
      let loss = opts.loss(y, r.y);
      for (const l of r.losses) loss = add(loss, l);
      for (const l of model.paramLosses ? model.paramLosses(p) : []) loss = add(loss, l);
      return [loss, { state: r.state, yPred: r.y }];
    };
    const [valueAux, grads] = valueAndGrad(lossOf as (p: Tree) => unknown, { hasAux: true })(params);
    const [loss, aux] = valueAux as [Tensor, { state: Tree; yPred: Tensor }];
    const [updates, nextOpt] = opts.optimizer.update(grads, optState, params);
    let nextParams = applyUpdates(params, updates);
    if (model.constrain) nextParams = model.constrain(nextParams);
    return { params: nextParams, state: aux.state, optState: nextOpt, loss, metrics: metrics.map((m) => m(y, aux.yPred)) };
  });
}

/**
 * Trains `model` from `variables` on (x, y). Returns the trained variables and the history.
 *
 * @example
 * const { params, state } = model.init(random.key(0), [28, 28]);
 * const result = fit(model, { params, state }, x, y, {
 *   optimizer: adam(), loss: sparseCategoricalCrossentropy({ fromLogits: true }),
 *   metrics: [accuracy], epochs: 10, batchSize: 32, key: random.key(1),
 * });
 */
export function fit(model: Layer, variables: Variables, x: NDArray, y: NDArray, opts: FitOptions): FitResult {
  const loop = trainLoop('fit', model, variables, x, y, opts);
  for (;;) {
    const r = loop.next();
    if (r.done) return r.value;
  }
}

export interface FitAsyncOptions extends FitOptions {
  /**
   * Yield to the event loop once this many milliseconds of training have passed since the last
   * yield (default 0: after every step). A page stays responsive and repaints between yields.
   */
  yieldEveryMs?: number;
  /** Stops training after the current step (the result holds the variables reached so far). */
  signal?: AbortSignal;
}

/**
 * `fit` that yields to the event loop between steps (a browser page stays responsive while it
 * trains on its main thread). The same steps in the same order as `fit`: the results are
 * bit-identical; callbacks run as in `fit`.
 *
 * @example
 * const result = await fitAsync(model, vars, x, y, { optimizer: adam(), loss, epochs: 1, callbacks: [{
 *   onBatchEnd: (b, logs, ctl) => (progressBar.value = (b + 1) / ctl.stepsPerEpoch) }] });
 */
export async function fitAsync(model: Layer, variables: Variables, x: NDArray, y: NDArray, opts: FitAsyncOptions): Promise<FitResult> {
  const every = opts.yieldEveryMs ?? 0;
  if (!(every >= 0)) throw new RangeError(`fitAsync: yieldEveryMs must be a number >= 0, got ${opts.yieldEveryMs}`);
  const loop = trainLoop('fitAsync', model, variables, x, y, opts);
  let last = Date.now();
  for (;;) {
    const r = loop.next(opts.signal?.aborted === true);
    if (r.done) return r.value;
    if (Date.now() - last >= every) {
      await yieldToEventLoop();
      last = Date.now();
    }
  }
}

/**
 * Resolves on a fresh macrotask: a MessageChannel message where there is one (setTimeout nested
 * in a page is clamped to 4 ms), else setTimeout.
 */
function yieldToEventLoop(): Promise<void> {
  if (typeof MessageChannel === 'undefined') return new Promise((resolve) => setTimeout(resolve, 0));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

/**
 * The training loop of fit and fitAsync, one step per `next()`: it yields after each batch's
 * callbacks; `next(true)` stops training there, as a callback setting stopTraining would.
 */
function* trainLoop(
  fn: string,
  model: Layer,
  variables: Variables,
  x: NDArray,
  y: NDArray,
  opts: FitOptions,
): Generator<void, FitResult, boolean | undefined> {
  checkData(fn, x, y);
  checkFitOptions(opts, fn);
  checkLabels(fn, model, variables, opts.loss, x, y, opts.batchSize ?? 32);
  if (opts.validationData)
    checkLabels(fn, model, variables, opts.loss, opts.validationData[0], opts.validationData[1], opts.batchSize ?? 32, 'validationData y');
  const epochs = opts.epochs ?? 1;
  const batchSize = opts.batchSize ?? 32;
  const verbose = opts.verbose ?? 1;
  const write = opts.write ?? defaultWrite;
  const n = x.shape[0];
  const steps = Math.ceil(n / batchSize);
  const metrics = opts.metrics ?? [];
  const step = makeTrainStep(model, opts);
  // The step with each combination of donated variables, made once (not a closure per step).
  const donatingSteps = new Map<number, ReturnType<typeof step.donating>>();
  const donatingStep = (p: boolean, s: boolean, o: boolean): ReturnType<typeof step.donating> => {
    const code = (p ? 1 : 0) | (s ? 2 : 0) | (o ? 4 : 0);
    let f = donatingSteps.get(code);
    if (f === undefined) {
      // The batches (3, 4) are always donated: they are gathered for this step only.
      const donate = [p ? 0 : -1, s ? 1 : -1, o ? 2 : -1, 3, 4].filter((i) => i >= 0);
      f = step.donating(donate, { keepInBackend: true });
      donatingSteps.set(code, f);
    }
    return f;
  };
  let key = opts.key ?? random.key(0);
  // The variables live here; callbacks reach them through ctl's accessors. A step's outputs that
  // no callback has read are donated to the next step (its compiled program reuses their memory
  // for the new values); anything a callback read or set, and the caller's own variables, never is.
  let params = variables.params;
  let state = variables.state;
  let optState = variables.optState ?? opts.optimizer.init(variables.params);
  let ownParams = false;
  let ownState = false;
  let ownOptState = false;
  const ctl: TrainingControl = {
    get params() {
      // A callback keeps what it reads: an ordinary copy, never the step's backend memory.
      if (ownParams) params = toHost(params, { recycle: true });
      ownParams = false;
      return params;
    },
    set params(p) {
      params = p;
      ownParams = false;
    },
    get state() {
      // A callback keeps what it reads: an ordinary copy, never the step's backend memory.
      if (ownState) state = toHost(state, { recycle: true });
      ownState = false;
      return state;
    },
    set state(s) {
      state = s;
      ownState = false;
    },
    get optState() {
      // A callback keeps what it reads: an ordinary copy, never the step's backend memory.
      if (ownOptState) optState = toHost(optState, { recycle: true });
      ownOptState = false;
      return optState;
    },
    set optState(o) {
      optState = o;
      ownOptState = false;
    },
    epoch: 0,
    batch: 0,
    stepsPerEpoch: steps,
    model,
    stopTraining: false,
  };
  const history: History = { epochs: [], history: {} };
  const callbacks = opts.callbacks ?? [];
  const isTTY = typeof process !== 'undefined' && Boolean(process.stdout?.isTTY) && opts.write === undefined;
  callbacks.forEach((c) => c.onTrainBegin?.(ctl));
  for (let epoch = 0; epoch < epochs && !ctl.stopTraining; epoch++) {
    ctl.epoch = epoch;
    callbacks.forEach((c) => c.onEpochBegin?.(epoch, ctl));
    if (verbose) write(`Epoch ${epoch + 1}/${epochs}\n`);
    const [shuffleKey, epochKey, nextKey] = random.split(key, 3);
    key = nextKey;
    const order =
      opts.shuffle === false ? Int32Array.from({ length: n }, (_, i) => i) : (random.permutation(shuffleKey, n).toTyped() as Int32Array);
    const start = Date.now();
    let seen = 0;
    let lossSum = 0;
    const metricSums = metrics.map(() => 0);
    let lastDraw = 0;
    let logs: Logs = {};
    for (let b = 0; b < steps && !ctl.stopTraining; b++) {
      ctl.batch = b;
      callbacks.forEach((c) => c.onBatchBegin?.(b, ctl));
      const idx = order.subarray(b * batchSize, Math.min(n, (b + 1) * batchSize));
      // Each batch goes into memory the backend provides for donated inputs (the CPU backend:
      // pooled arena memory the step reads in place, then reuses for the next batch).
      const xb = gatherRows(x, idx, { donate: true });
      const yb = gatherRows(y, idx, { donate: true });
      // Results stay in backend memory between steps (no copies in or out); see toHost.
      const out = donatingStep(ownParams, ownState, ownOptState)(params, state, optState, xb, yb, random.foldIn(epochKey, b));
      const lossValue = out.loss.item();
      params = out.params;
      state = out.state;
      optState = out.optState;
      ownParams = ownState = ownOptState = true;
      const m = idx.length;
      seen += m;
      lossSum += lossValue * m;
      out.metrics.forEach((t, i) => (metricSums[i] += t.item() * m));
      logs = { loss: lossSum / seen };
      metrics.forEach((mf, i) => (logs[mf.metricName] = metricSums[i] / seen));
      callbacks.forEach((c) => c.onBatchEnd?.(b, { ...logs, batchLoss: lossValue }, ctl));
      if (verbose === 1 && isTTY && Date.now() - lastDraw > 100) {
        lastDraw = Date.now();
        write(`\r${progressLine(b + 1, steps, (Date.now() - start) / 1000, logs, false)}`);
      }
      if ((yield) === true) ctl.stopTraining = true;
    }
    const elapsed = (Date.now() - start) / 1000;
    if (opts.validationData) {
      const [vx, vy] = opts.validationData;
      const v = evaluateChecked(model, { params, state }, vx, vy, { loss: opts.loss, metrics, batchSize, verbose: 0 });
      for (const [k, val] of Object.entries(v)) logs[`val_${k}`] = val;
    }
    if (verbose) write(`${isTTY && verbose === 1 ? '\r' : ''}${progressLine(ctl.batch + 1, steps, elapsed, logs, true)}\n`);
    history.epochs.push(epoch);
    for (const [k, v] of Object.entries(logs)) (history.history[k] ??= []).push(v);
    callbacks.forEach((c) => c.onEpochEnd?.(epoch, logs, ctl));
  }
  callbacks.forEach((c) => c.onTrainEnd?.(ctl));
  if (ctl.stopReason) {
    history.stopReason = ctl.stopReason;
    if (verbose) write(`${ctl.stopReason}\n`);
  }
  return {
    params: toHost(params, { recycle: ownParams }),
    state: toHost(state, { recycle: ownState }),
    optState: toHost(optState, { recycle: ownOptState }),
    history,
  };
}

export interface EvaluateOptions {
  loss: LossFn;
  /** Per-batch keys for layers that draw random numbers (unseeded spiking layers). */
  key?: Tensor;
  metrics?: readonly MetricFn[];
  batchSize?: number;
  verbose?: 0 | 1 | 2;
  write?: (s: string) => void;
}

const evalSteps = new WeakMap<Layer, Map<string, (params: Tree, state: Tree, x: Tensor, key: Tensor) => Tensor>>();
function predictStep(model: Layer): (params: Tree, state: Tree, x: Tensor, key: Tensor) => Tensor {
  let m = evalSteps.get(model);
  if (!m) {
    m = new Map();
    evalSteps.set(model, m);
  }
  let f = m.get('predict');
  if (!f) {
    f = jit((params: Tree, state: Tree, x: Tensor, key: Tensor) => model.apply(params, x, { training: false, key }, state).y);
    m.set('predict', f);
  }
  return f;
}

/** Loss and metrics over (x, y) in inference mode, averaged over examples. */
export function evaluate(model: Layer, variables: Variables, x: NDArray, y: NDArray, opts: EvaluateOptions): Logs {
  checkData('evaluate', x, y);
  checkEvaluateOptions(opts);
  checkLabels('evaluate', model, variables, opts.loss, x, y, opts.batchSize ?? 32);
  return evaluateChecked(model, variables, x, y, opts);
}

/** evaluate after its checks (fit's validation pass checked its data before the first epoch). */
function evaluateChecked(model: Layer, variables: Variables, x: NDArray, y: NDArray, opts: EvaluateOptions): Logs {
  const batchSize = opts.batchSize ?? 32;
  const key = opts.key ?? random.key(0);
  const n = x.shape[0];
  const metrics = opts.metrics ?? [];
  const f = predictStep(model);
  const start = Date.now();
  let lossSum = 0;
  const sums = metrics.map(() => 0);
  const steps = Math.ceil(n / batchSize);
  for (let b = 0; b < steps; b++) {
    const idx = Int32Array.from({ length: Math.min(n, (b + 1) * batchSize) - b * batchSize }, (_, i) => b * batchSize + i);
    const xb = gatherRows(x, idx);
    const yb = gatherRows(y, idx);
    const pred = f(variables.params, variables.state, xb, random.foldIn(key, b));
    lossSum += opts.loss(yb, pred).item() * idx.length;
    metrics.forEach((m, i) => (sums[i] += m(yb, pred).item() * idx.length));
  }
  const logs: Logs = { loss: lossSum / n };
  metrics.forEach((m, i) => (logs[m.metricName] = sums[i] / n));
  if (opts.verbose) {
    const elapsed = (Date.now() - start) / 1000;
    const parts = Object.entries(logs).map(([k, v]) => ` - ${k}: ${v.toFixed(4)}`);
    (opts.write ?? defaultWrite)(
      `${steps}/${steps} - ${Math.round(elapsed)}s${parts.join('')} - ${Math.round((elapsed / steps) * 1000)}ms/step\n`,
    );
  }
  return logs;
}

/** Model outputs for x in inference mode, batched and concatenated. */
export function predict(model: Layer, variables: Variables, x: NDArray, opts: { batchSize?: number; key?: Tensor } = {}): NDArray {
  checkKnownOptions('predict', opts, PREDICT_OPTIONS);
  checkPositiveInteger('predict', 'batchSize', opts.batchSize);
  checkKeyOption('predict', opts.key);
  if (!(x instanceof NDArray)) throw new TypeError(`predict: x must be a concrete array, got ${shown(x)}`);
  if (x.ndim === 0) throw new ShapeError('predict: x needs a leading example axis, got a scalar');
  const batchSize = opts.batchSize ?? 32;
  const key = opts.key ?? random.key(0);
  const n = x.shape[0];
  if (n === 0) throw new RangeError(`predict: x has no examples (shape [${x.shape.join(', ')}])`);
  const f = predictStep(model);
  const parts: Tensor[] = [];
  for (let b = 0; b * batchSize < n; b++) {
    const idx = Int32Array.from({ length: Math.min(n, (b + 1) * batchSize) - b * batchSize }, (_, i) => b * batchSize + i);
    parts.push(f(variables.params, variables.state, gatherRows(x, idx), random.foldIn(key, b)));
  }
  return concatenate(parts, 0) as NDArray;
}

/** Stops when a monitored log stops improving for `patience` epochs. */
export function earlyStopping(options: { monitor?: string; patience?: number; minDelta?: number; mode?: 'min' | 'max' } = {}): Callback {
  const monitor = options.monitor ?? 'loss';
  const patience = options.patience ?? 0;
  const minDelta = options.minDelta ?? 0;
  const sign = (options.mode ?? (monitor.includes('acc') ? 'max' : 'min')) === 'min' ? 1 : -1;
  let best = Infinity;
  let wait = 0;
  return {
    onTrainBegin: () => {
      best = Infinity;
      wait = 0;
    },
    onEpochEnd: (epoch, logs, ctl) => {
      const v = logs[monitor];
      if (v === undefined) throw new RangeError(`earlyStopping: no log named '${monitor}'; logs are ${Object.keys(logs).join(', ')}`);
      if (sign * v < best - minDelta) {
        best = sign * v;
        wait = 0;
      } else if (++wait >= patience && epoch > 0) {
        ctl.stopTraining = true;
        ctl.stopReason = `Epoch ${epoch + 1}: early stopping (${monitor} did not improve for ${wait} epochs)`;
      }
    },
  };
}

/** Stops training at the first batch whose loss is NaN or infinite, naming epoch and batch. */
export function terminateOnNaN(): Callback {
  return {
    onBatchEnd: (batch, logs, ctl) => {
      const l = logs.batchLoss;
      if (!Number.isFinite(l)) {
        ctl.stopTraining = true;
        ctl.stopReason = `terminateOnNaN: loss became ${l} at epoch ${ctl.epoch + 1}, batch ${batch + 1}; training stopped`;
      }
    },
  };
}

/** A scalar sum of a list of penalties (0 when empty). */
export function totalLoss(losses: readonly Tensor[]): Tensor {
  return losses.reduce<Tensor>((a, l) => add(a, l), scalar(0));
}
