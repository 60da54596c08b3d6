/**
 * Moving a spiking network through NIR (the Neuromorphic Intermediate Representation).
 *
 * 1. Trains a small LIF network on rate-coded Fashion-MNIST (continuous-time leaky neurons with a
 *    zero reset, the form NIR's LIF describes), exports it to a NIR file, loads the file back as a
 *    spiketrace model and shows that both give the same test accuracy (and the same outputs).
 * 2. Loads a graph written by another framework (Rockpool's one-neuron LIF, from the NIR
 *    project's fixtures), drives it with a step current and plots its membrane and spikes.
 *
 *   npm run example:nir -- [--quick] [--epochs N] [--hidden N] [--out DIR] [--fixture FILE]
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argmax, fromTyped, random, sum, type NDArray, type Tensor } from '../core/index.js';
import { loadFashionMnist, rateEncode } from '../data/index.js';
import * as nn from '../nn/index.js';
import { membraneTrace, spikeRaster, writeFigure } from '../plot/index.js';
import * as spiking from '../spiking/index.js';

// `spiketrace/nir` in a package install; the same module as spiking.nir.
const { nir } = spiking;
import { parseCli } from './lib/cli.js';

const { flag, has } = parseCli();
const quick = has('--quick');
const epochs = Number(flag('--epochs') ?? (quick ? 1 : 2));
const hidden = Number(flag('--hidden') ?? (quick ? 64 : 256));
const out = flag('--out') ?? join('out', 'nir');
const here = dirname(fileURLToPath(import.meta.url));
const fixture = flag('--fixture') ?? resolve(here, '..', '..', 'shared', 'nir', 'fixtures', 'lif_rockpool.nir');
if (!Number.isInteger(epochs) || epochs < 1) throw new RangeError(`--epochs must be a positive integer, got ${flag('--epochs')}`);
if (!Number.isInteger(hidden) || hidden < 1) throw new RangeError(`--hidden must be a positive integer, got ${flag('--hidden')}`);
mkdirSync(out, { recursive: true });
const t0 = Date.now();

// ---------------------------------------------------------------- 1. train, export, re-import
const steps = 25;
const dt = 1e-3;
// beta = 0.95 per step as a time constant: exp(-dt / tau) = 0.95; r = 1 / (1 - 0.95) keeps a unit input gain.
const tau = -dt / Math.log(0.95);
const { train, test, source } = await loadFashionMnist({ limit: quick ? { train: 1024, test: 500 } : { train: 20000, test: 2000 } });
console.log(
  `Fashion-MNIST from ${source}: ${train.labels.shape[0]} train / ${test.labels.shape[0]} test images, ${steps} rate-coded steps of ${dt * 1000} ms`,
);

const surrogate = spiking.surrogate.fastSigmoid(25);
const lif = (name: string) => spiking.leaky({ tau, r: 20, reset: 'zero', dt, surrogate, name });
const network = nn.sequential(
  [
    nn.timeDistributed(nn.flatten(), { name: 'flatten' }),
    nn.timeDistributed(nn.dense(hidden), { name: 'fc1' }),
    lif('lif1'),
    nn.timeDistributed(nn.dense(10), { name: 'fc2' }),
    lif('lif2'),
  ],
  { name: 'network' },
);
const encoder = nn.lambda((x, { key }) => rateEncode(key ?? random.key(0), x, steps), { name: 'rate', outputShape: (s) => [steps, ...s] });
const model = nn.sequential([encoder, network]);
const trainStart = Date.now();
const trained = nn.fit(model, model.init(random.key(0), [28, 28]), train.images, train.labels, {
  optimizer: nn.adam(2e-3),
  loss: spiking.spikeCountCrossEntropy(),
  epochs,
  batchSize: 128,
  key: random.key(1),
  verbose: 0,
});
const trainSeconds = (Date.now() - trainStart) / 1000;
const networkVars = {
  params: (trained.params as Record<string, nn.Variables['params']>).network,
  state: (trained.state as Record<string, nn.Variables['state']>).network,
};

const testSpikes = rateEncode(random.key(2), test.images, steps) as NDArray;
const labels = test.labels.toTyped();
function accuracyOf(outputs: NDArray): number {
  const predicted = argmax(sum(outputs, 1), -1).toTyped();
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) correct++;
  return correct / labels.length;
}
const before = nn.predict(network, networkVars, testSpikes, { batchSize: 250 });
const file = join(out, 'fashion-lif.nir');
await nir.save(file, network, networkVars, { dt, inputShape: [28, 28] });
const loaded = await nir.load(file, { dt, discretisation: 'exact' });
const after = nn.predict(loaded.model, loaded.variables, testSpikes, { batchSize: 250 });
const a = before.toTyped();
const b = after.toTyped();
let identical = a.length === b.length;
for (let i = 0; identical && i < a.length; i++) identical = Object.is(a[i], b[i]);
const accuracyBefore = accuracyOf(before);
const accuracyAfter = accuracyOf(after);
console.log(
  `Exported ${file}: ${Object.entries(loaded.graph.nodes)
    .map(([k, v]) => `${k} (${v.type})`)
    .join(', ')}`,
);
console.log(
  `Test accuracy: spiketrace ${(100 * accuracyBefore).toFixed(2)}%, after NIR export and import ${(100 * accuracyAfter).toFixed(2)}%; outputs ${identical ? 'identical bit for bit' : 'differ'}`,
);
console.log(`Training ${trainSeconds.toFixed(1)} s (${epochs} epoch${epochs > 1 ? 's' : ''}, hidden ${hidden})`);

// ---------------------------------------------------------------- 2. a graph from another framework
let fixtureResult: { file: string; spikeSteps: number[]; figures: string[] } | null = null;
if (existsSync(fixture)) {
  const fixtureDt = 1e-4;
  const rock = await nir.load(fixture, { dt: fixtureDt, discretisation: 'exact' });
  const neuron = rock.model.nir.flat.order.find((n) => rock.model.nir.flat.nodes.get(n)!.type === 'LIF')!;
  const T = 300;
  const current = Float32Array.from({ length: T }, (_, i) => (i >= 50 && i < 250 ? 0.5 : 0));
  const run = rock.model.run(rock.variables.params, fromTyped(current, [1, T, 1], 'float32'), { record: [neuron] });
  const v = run.traces[neuron].state[0];
  const z = run.traces[neuron].output;
  const asTimeByNeuron = (x: Tensor): number[][] => Array.from(x.toTyped() as Float32Array, (val) => [val]);
  const vThreshold = (rock.graph.nodes[neuron] as spiking.nir.NirLeafNode).params.v_threshold as spiking.nir.NirArray;
  const trace = await membraneTrace(asTimeByNeuron(v), {
    dt: fixtureDt,
    threshold: vThreshold.values[0],
    title: `${neuron} from ${fixture.split('/').pop()}: membrane after each step (reset to 0 where it fired), step current 0.5 from 5 to 25 ms`,
  });
  const raster = await spikeRaster(asTimeByNeuron(z), { dt: fixtureDt, title: `${neuron}: spikes` });
  const tracePaths = await writeFigure(join(out, 'fixture-membrane'), trace);
  const rasterPaths = await writeFigure(join(out, 'fixture-spikes'), raster);
  const spikeSteps = Array.from(z.toTyped() as Float32Array).flatMap((s, i) => (s > 0 ? [i] : []));
  console.log(
    `Loaded ${fixture} (NIR ${rock.version}): ${rock.model.nir.flat.order.join(' -> ')}; ${spikeSteps.length} spikes at steps ${spikeSteps.slice(0, 8).join(', ')}${spikeSteps.length > 8 ? ', ...' : ''}`,
  );
  console.log(`Wrote ${tracePaths.pngPath} and ${rasterPaths.pngPath}`);
  fixtureResult = {
    file: fixture,
    spikeSteps,
    figures: [tracePaths.pngPath, tracePaths.svgPath, rasterPaths.pngPath, rasterPaths.svgPath],
  };
} else console.log(`No fixture at ${fixture} (give --fixture FILE): skipping the import of a foreign graph`);

const results = {
  epochs,
  hidden,
  steps,
  dt,
  tau,
  trainSeconds,
  accuracyBefore,
  accuracyAfter,
  identicalOutputs: identical,
  nirFile: file,
  fixture: fixtureResult,
  wallSeconds: (Date.now() - t0) / 1000,
};
const resultsPath = join(out, 'results.json');
writeFileSync(`${resultsPath}.tmp`, JSON.stringify(results, null, 2));
renameSync(`${resultsPath}.tmp`, resultsPath);
console.log(`Wrote ${resultsPath}; wall time ${results.wallSeconds.toFixed(1)} s`);
