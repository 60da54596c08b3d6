/**
 * jax-js (wasm device): the train step written as a JAX user would, valueAndGrad of the loss and
 * Keras's Adam by hand, the whole step under one jit. jax-js moves ownership into every call, so
 * arrays used twice are passed as `.ref`.
 */
import { defaultDevice, init, jit, nn, numpy as np, tree, valueAndGrad } from '@jax-js/jax';
import {
  ADAM,
  BATCH,
  CLASSES,
  HIDDEN,
  IMAGE,
  TIME_STEPS,
  type DenseWeights,
  type ModelCase,
  type StepClock,
  type TrainData,
} from '../lib/common.js';
import type { Peer } from '../lib/peer.js';

type Params = { w1: np.Array; b1: np.Array; w2: np.Array; b2: np.Array };
const KEYS = ['w1', 'b1', 'w2', 'b2'] as const;

/** Logits of M1 (x: (B, 784)) or M2 (the same x repeated over 10 steps inside the step). */
function forward(model: ModelCase, p: Params, x: np.Array): np.Array {
  if (model === 'm1') return np.matmul(nn.relu(np.matmul(x, p.w1).add(p.b1)), p.w2).add(p.b2);
  const b = x.shape[0];
  const xt = np.broadcastTo(x.reshape([b, 1, IMAGE]), [b, TIME_STEPS, IMAGE]);
  const h = nn.relu(np.matmul(xt, p.w1).add(p.b1)); // (B, T, 128): TimeDistributed(Dense) + relu
  return np.matmul(np.mean(h, 1), p.w2).add(p.b2);
}

/** Sparse softmax cross-entropy from logits, mean over the batch. */
function loss(model: ModelCase, p: Params, x: np.Array, y: np.Array): np.Array {
  const logp = nn.logSoftmax(forward(model, p, x), -1);
  return np.negative(np.mean(np.sum(logp.mul(nn.oneHot(y, CLASSES)), -1)));
}

/**
 * One jit-compiled step: loss and gradients, then Keras's Adam
 * (m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, p -= lrT m / (sqrt(v) + eps)), where
 * lrT = lr sqrt(1 - b2^t) / (1 - b1^t) is computed on the host and passed in as a scalar.
 */
function makeStep(model: ModelCase) {
  return jit((p: Params, m: Params, v: Params, lrT: np.Array, x: np.Array, y: np.Array) => {
    const [value, g] = valueAndGrad((pp: Params) => loss(model, pp, x, y))(tree.ref(p));
    const next: Params = {} as Params;
    const nm: Params = {} as Params;
    const nv: Params = {} as Params;
    for (const k of KEYS) {
      const gk = g[k];
      nm[k] = m[k].mul(ADAM.beta1).add(gk.ref.mul(1 - ADAM.beta1));
      nv[k] = v[k].mul(ADAM.beta2).add(gk.ref.mul(gk).mul(1 - ADAM.beta2));
      next[k] = p[k].sub(nm[k].ref.mul(lrT.ref).div(np.sqrt(nv[k].ref).add(ADAM.epsilon)));
    }
    lrT.dispose();
    return { p: next, m: nm, v: nv, loss: value };
  });
}

export async function createPeer(): Promise<Peer> {
  // Only the wasm device: init() would probe WebGPU, which Node lacks.
  await init('wasm');
  defaultDevice('wasm');
  // jax-js spawns wasm worker threads only where both SharedArrayBuffer and Web Workers exist;
  // Node 20 has no global Worker, so it runs on one thread here.
  const threaded = typeof SharedArrayBuffer !== 'undefined' && 'Worker' in globalThis;
  return {
    backend: `wasm (${threaded ? 'multi-threaded' : '1 thread'})`,
    matmul(a, b, m, k, n) {
      const A = np.array(a, { shape: [m, k] });
      const B = np.array(b, { shape: [k, n] });
      // dataSync() consumes the result and waits for the lazy kernel to run.
      return () => np.matmul(A.ref, B.ref).dataSync();
    },
    train(model, weights: DenseWeights, data: TrainData, clock: StepClock) {
      if (model !== 'm1' && model !== 'm2') throw new Error(`jax-js has no spiking neuron: case '${model}' is spiketrace only`);
      const shapes: Record<(typeof KEYS)[number], number[]> = { w1: [IMAGE, HIDDEN], b1: [HIDDEN], w2: [HIDDEN, CLASSES], b2: [CLASSES] };
      let p = {} as Params;
      let m = {} as Params;
      let v = {} as Params;
      for (const k of KEYS) {
        p[k] = np.array(weights[k], { shape: shapes[k] });
        m[k] = np.zeros(shapes[k]);
        v[k] = np.zeros(shapes[k]);
      }
      const step = makeStep(model);
      const steps = Math.min(Math.floor(data.rows / BATCH), clock.plannedSteps);
      clock.start();
      for (let s = 0; s < steps; s++) {
        const x = np.array(data.x.subarray(s * BATCH * IMAGE, (s + 1) * BATCH * IMAGE), { shape: [BATCH, IMAGE] });
        const y = np.array(data.y.subarray(s * BATCH, (s + 1) * BATCH), { shape: [BATCH], dtype: np.int32 });
        const t = s + 1;
        const lrT = (ADAM.lr * Math.sqrt(1 - ADAM.beta2 ** t)) / (1 - ADAM.beta1 ** t);
        const out = step(p, m, v, np.array(lrT), x, y);
        ({ p, m, v } = out);
        if (!clock.step(out.loss.item())) break;
      }
      for (const k of KEYS) [p[k], m[k], v[k]].forEach((a) => a.dispose());
      step.dispose();
    },
  };
}
