/**
 * spiketrace through its public API, as a user writes it: nn.sequential models, nn.fit with
 * verbose 0 (a callback reads each step's loss for the clock), the data module's tileTime and
 * poissonEncode (inside the step, through a lambda layer).
 */
import {
  abs,
  add,
  div,
  fromTyped,
  getBackend,
  jit,
  matmul,
  mul,
  random,
  stopGradient,
  sub,
  sum,
  transpose,
  valueAndGrad,
  type NDArray,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import { gemmFmaActive } from '../../core/backend/wasm/index.js';
import { poissonEncode, tileTime } from '../../data/index.js';
import * as nn from '../../nn/index.js';
import * as spiking from '../../spiking/index.js';
import {
  BATCH,
  CONV,
  HIDDEN,
  CLASSES,
  IMAGE,
  LIF,
  SPIKING_DT,
  TIME_STEPS,
  convWeights,
  type DenseWeights,
  type ModelCase,
  type StepClock,
  type TrainData,
} from '../lib/common.js';
import type { Peer } from '../lib/peer.js';

/** The case's model; the two dense layers are named 'hidden' and 'logits' so weights can be set. */
function buildModel(model: ModelCase): { layer: nn.Layer; inputShape: nn.LayerShape } {
  if (model === 'conv' || model === 'convEveryStep') {
    const layer = nn.sequential([
      ...(model === 'convEveryStep' ? [everyStep()] : []),
      nn.timeDistributed(nn.conv2d(CONV.filters1, CONV.window, { activation: 'relu' }), { name: 'conv1' }),
      nn.timeDistributed(nn.averagePooling2d(2)),
      nn.timeDistributed(nn.conv2d(CONV.filters2, CONV.window, { activation: 'relu' }), { name: 'conv2' }),
      nn.timeDistributed(nn.averagePooling2d(2)),
      nn.timeDistributed(nn.flatten()),
      nn.globalAveragePooling1d(),
      nn.dense(CLASSES, { name: 'logits' }),
    ]);
    return { layer, inputShape: [null, 28, 28, 1] };
  }
  if (model === 'lifNet') throw new RangeError("spiketrace peer: the 'lifNet' case trains with trainLif");
  if (model === 'm1') {
    return {
      layer: nn.sequential([nn.flatten(), nn.dense(HIDDEN, { activation: 'relu', name: 'hidden' }), nn.dense(CLASSES, { name: 'logits' })]),
      inputShape: [28, 28],
    };
  }
  // M2 trains with the plain relu (what the seed's SpikingActivation without spiking-aware
  // training computes in training); the spiking cases use the spiking neuron at dt 0.01.
  const act =
    model === 'm2'
      ? nn.activation('relu')
      : model === 'lif'
        ? spiking.leaky({ beta: 0.95, surrogate: spiking.surrogate.fastSigmoid(25) })
        : model === 'lifStopGradient'
          ? spiking.leaky({ beta: 0.95, surrogate: stopGradientFastSigmoid })
          : spiking.spikingActivation('relu', { dt: SPIKING_DT });
  const layers = [
    nn.reshape([-1, IMAGE]),
    nn.timeDistributed(nn.dense(HIDDEN), { name: 'hidden' }),
    act,
    nn.globalAveragePooling1d(),
    nn.dense(CLASSES, { name: 'logits' }),
  ];
  if (model !== 'poisson') return { layer: nn.sequential(layers), inputShape: [null, 28, 28] };
  return { layer: nn.sequential([poissonEncoder(), ...layers]), inputShape: [28, 28] };
}

/**
 * The convEveryStep case's first layer: the repeated image plus zeros of a contiguous (1, steps,
 * 28, 28, 1) array, so the steps are no longer copies of one another to the trace (the zeros
 * differ per step as far as it can tell) and every layer computes every step, as on time-varying
 * input and as the peers do. The values are the image's (x + 0 = x for x >= 0).
 */
function everyStep(): nn.Layer {
  const zeros = fromTyped(new Float32Array(TIME_STEPS * IMAGE), [1, TIME_STEPS, 28, 28, 1]);
  return nn.lambda((x) => add(x, zeros), { name: 'every_step' });
}

/**
 * The fast sigmoid written the way users write a surrogate without customVjp: H(u) forward through
 * s + sg(H(u) - s), with s(u) = u / (1 + 25 |u|), whose derivative is the fast sigmoid's.
 */
const stopGradientFastSigmoid: spiking.Surrogate = {
  name: 'fastSigmoidStopGradient',
  config: { slope: 25 },
  derivative: (u) => spiking.surrogate.fastSigmoid(25).derivative(u),
  spike: (u) => {
    const s = div(u, add(mul(abs(u), 25), 1));
    return add(s, stopGradient(sub(spiking.heaviside(u), s)));
  },
};

/**
 * Binary spike trains drawn per batch inside the training step: poissonEncode at the model's dt
 * with rate 100 Hz per unit intensity, so each pixel spikes with probability = its intensity at
 * each step; scaled by dt to spikes of height 1, so the mean over time approximates the image as
 * the repeated input does. Only the images are held (the encoded set would be 10x their size).
 */
function poissonEncoder(): nn.Layer {
  return nn.lambda(
    (x, { key }) => {
      if (!key) throw new RangeError('poisson encoder: needs the per-step key that fit passes');
      return poissonEncode(key, x, TIME_STEPS, { dt: SPIKING_DT, maxRate: 1 / SPIKING_DT }).mul(SPIKING_DT);
    },
    { name: 'poisson', outputShape: (s) => [TIME_STEPS, ...s] },
  );
}

/** Replaces the initialized kernels and biases of 'hidden' and 'logits' with the shared weights. */
function withWeights(params: Tree, w: DenseWeights, model: ModelCase, seed: number): Tree {
  const p = params as Record<string, Record<string, Tensor>>;
  if (model === 'conv' || model === 'convEveryStep') {
    const c = convWeights(seed);
    const conv = (name: string, kernel: Float32Array, bias: Float32Array): Record<string, Tensor> => ({
      kernel: fromTyped(kernel, p[name].kernel.shape),
      bias: fromTyped(bias, p[name].bias.shape),
    });
    return { ...p, conv1: conv('conv1', c.k1, c.b1), conv2: conv('conv2', c.k2, c.b2), logits: conv('logits', c.w, c.b) };
  }
  const set = (name: string, kernel: Float32Array, bias: Float32Array): Record<string, Tensor> => {
    const old = p[name];
    const k = fromTyped(kernel, old.kernel.shape);
    const b = fromTyped(bias, old.bias.shape);
    return { ...old, kernel: k, bias: b };
  };
  return { ...p, hidden: set('hidden', w.w1, w.b1), logits: set('logits', w.w2, w.b2) };
}

/**
 * The LIF example's network, trained by a hand-written jitted step (valueAndGrad + Adam), as a
 * user of the neuron layers writes it: timeDistributed dense layers and `leaky` neurons (reset by
 * subtraction, fast-sigmoid surrogate), cross-entropy on the output spike counts. The first batch
 * trains on the parent's shared spikes (so its loss compares with PyTorch's); every later batch is
 * rate-coded inside the step (poissonEncode at dt 1 and 1 Hz per unit intensity: Bernoulli(x)).
 */
function trainLif(weights: DenseWeights, data: TrainData, clock: StepClock, seed: number, spikes0: Uint8Array): void {
  const neuron = { beta: LIF.beta, threshold: LIF.threshold, reset: 'subtract', surrogate: 'fastSigmoid' } as const;
  const layer = nn.sequential([
    nn.timeDistributed(nn.dense(LIF.hidden), { name: 'hidden' }),
    spiking.leaky(neuron),
    nn.timeDistributed(nn.dense(CLASSES), { name: 'logits' }),
    spiking.leaky(neuron),
  ]);
  const init = layer.init(random.key(seed), [LIF.timeSteps, IMAGE]);
  let params = withWeights(init.params, weights, 'lifNet', seed);
  let state: Tree = init.state;
  const opt = nn.adam(LIF.lr);
  let optState: Tree = opt.init(params);
  const crossEntropy = nn.sparseCategoricalCrossentropy({ fromLogits: true });
  type Out = { params: Tree; state: Tree; optState: Tree; loss: Tensor };
  const update = (p: Tree, s: Tree, o: Tree, spikes: Tensor, y: Tensor, key: Tensor): Out => {
    const lossOf = (q: Tree): [Tensor, Tree] => {
      const r = layer.apply(q as nn.SequentialParams, spikes, { training: true, key }, s as nn.SequentialParams);
      return [crossEntropy(y, sum(r.y, 1)), r.state];
    };
    const [valueAux, grads] = valueAndGrad(lossOf as (q: Tree) => unknown, { hasAux: true })(p);
    const [loss, nextState] = valueAux as [Tensor, Tree];
    const [updates, nextOpt] = opt.update(grads, o as Tree[], p);
    return { params: nn.applyUpdates(p, updates), state: nextState, optState: nextOpt, loss };
  };
  // The training loop's variables stay in backend memory between steps and each step's are
  // donated to the next (the documented idiom for a hand-written loop, what fit does; PyTorch's
  // optimizer updates in place too): without it every step copied 785k parameters and two Adam
  // moments into the kernel arena and back out to fresh arrays. The initial variables are not donated.
  const onSpikes = jit(update).donating([], { keepInBackend: true });
  const onImages = jit((p: Tree, s: Tree, o: Tree, images: Tensor, y: Tensor, key: Tensor) =>
    update(p, s, o, poissonEncode(key, images, LIF.timeSteps, { dt: 1, maxRate: 1 }), y, key),
  );
  const onImagesFirst = onImages.donating([], { keepInBackend: true });
  const onImagesNext = onImages.donating([0, 1, 2], { keepInBackend: true });
  const steps = Math.min(Math.floor(data.rows / LIF.batch), clock.plannedSteps);
  const stepKey = random.key(seed + 1);
  clock.start();
  for (let s = 0; s < steps; s++) {
    const rows = [s * LIF.batch, (s + 1) * LIF.batch];
    const y = fromTyped(data.y.subarray(rows[0], rows[1]), [LIF.batch], 'int32');
    const key = random.foldIn(stepKey, s);
    let out: Out;
    if (s === 0 && spikes0.length) {
      const timeMajor = fromTyped(Float32Array.from(spikes0), [LIF.timeSteps, LIF.batch, IMAGE]);
      out = onSpikes(params, state, optState, transpose(timeMajor, [1, 0, 2]), y, key);
    } else {
      const images = fromTyped(data.x.subarray(rows[0] * IMAGE, rows[1] * IMAGE), [LIF.batch, IMAGE]);
      out = (s === 0 ? onImagesFirst : onImagesNext)(params, state, optState, images, y, key);
    }
    ({ params, state, optState } = out);
    if (!clock.step(out.loss.item())) break;
  }
}

export async function createPeer(): Promise<Peer> {
  return {
    backend: `${getBackend().name} backend${gemmFmaActive() ? ', FMA matmul' : ''}`,
    matmul(a, b, m, k, n) {
      const A = fromTyped(a, [m, k]);
      const B = fromTyped(b, [k, n]);
      return () => (matmul(A, B) as NDArray).toTyped();
    },
    train(model, weights, data, clock: StepClock, seed, lifSpikes0 = new Uint8Array(0)) {
      if (model === 'lifNet') return trainLif(weights, data, clock, seed, lifSpikes0);
      const { layer, inputShape } = buildModel(model);
      const init = layer.init(random.key(seed), inputShape);
      const vars = { params: withWeights(init.params, weights, model, seed), state: init.state };
      const rows = Math.min(data.rows, clock.plannedSteps * BATCH);
      const images = fromTyped(data.x.subarray(0, rows * IMAGE), [rows, 28, 28]);
      const labels = fromTyped(data.y.subarray(0, rows), [rows], 'int32');
      // The repeated image is a stride-0 view (no copy), as in the README.
      const x =
        model === 'm1' || model === 'poisson'
          ? images
          : model === 'conv' || model === 'convEveryStep'
            ? tileTime(images.reshape([rows, 28, 28, 1]) as NDArray, TIME_STEPS)
            : tileTime(images, TIME_STEPS);
      clock.start();
      nn.fit(layer, vars, x, labels, {
        optimizer: nn.adam(),
        loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
        epochs: 1,
        batchSize: BATCH,
        shuffle: false, // the rows are already in the shared shuffled order
        verbose: 0,
        key: random.key(seed + 1),
        callbacks: [
          {
            onBatchEnd: (_batch, logs, ctl) => {
              if (!clock.step(logs.batchLoss)) ctl.stopTraining = true;
            },
          },
        ],
      });
    },
  };
}
