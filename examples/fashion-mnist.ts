/**
 * The KerasSpiking "Classifying Fashion MNIST with spiking activations" tutorial, every cell, in
 * spiketrace. Run: npm run tutorial -- [--epochs N] [--quick] [--out DIR] [--jobs N]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { random, type NDArray } from '../core/index.js';
import { FASHION_MNIST_CLASSES, loadFashionMnist, tileTime } from '../data/index.js';
import * as nn from '../nn/index.js';
import * as spiking from '../spiking/index.js';
import { parseCli } from './lib/cli.js';
import { sampleGridFigure, spikeOutputFigure, writeFigure } from './lib/figures.js';

const { flag, has } = parseCli();
const quick = has('--quick');
const epochs = Number(flag('--epochs') ?? (quick ? 1 : 10));
const outDir = flag('--out') ?? 'out/fashion-mnist';
// --seed shifts every model's PRNG keys (to measure run-to-run spread); --models picks which of
// the tutorial's five trainings to run (1 non-spiking, 2 no spiking-aware training, 3 spiking-
// aware, 4 regularized, 5 lowpass).
const seedOffset = Number(flag('--seed') ?? 0);
const selected = new Set((flag('--models') ?? '1,2,3,4,5').split(',').map(Number));
// The five trainings are independent (each starts from its own PRNG key), so --jobs N runs them in
// N processes at once, one model each. Each process is the same computation as the one-process run
// (--jobs 1), so the results are identical. Default: all of them at once where there is more than
// one core (the operating system shares the cores among them, which balances trainings of unequal
// cost better than a queue: the non-spiking model costs about half a spiking one; on 2 cores the
// full run took 96 s with 5 processes, 104 s with 3, 108 s with 2, 170-186 s with 1), and one
// for --quick, where starting a process costs more than a model's training.
const jobsAsked = Number(flag('--jobs') ?? (quick || availableParallelism() < 2 ? 1 : selected.size));
if (!Number.isInteger(jobsAsked) || jobsAsked < 1)
  throw new RangeError(`tutorial: --jobs must be a positive integer, got ${flag('--jobs')}`);
const jobs = Math.min(jobsAsked, selected.size);
// Set in the processes --jobs starts: run the one model named by --models, report to the parent.
const isPart = has('--part');
const nSteps = 10;
mkdirSync(outDir, { recursive: true });

const t0 = Date.now();
const { train, test, source } = await loadFashionMnist({ limit: quick ? { train: 512, test: 256 } : undefined });
console.log(`Fashion-MNIST from ${source}: ${train.labels.shape[0]} train / ${test.labels.shape[0]} test images`);
const classNames = [...FASHION_MNIST_CLASSES];

// [2] the 5x5 grid of training samples
if (!isPart)
  await writeFigure(join(outDir, 'samples'), await sampleGridFigure({ images: train.raw, labels: train.labels.toTyped(), classNames }));

const compileOptions = (key: number) => ({
  optimizer: nn.adam(),
  loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
  metrics: [nn.accuracy],
  epochs,
  batchSize: 32,
  key: random.key(key),
});

interface Row {
  model: string;
  accuracy: number;
  rate?: { min: number; mean: number; max: number };
}
const rows: Row[] = [];

/** Trains one model and evaluates it on the test set (the seed's train cell); its variables and test accuracy. */
function trainModel(
  label: string,
  model: nn.Layer,
  x: NDArray,
  xTest: NDArray,
  inputShape: nn.LayerShape,
  seed: number,
): { vars: nn.Variables; accuracy: number } {
  console.log(`\n=== ${label}\n${nn.summary(model, inputShape)}`);
  const init = model.init(random.key(seed + 1000 * seedOffset), inputShape);
  const trained = nn.fit(model, init, x, train.labels, compileOptions(seed + 100 + 1000 * seedOffset));
  const logs = nn.evaluate(model, trained, xTest, test.labels, {
    loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
    metrics: [nn.accuracy],
    verbose: 2,
  });
  console.log(`\nTest accuracy: ${logs.accuracy}`);
  return { vars: trained, accuracy: logs.accuracy };
}

/** The seed's check_output: accuracy and rates over time, and the figures for 4 test images. */
async function checkOutput(label: string, model: nn.Layer, vars: nn.Variables, xTest: NDArray, dt?: number): Promise<void> {
  const s = spiking.spikeStats(model, vars, xTest, { labels: test.labels, dt });
  console.log(`Test accuracy: ${(100 * s.accuracy!).toFixed(2)}%`);
  console.log(`Spike rate per neuron (Hz): min=${s.rateHz.min.toFixed(2)} mean=${s.rateHz.mean.toFixed(2)} max=${s.rateHz.max.toFixed(2)}`);
  rows.push({ model: label, accuracy: s.accuracy!, rate: s.rateHz });
  const units = s.spikeCounts.size / (s.spikeCounts.shape[0] * s.steps);
  const counts = s.spikeCounts.toTyped() as Float32Array;
  for (let ii = 0; ii < 4; ii++) {
    const probs = spiking.probabilitiesOverTime(s, ii).toTyped() as Float32Array;
    const fig = await spikeOutputFigure({
      image: test.raw.subarray(ii * 784, (ii + 1) * 784),
      title: classNames[test.labels.toTyped()[ii]],
      spikesPerNeuronPerStep: counts.subarray(ii * s.steps * units, (ii + 1) * s.steps * units),
      probabilitiesOverTime: probs,
      steps: s.steps,
      numClasses: 10,
      dt: s.dt,
      classNames,
    });
    await writeFigure(join(outDir, `${label.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}-${ii}`), fig);
  }
}

// [3] the non-spiking model
async function model1(): Promise<void> {
  const dense = nn.sequential([nn.flatten(), nn.dense(128, { activation: 'relu' }), nn.dense(10)]);
  const { accuracy } = trainModel('non-spiking', dense, train.images, test.images, [28, 28], 0);
  rows.push({ model: 'non-spiking', accuracy });
}

// [4] repeat the images for n_steps: a stride-0 view, no copy
const trainSequences = tileTime(train.images, nSteps);
const testSequences = tileTime(test.images, nSteps);

const spikingModel = (options: spiking.SpikingActivationOptions, head: nn.Layer[] = [nn.globalAveragePooling1d()]): nn.Layer =>
  nn.sequential([
    nn.reshape([-1, 28 * 28]),
    nn.timeDistributed(nn.dense(128)),
    spiking.spikingActivation('relu', options),
    ...head,
    nn.dense(10),
  ]);

// [5]-[10] spiking model without spiking-aware training, evaluated at several dt
async function model2(): Promise<void> {
  const m2 = spikingModel({ spikingAwareTraining: false });
  const { vars: v2 } = trainModel('spiking, no spiking-aware training', m2, trainSequences, testSequences, [null, 28, 28], 1);
  for (const dt of [0.001, 0.01, 0.1, 1]) {
    console.log(`\ncheck_output(dt=${dt})`);
    await checkOutput(`spiking dt ${dt}`, m2, v2, testSequences, dt);
  }
}

// [11]-[12] spiking-aware training at dt 0.01
async function model3(): Promise<void> {
  const m3 = spikingModel({ dt: 0.01, spikingAwareTraining: true });
  const { vars: v3 } = trainModel('spiking-aware training, dt 0.01', m3, trainSequences, testSequences, [null, 28, 28], 2);
  await checkOutput('spiking-aware dt 0.01', m3, v3, testSequences);
}

// [13]-[14] with a rate regularizer towards 10-20 Hz
async function model4(): Promise<void> {
  const m4 = spikingModel({
    dt: 0.01,
    spikingAwareTraining: true,
    activityRegularizer: spiking.regularizers.l2({ l2: 1e-4, target: [10, 20] }),
  });
  const { vars: v4 } = trainModel('spiking-aware + L2(1e-4, target (10, 20))', m4, trainSequences, testSequences, [null, 28, 28], 3);
  await checkOutput('regularized', m4, v4, testSequences);
}

// [15]-[16] lowpass filtering, default dt 0.01 for layers created from here on
async function model5(): Promise<void> {
  spiking.setDefaultDt(0.01);
  const m5 = spikingModel({ spikingAwareTraining: true }, [spiking.lowpass(0.1, { returnSequences: false })]);
  const { vars: v5 } = trainModel('lowpass(0.1), last step', m5, trainSequences, testSequences, [null, 28, 28], 4);
  await checkOutput('lowpass', m5, v5, testSequences);
}

const modelRuns: Record<number, () => Promise<void>> = { 1: model1, 2: model2, 3: model3, 4: model4, 5: model5 };
const order = [...selected].filter((k) => k in modelRuns).sort((a, b) => a - b);

const running = new Set<ChildProcess>();
/** One model in a process of its own: its log, printed whole when it ends, and its table rows. */
function runInProcess(k: number): Promise<{ log: string; rows: Row[] }> {
  const passOn = ['--epochs', String(epochs), '--out', outDir, '--seed', String(seedOffset), ...(quick ? ['--quick'] : [])];
  // One thread each: the processes already fill the cores (results do not depend on threads).
  const env = { ...process.env, SPIKETRACE_THREADS: '1' };
  const child = fork(fileURLToPath(import.meta.url), [...passOn, '--models', String(k), '--part'], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env,
  });
  running.add(child);
  let log = '';
  // Live progress: each finished epoch as one line, `model 3, Epoch 2/10: 1875/1875 [...] - loss: ...`.
  let epoch = '';
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    log += text;
    const lines = (pending + text).split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      if (/^Epoch \d+\/\d+$/.test(line)) epoch = line;
      else if (epoch && /\/step - loss/.test(line)) {
        console.log(`model ${k}, ${epoch}: ${line}`);
        epoch = '';
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  let partRows: Row[] | undefined;
  child.on('message', (m) => (partRows = (m as { rows: Row[] }).rows));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      running.delete(child);
      if (code === 0 && partRows) resolve({ log, rows: partRows });
      else reject(new Error(`tutorial: model ${k}'s process exited with code ${code}:\n${log}`));
    });
  });
}

if (isPart || jobs === 1) {
  for (const k of order) await modelRuns[k]();
  if (isPart) process.send!({ rows });
} else {
  // With fewer processes than models, the spiking models (about twice the non-spiking one's cost)
  // start first so that the cheap one fills the gap at the end. Rows are kept in model order.
  console.log(`\n${order.length} trainings in ${jobs} processes; each one's log is printed whole when it ends`);
  const queue = [...order].sort((a, b) => (a === 1 ? 1 : 0) - (b === 1 ? 1 : 0) || a - b);
  const results = new Map<number, Promise<{ log: string; rows: Row[] }>>();
  const slots = Array.from({ length: jobs }, async () => {
    for (let k = queue.shift(); k !== undefined; k = queue.shift()) {
      const run = runInProcess(k);
      results.set(k, run);
      const { log } = await run;
      process.stdout.write(`\n--- model ${k} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n${log}`);
    }
  });
  try {
    await Promise.all(slots);
  } catch (err) {
    for (const child of running) child.kill(); // one training failed: stop the others, report it
    throw err;
  }
  for (const k of order) rows.push(...(await results.get(k)!).rows);
}
if (isPart) process.exit(0);

const wallS = (Date.now() - t0) / 1000;
const table = [
  '| # | model | test accuracy | spike rate min / mean / max (Hz) |',
  '|---|---|---|---|',
  ...rows.map(
    (r, i) =>
      `| ${selected.size === 5 ? i + 1 : '-'} | ${r.model} | ${(100 * r.accuracy).toFixed(2)}% | ${r.rate ? `${r.rate.min.toFixed(2)} / ${r.rate.mean.toFixed(2)} / ${r.rate.max.toFixed(2)}` : '-'} |`,
  ),
].join('\n');
console.log(`\n${table}\n\nwall time ${wallS.toFixed(0)} s, epochs ${epochs}${quick ? ' (quick)' : ''}`);
const atomic = (path: string, text: string): void => {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
};
atomic(
  join(outDir, 'results.json'),
  JSON.stringify({ epochs, quick, seedOffset, models: [...selected], wallSeconds: wallS, rows }, null, 2),
);
atomic(join(outDir, 'results.md'), `${table}\n`);
