/**
 * spiketrace through its public API, as a user writes it: nn.sequential models, nn.fit with
 * verbose 0 (a callback reads each step's loss for the clock), the data module's tileTime and
 * poissonEncode.
 */
import { abs, add, div, fromTyped, getBackend, matmul, mul, random, stopGradient, sub, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import { poissonEncode, tileTime } from '../../data/index.js';
import * as nn from '../../nn/index.js';
import * as spiking from '../../spiking/index.js';
import { BATCH, HIDDEN, CLASSES, IMAGE, SPIKING_DT, TIME_STEPS, type DenseWeights, type ModelCase, type StepClock } from '../lib/common.js';
import type { Peer } from '../lib/peer.js';

/** The case's model; the two dense layers are named 'hidden' and 'logits' so weights can be set. */
function buildModel(model: ModelCase): { layer: nn.Layer; inputShape: nn.LayerShape } {
  if (model === 'm1') {
    return { layer: nn.sequential([nn.flatten(), nn.dense(HIDDEN, { activation: 'relu', name: 'hidden' }), nn.dense(CLASSES, { name: 'logits' })]), inputShape: [28, 28] };
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
  const layer = nn.sequential([nn.reshape([-1, IMAGE]), nn.timeDistributed(nn.dense(HIDDEN), { name: 'hidden' }), act, nn.globalAveragePooling1d(), nn.dense(CLASSES, { name: 'logits' })]);
  return { layer, inputShape: [null, 28, 28] };
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

/** Replaces the initialized kernels and biases of 'hidden' and 'logits' with the shared weights. */
function withWeights(params: Tree, w: DenseWeights): Tree {
  const p = params as Record<string, Record<string, Tensor>>;
  const set = (name: string, kernel: Float32Array, bias: Float32Array): Record<string, Tensor> => {
    const old = p[name];
    const k = fromTyped(kernel, old.kernel.shape);
    const b = fromTyped(bias, old.bias.shape);
    return { ...old, kernel: k, bias: b };
  };
  return { ...p, hidden: set('hidden', w.w1, w.b1), logits: set('logits', w.w2, w.b2) };
}

/**
 * Binary spike trains (rows, 10, 28, 28): poissonEncode at the model's dt with rate 100 Hz per unit
 * intensity, so each pixel spikes with probability = its intensity at each step; scaled by dt to
 * spikes of height 1, so the mean over time approximates the image as the repeated input does.
 * Encoded in chunks before training, outside the timed steps.
 */
function poissonInput(pixels: Float32Array, rows: number, seed: number): NDArray {
  const per = TIME_STEPS * IMAGE;
  const out = new Float32Array(rows * per);
  const chunk = 1024;
  for (let r = 0, c = 0; r < rows; r += chunk, c++) {
    const n = Math.min(chunk, rows - r);
    const part = fromTyped(pixels.subarray(r * IMAGE, (r + n) * IMAGE), [n, 28, 28]);
    const spikes = poissonEncode(random.foldIn(random.key(seed), c), part, TIME_STEPS, { dt: SPIKING_DT, maxRate: 1 / SPIKING_DT }).mul(SPIKING_DT);
    out.set((spikes as NDArray).toTyped() as Float32Array, r * per);
  }
  return fromTyped(out, [rows, TIME_STEPS, 28, 28]);
}

export async function createPeer(): Promise<Peer> {
  return {
    backend: `${getBackend().name} backend`,
    matmul(a, b, m, k, n) {
      const A = fromTyped(a, [m, k]);
      const B = fromTyped(b, [k, n]);
      return () => (matmul(A, B) as NDArray).toTyped();
    },
    train(model, weights, data, clock: StepClock, seed) {
      const { layer, inputShape } = buildModel(model);
      const init = layer.init(random.key(seed), inputShape);
      const vars = { params: withWeights(init.params, weights), state: init.state };
      const rows = Math.min(data.rows, clock.plannedSteps * BATCH);
      const images = fromTyped(data.x.subarray(0, rows * IMAGE), [rows, 28, 28]);
      const labels = fromTyped(data.y.subarray(0, rows), [rows], 'int32');
      // The repeated image is a stride-0 view (no copy), as in the README.
      const x = model === 'm1' ? images : model === 'poisson' ? poissonInput(data.x, rows, seed) : tileTime(images, TIME_STEPS);
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
