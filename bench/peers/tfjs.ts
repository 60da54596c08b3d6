/**
 * TensorFlow.js core ops with tf.variable weights and tf.train.adam (epsilon 1e-7, Keras's value),
 * on the 'wasm' backend (XNNPACK; its .wasm files are loaded from node_modules) or the pure-JS
 * 'cpu' backend.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import {
  ADAM,
  BATCH,
  CLASSES,
  CONV,
  HIDDEN,
  IMAGE,
  TIME_STEPS,
  convWeights,
  type DenseWeights,
  type ModelCase,
  type StepClock,
  type TrainData,
} from '../lib/common.js';
import type { Peer } from '../lib/peer.js';

export async function createPeer(backend: 'wasm' | 'cpu', training: boolean): Promise<Peer> {
  // Loading the gradients takes about a second; the matmul case does without.
  if (training) await import('./tfjs-gradients.js');
  if (backend === 'wasm') {
    // In Node the backend reads its binaries from the file system; point it at the package's dist/.
    const require = createRequire(import.meta.url);
    setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
  }
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs: backend '${backend}' failed to initialize`);
  await tf.ready();
  let described: string = backend;
  if (backend === 'wasm') {
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
    described = `wasm (XNNPACK, SIMD ${simd ? 'on' : 'off'}, ${threads ? getThreadsCount() : 1} thread${threads && getThreadsCount() > 1 ? 's' : ''})`;
  } else {
    described = 'cpu (pure JS)';
  }
  return {
    backend: described,
    matmul(a, b, m, k, n) {
      const A = tf.tensor2d(a, [m, k]);
      const B = tf.tensor2d(b, [k, n]);
      return () => {
        const c = tf.matMul(A, B);
        const out = c.dataSync();
        c.dispose();
        return out;
      };
    },
    train(model: ModelCase, weights: DenseWeights, data: TrainData, clock: StepClock, seed: number) {
      if (model === 'conv') return trainConv(data, clock, seed);
      if (model !== 'm1' && model !== 'm2') throw new Error(`tfjs has no spiking neuron: case '${model}' is spiketrace only`);
      const w1 = tf.variable(tf.tensor2d(weights.w1, [IMAGE, HIDDEN]), true, 'w1');
      const b1 = tf.variable(tf.tensor1d(weights.b1), true, 'b1');
      const w2 = tf.variable(tf.tensor2d(weights.w2, [HIDDEN, CLASSES]), true, 'w2');
      const b2 = tf.variable(tf.tensor1d(weights.b2), true, 'b2');
      const optimizer = tf.train.adam(ADAM.lr, ADAM.beta1, ADAM.beta2, ADAM.epsilon);
      const logits = (x: tf.Tensor2D): tf.Tensor2D => {
        if (model === 'm1') return tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, w1), b1)), w2), b2);
        // The image repeated over 10 steps, TimeDistributed(Dense) as one (B*T, 784) matmul.
        const xt = tf.reshape(tf.broadcastTo(tf.reshape(x, [BATCH, 1, IMAGE]), [BATCH, TIME_STEPS, IMAGE]), [BATCH * TIME_STEPS, IMAGE]);
        const h = tf.reshape(tf.relu(tf.add(tf.matMul(xt, w1), b1)), [BATCH, TIME_STEPS, HIDDEN]);
        return tf.add(tf.matMul(tf.mean(h, 1), w2), b2);
      };
      const steps = Math.min(Math.floor(data.rows / BATCH), clock.plannedSteps);
      clock.start();
      for (let s = 0; s < steps; s++) {
        const lossValue = tf.tidy(() => {
          const x = tf.tensor2d(data.x.subarray(s * BATCH * IMAGE, (s + 1) * BATCH * IMAGE), [BATCH, IMAGE]);
          const y = tf.cast(tf.oneHot(tf.tensor1d(data.y.subarray(s * BATCH, (s + 1) * BATCH), 'int32'), CLASSES), 'float32');
          // Sparse softmax cross-entropy from logits, mean over the batch.
          const cost = optimizer.minimize(() => tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits(x)), y), -1))) as tf.Scalar, true, [
            w1,
            b1,
            w2,
            b2,
          ]);
          return cost!.dataSync()[0];
        });
        if (!clock.step(lossValue)) break;
      }
      optimizer.dispose();
      [w1, b1, w2, b2].forEach((w) => w.dispose());
    },
  };
}

/**
 * The conv case as a tfjs user writes it: the repeated image as a (B * T, 28, 28, 1) batch (tfjs
 * has no broadcast-aware convolution), conv2d / relu / avgPool, the mean over time, the readout.
 */
function trainConv(data: TrainData, clock: StepClock, seed: number): void {
  const c = convWeights(seed);
  const k1 = tf.variable(tf.tensor4d(c.k1, [CONV.window, CONV.window, 1, CONV.filters1]), true, 'k1');
  const b1 = tf.variable(tf.tensor1d(c.b1), true, 'cb1');
  const k2 = tf.variable(tf.tensor4d(c.k2, [CONV.window, CONV.window, CONV.filters1, CONV.filters2]), true, 'k2');
  const b2 = tf.variable(tf.tensor1d(c.b2), true, 'cb2');
  const w = tf.variable(tf.tensor2d(c.w, [CONV.flat, CLASSES]), true, 'w');
  const b = tf.variable(tf.tensor1d(c.b), true, 'b');
  const vars = [k1, b1, k2, b2, w, b];
  const optimizer = tf.train.adam(ADAM.lr, ADAM.beta1, ADAM.beta2, ADAM.epsilon);
  const logits = (x: tf.Tensor2D): tf.Tensor2D => {
    const xt = tf.reshape(tf.broadcastTo(tf.reshape(x, [BATCH, 1, 28, 28, 1]), [BATCH, TIME_STEPS, 28, 28, 1]), [
      BATCH * TIME_STEPS,
      28,
      28,
      1,
    ]) as tf.Tensor4D;
    const h1 = tf.avgPool(tf.relu(tf.add(tf.conv2d(xt, k1 as tf.Tensor4D, 1, 'valid'), b1)) as tf.Tensor4D, 2, 2, 'valid');
    const h2 = tf.avgPool(tf.relu(tf.add(tf.conv2d(h1, k2 as tf.Tensor4D, 1, 'valid'), b2)) as tf.Tensor4D, 2, 2, 'valid');
    const perStep = tf.reshape(h2, [BATCH, TIME_STEPS, CONV.flat]);
    return tf.add(tf.matMul(tf.mean(perStep, 1) as tf.Tensor2D, w), b);
  };
  const steps = Math.min(Math.floor(data.rows / BATCH), clock.plannedSteps);
  clock.start();
  for (let s = 0; s < steps; s++) {
    const lossValue = tf.tidy(() => {
      const x = tf.tensor2d(data.x.subarray(s * BATCH * IMAGE, (s + 1) * BATCH * IMAGE), [BATCH, IMAGE]);
      const y = tf.cast(tf.oneHot(tf.tensor1d(data.y.subarray(s * BATCH, (s + 1) * BATCH), 'int32'), CLASSES), 'float32');
      const cost = optimizer.minimize(() => tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits(x)), y), -1))) as tf.Scalar, true, vars);
      return cost!.dataSync()[0];
    });
    if (!clock.step(lossValue)) break;
  }
  optimizer.dispose();
  vars.forEach((v) => v.dispose());
}
