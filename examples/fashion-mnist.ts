/**
 * The KerasSpiking "Classifying Fashion MNIST with spiking activations" tutorial, every cell, in
 * spiketrace. Run: npm run tutorial -- [--epochs N] [--quick] [--out DIR]
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
const nSteps = 10;
mkdirSync(outDir, { recursive: true });

const t0 = Date.now();
const { train, test, source } = await loadFashionMnist({ limit: quick ? { train: 512, test: 256 } : undefined });
console.log(`Fashion-MNIST from ${source}: ${train.labels.shape[0]} train / ${test.labels.shape[0]} test images`);
const classNames = [...FASHION_MNIST_CLASSES];

// [2] the 5x5 grid of training samples
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

function trainModel(label: string, model: nn.Layer, x: NDArray, xTest: NDArray, inputShape: nn.LayerShape, seed: number): nn.Variables {
  console.log(`\n=== ${label}\n${nn.summary(model, inputShape)}`);
  const init = model.init(random.key(seed + 1000 * seedOffset), inputShape);
  const trained = nn.fit(model, init, x, train.labels, compileOptions(seed + 100 + 1000 * seedOffset));
  const logs = nn.evaluate(model, trained, xTest, test.labels, {
    loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
    metrics: [nn.accuracy],
    verbose: 2,
  });
  console.log(`\nTest accuracy: ${logs.accuracy}`);
  return trained;
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
if (selected.has(1)) {
  const dense = nn.sequential([nn.flatten(), nn.dense(128, { activation: 'relu' }), nn.dense(10)]);
  const denseVars = trainModel('non-spiking', dense, train.images, test.images, [28, 28], 0);
  const denseAcc = nn.evaluate(dense, denseVars, test.images, test.labels, {
    loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
    metrics: [nn.accuracy],
  }).accuracy;
  rows.push({ model: 'non-spiking', accuracy: denseAcc });
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
if (selected.has(2)) {
  const m2 = spikingModel({ spikingAwareTraining: false });
  const v2 = trainModel('spiking, no spiking-aware training', m2, trainSequences, testSequences, [null, 28, 28], 1);
  for (const dt of [0.001, 0.01, 0.1, 1]) {
    console.log(`\ncheck_output(dt=${dt})`);
    await checkOutput(`spiking dt ${dt}`, m2, v2, testSequences, dt);
  }
}

// [11]-[12] spiking-aware training at dt 0.01
if (selected.has(3)) {
  const m3 = spikingModel({ dt: 0.01, spikingAwareTraining: true });
  const v3 = trainModel('spiking-aware training, dt 0.01', m3, trainSequences, testSequences, [null, 28, 28], 2);
  await checkOutput('spiking-aware dt 0.01', m3, v3, testSequences);
}

// [13]-[14] with a rate regularizer towards 10-20 Hz
if (selected.has(4)) {
  const m4 = spikingModel({
    dt: 0.01,
    spikingAwareTraining: true,
    activityRegularizer: spiking.regularizers.l2({ l2: 1e-4, target: [10, 20] }),
  });
  const v4 = trainModel('spiking-aware + L2(1e-4, target (10, 20))', m4, trainSequences, testSequences, [null, 28, 28], 3);
  await checkOutput('regularized', m4, v4, testSequences);
}

// [15]-[16] lowpass filtering, default dt 0.01 for layers created from here on
if (selected.has(5)) {
  spiking.setDefaultDt(0.01);
  const m5 = spikingModel({ spikingAwareTraining: true }, [spiking.lowpass(0.1, { returnSequences: false })]);
  const v5 = trainModel('lowpass(0.1), last step', m5, trainSequences, testSequences, [null, 28, 28], 4);
  await checkOutput('lowpass', m5, v5, testSequences);
}

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
