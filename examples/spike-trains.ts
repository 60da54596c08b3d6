/**
 * Beyond the seed: spike trains in, spikes inside, an energy estimate out.
 *
 * Fashion-MNIST pixels become Poisson spike trains (a pixel of intensity p fires with probability
 * p at each 10 ms step: up to 100 Hz), drawn fresh for every batch by a lambda layer from the
 * training key, so the network never sees the same spikes twice. The network (TimeDistributed
 * Dense(128) -> SpikingActivation(relu) -> Lowpass(tau 20 ms, last step) -> Dense(10)) is trained
 * spiking-aware, with an L2 activity regularizer pulling the hidden rates into 10-30 Hz. Then:
 * test accuracy on fresh spike trains, the hidden layer's rates, and the estimated energy per
 * inference on a CPU and on Loihi (which pays per spike, so the rates matter).
 *
 *   npm run example:spikes -- [--quick] [--epochs N] [--steps T]
 */
import { mul, random, slice, type NDArray, type Tensor } from '../core/index.js';
import { loadFashionMnist, poissonEncode } from '../data/index.js';
import * as nn from '../nn/index.js';
import * as spiking from '../spiking/index.js';
import { parseCli } from './lib/cli.js';

const { flag, has } = parseCli();
const quick = has('--quick');
const epochs = Number(flag('--epochs') ?? (quick ? 1 : 3));
const steps = Number(flag('--steps') ?? 20);
const dt = 0.01;
if (!Number.isInteger(epochs) || epochs < 1) throw new RangeError(`--epochs must be a positive integer, got ${flag('--epochs')}`);
if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`--steps must be a positive integer, got ${flag('--steps')}`);

const t0 = Date.now();
const { train, test, source } = await loadFashionMnist({ limit: quick ? { train: 1024, test: 256 } : undefined });
console.log(
  `Fashion-MNIST from ${source}: ${train.labels.shape[0]} train / ${test.labels.shape[0]} test images, ${steps} steps of ${dt * 1000} ms`,
);

// Images (n, 28, 28) -> spike trains (n, steps, 28, 28), fresh for every call. poissonEncode's
// spikes have height 1/dt (their mean over time is the rate); scaled by dt they are 0/1 events,
// so the first layer sees inputs on the images' scale.
const encode = (key: Tensor, x: Tensor): Tensor => mul(poissonEncode(key, x, steps, { dt, maxRate: 1 / dt }), dt);
const encoder = nn.lambda((x, { key }) => encode(key ?? random.key(0), x), {
  name: 'poisson',
  outputShape: (s) => [steps, ...s],
});
const network = nn.sequential(
  [
    nn.reshape([-1, 784]),
    nn.timeDistributed(nn.dense(128), { name: 'hidden' }),
    spiking.spikingActivation('relu', { dt, activityRegularizer: spiking.regularizers.l2({ l2: 1e-4, target: [10, 30] }) }),
    spiking.lowpass(0.02, { dt, returnSequences: false }),
    nn.dense(10),
  ],
  { name: 'network' },
);
const model = nn.sequential([encoder, network]);
console.log(nn.summary(model, [28, 28]));

const init = model.init(random.key(0), [28, 28]);
const trained = nn.fit(model, init, train.images, train.labels, {
  optimizer: nn.adam(),
  loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
  metrics: [nn.accuracy],
  epochs,
  batchSize: 32,
  key: random.key(1),
});
const logs = nn.evaluate(model, trained, test.images, test.labels, {
  loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
  metrics: [nn.accuracy],
  key: random.key(2),
  verbose: 0,
});
console.log(`\nTest accuracy on fresh spike trains: ${(100 * logs.accuracy).toFixed(2)}%`);

// The network alone, on one fixed draw of test spike trains: rates and energy.
const examples = Math.min(200, test.labels.shape[0]);
const spikes = encode(random.key(3), slice(test.images, [0], [examples])) as NDArray;
const networkVars = {
  params: (trained.params as Record<string, nn.Variables['params']>).network,
  state: (trained.state as Record<string, nn.Variables['state']>).network,
};
const stats = spiking.spikeStats(network, networkVars, spikes, {
  labels: slice(test.labels, [0], [examples]) as NDArray,
  key: random.key(4),
});
console.log(
  `Hidden spike rate per neuron (Hz): min=${stats.rateHz.min.toFixed(2)} mean=${stats.rateHz.mean.toFixed(2)} max=${stats.rateHz.max.toFixed(2)} (target band 10-30)`,
);
// The energy model reads each layer's input rate in Hz, i.e. spikes of height 1/dt (KerasSpiking's
// convention), while this network consumes 0/1 events. The hidden Dense is linear, so the same
// network with its kernel scaled by dt, fed spikes of height 1/dt, has exactly the same activity.
const params = networkVars.params as Record<string, Record<string, Tensor>>;
const hzParams = { ...params, hidden: { ...params.hidden, kernel: mul(params.hidden.kernel, dt) } };
const energy = spiking.modelEnergy(
  network,
  { params: hzParams, state: networkVars.state },
  [steps, 28, 28],
  mul(spikes, 1 / dt) as NDArray,
);
console.log(`\nEstimated energy per inference (${steps} steps):\n${energy.summary(['cpu', 'loihi'])}`);
const ratio = energy.energy('cpu').total / energy.energy('loihi').total;
console.log(`\nloihi uses ${ratio.toFixed(1)}x less energy than the cpu for this network at these rates.`);
console.log(`wall time ${((Date.now() - t0) / 1000).toFixed(0)} s`);
