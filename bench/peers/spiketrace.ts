/**
 * spiketrace through its public API, as a user writes it: nn.sequential models, nn.fit with
 * verbose 0 (a callback reads each step's loss for the clock), the data module's tileTime and
 * poissonEncode (inside the step, through a lambda layer).
 */
import { fromTyped, getBackend, matmul, random, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import { gemmFmaActive } from '../../core/backend/wasm/index.js';
import { poissonEncode, tileTime } from '../../data/index.js';
import * as nn from '../../nn/index.js';
import * as spiking from '../../spiking/index.js';
import { BATCH, HIDDEN, CLASSES, IMAGE, SPIKING_DT, TIME_STEPS, type DenseWeights, type ModelCase, type StepClock } from '../lib/common.js';
import type { Peer } from '../lib/peer.js';

/** The case's model; the two dense layers are named 'hidden' and 'logits' so weights can be set. */
function buildModel(model: ModelCase): { layer: nn.Layer; inputShape: nn.LayerShape } {
  if (model === 'lif') throw new RangeError("spiketrace peer: the 'lif' case needs the neuron layers of issue 16 (CASE_PEERS does not list spiketrace for it)");
  if (model === 'm1') {
    return { layer: nn.sequential([nn.flatten(), nn.dense(HIDDEN, { activation: 'relu', name: 'hidden' }), nn.dense(CLASSES, { name: 'logits' })]), inputShape: [28, 28] };
  }
  // M2 trains with the plain relu (what the seed's SpikingActivation without spiking-aware
  // training computes in training); the spiking cases use the spiking neuron at dt 0.01.
  const act = model === 'm2' ? nn.activation('relu') : spiking.spikingActivation('relu', { dt: SPIKING_DT });
  const layers = [nn.reshape([-1, IMAGE]), nn.timeDistributed(nn.dense(HIDDEN), { name: 'hidden' }), act, nn.globalAveragePooling1d(), nn.dense(CLASSES, { name: 'logits' })];
  if (model !== 'poisson') return { layer: nn.sequential(layers), inputShape: [null, 28, 28] };
  return { layer: nn.sequential([poissonEncoder(), ...layers]), inputShape: [28, 28] };
}

/**
 * Binary spike trains drawn per batch inside the training step: poissonEncode at the model's dt
 * with rate 100 Hz per unit intensity, so each pixel spikes with probability = its intensity at
 * each step; scaled by dt to spikes of height 1, so the mean over time approximates the image as
 * the repeated input does. Only the images are held (the encoded set would be 10x their size).
 */
function poissonEncoder(): nn.Layer {
  return nn.lambda((x, { key }) => {
    if (!key) throw new RangeError('poisson encoder: needs the per-step key that fit passes');
    return poissonEncode(key, x, TIME_STEPS, { dt: SPIKING_DT, maxRate: 1 / SPIKING_DT }).mul(SPIKING_DT);
  }, { name: 'poisson', outputShape: (s) => [TIME_STEPS, ...s] });
}

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

export async function createPeer(): Promise<Peer> {
  return {
    backend: `${getBackend().name} backend${gemmFmaActive() ? ', FMA matmul' : ''}`,
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
      const x = model === 'm1' || model === 'poisson' ? images : tileTime(images, TIME_STEPS);
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
