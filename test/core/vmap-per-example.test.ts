/**
 * Per-example gradients of a relu MLP with softmax cross-entropy, jit(vmap(grad(loss))), for sizes
 * that hit the kernels' edges (rows and columns not multiples of 4, one example, a batch of 32):
 * against a float64 per-example backward pass written here from the formulas (within float32
 * rounding), bit for bit against jit(grad) called once per example, and the results stay intact
 * when later calls run (they leave the program as ordinary memory that nothing recycles), also
 * when the previous call's gradients are donated back, or disposed, and their memory reused.
 */
import t from 'tap';
import { rng } from '../backend/fixtures/rng.js';
import { firstBitDifference } from '../backend/fixtures/compare.js';
import {
  add,
  dispose,
  fromTyped,
  grad,
  indexAxis,
  jit,
  logSoftmax,
  matmul,
  mul,
  neg,
  relu,
  reshape,
  sum,
  vmap,
  type NDArray,
  type Tensor,
} from '../../core/index.js';

type Params = { W1: Tensor; b1: Tensor; W2: Tensor; b2: Tensor };
type Grads = { W1: NDArray; b1: NDArray; W2: NDArray; b2: NDArray };
const LEAVES = ['W1', 'b1', 'W2', 'b2'] as const;

function exampleLoss(p: Params, x: Tensor, y: Tensor): Tensor {
  const h = relu(add(matmul(reshape(x, [1, x.shape[0]]), p.W1), p.b1));
  return neg(sum(mul(y, logSoftmax(add(matmul(h, p.W2), p.b2)))));
}

/** Each example's gradient in float64: forward, softmax, then backward by the chain rule. */
function float64Grads(
  W1: Float32Array,
  b1: Float32Array,
  W2: Float32Array,
  b2: Float32Array,
  x: Float32Array,
  y: Float32Array,
  sizes: number[],
) {
  const [batch, inputs, hidden, classes] = sizes;
  const out = {
    W1: new Float64Array(batch * inputs * hidden),
    b1: new Float64Array(batch * hidden),
    W2: new Float64Array(batch * hidden * classes),
    b2: new Float64Array(batch * classes),
  };
  for (let s = 0; s < batch; s++) {
    const pre = new Float64Array(hidden);
    for (let j = 0; j < hidden; j++) {
      let acc = b1[j];
      for (let i = 0; i < inputs; i++) acc += x[s * inputs + i] * W1[i * hidden + j];
      pre[j] = acc;
    }
    const h = pre.map((v) => Math.max(v, 0));
    const z = new Float64Array(classes);
    for (let c = 0; c < classes; c++) {
      let acc = b2[c];
      for (let j = 0; j < hidden; j++) acc += h[j] * W2[j * classes + c];
      z[c] = acc;
    }
    const zmax = Math.max(...z);
    const e = z.map((v) => Math.exp(v - zmax));
    const total = e.reduce((a, v) => a + v, 0);
    let ysum = 0;
    for (let c = 0; c < classes; c++) ysum += y[s * classes + c];
    // d loss / d z = softmax(z) * sum(y) - y
    const dz = e.map((v, c) => (v / total) * ysum - y[s * classes + c]);
    for (let c = 0; c < classes; c++) out.b2[s * classes + c] = dz[c];
    for (let j = 0; j < hidden; j++) {
      let dh = 0;
      for (let c = 0; c < classes; c++) {
        out.W2[(s * hidden + j) * classes + c] = h[j] * dz[c];
        dh += W2[j * classes + c] * dz[c];
      }
      const dpre = pre[j] > 0 ? dh : 0;
      out.b1[s * hidden + j] = dpre;
      for (let i = 0; i < inputs; i++) out.W1[(s * inputs + i) * hidden + j] = x[s * inputs + i] * dpre;
    }
  }
  return out;
}

for (const sizes of [
  [1, 6, 11, 3],
  [7, 13, 9, 5],
  [32, 37, 130, 10],
  [32, 784, 128, 10],
]) {
  const [batch, inputs, hidden, classes] = sizes;
  t.test(`batch ${batch}, ${inputs} -> ${hidden} relu -> ${classes}`, async (t) => {
    const next = rng(sizes.reduce((a, v) => a * 31 + v, 7));
    const uniform = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * (next() * 2 - 1));
    const W1 = uniform(inputs * hidden, Math.sqrt(6 / (inputs + hidden)));
    const b1 = uniform(hidden, 0.1);
    const W2 = uniform(hidden * classes, Math.sqrt(6 / (hidden + classes)));
    const b2 = uniform(classes, 0.1);
    const params: Params = {
      W1: fromTyped(W1, [inputs, hidden]),
      b1: fromTyped(b1, [hidden]),
      W2: fromTyped(W2, [hidden, classes]),
      b2: fromTyped(b2, [classes]),
    };
    const makeBatch = () => {
      const x = Float32Array.from({ length: batch * inputs }, () => next());
      const labels = Array.from({ length: batch }, () => Math.floor(next() * classes));
      const y = Float32Array.from({ length: batch * classes }, (_, i) => (labels[Math.floor(i / classes)] === i % classes ? 1 : 0));
      return { x, y, X: fromTyped(x, [batch, inputs]), Y: fromTyped(y, [batch, classes]) };
    };
    const perExample = jit(vmap(grad(exampleLoss), { inAxes: [null, 0, 0] }));
    const first = makeBatch();
    const got = perExample(params, first.X, first.Y) as unknown as Grads;
    const kept = Object.fromEntries(LEAVES.map((k) => [k, Float32Array.from(got[k].toTyped() as Float32Array)])) as Record<
      (typeof LEAVES)[number],
      Float32Array
    >;

    const ref = float64Grads(W1, b1, W2, b2, first.x, first.y, sizes);
    for (const k of LEAVES) {
      const g = got[k].toTyped();
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < g.length; i++) {
        worst = Math.max(worst, Math.abs(g[i] - ref[k][i]));
        scale = Math.max(scale, Math.abs(ref[k][i]));
      }
      t.ok(
        scale > 0 && worst <= 1e-5 * Math.max(scale, 1),
        `${k}: nonzero, within float32 rounding of the float64 loop (worst ${worst}, scale ${scale})`,
      );
    }

    const single = jit(grad(exampleLoss));
    for (let s = 0; s < batch; s++) {
      const g = single(params, indexAxis(first.X, 0, s), indexAxis(first.Y, 0, s)) as unknown as Grads;
      for (const k of LEAVES) {
        const mine = (indexAxis(got[k], 0, s) as NDArray).toTyped() as Float32Array;
        const at = firstBitDifference(mine, g[k].toTyped() as Float32Array);
        if (at !== -1) t.fail(`example ${s} ${k}: differs from jit(grad) of the example at element ${at}`);
      }
    }
    t.pass('bit-identical to jit(grad) per example');

    // More calls, plain and with the previous results donated back (their memory then recycled):
    // the first call's results must not change, and the later results must be right.
    const donating = jit(
      (p: Params, x: Tensor, y: Tensor, _previous: Grads) => vmap(grad(exampleLoss), { inAxes: [null, 0, 0] })(p, x, y),
      {
        donateArgnums: [3],
      },
    );
    let previous = perExample(params, makeBatch().X, makeBatch().Y) as unknown as Grads;
    for (let call = 0; call < 3; call++) {
      const b = makeBatch();
      const donatedW1 = previous.W1.data;
      const g = donating(params, b.X, b.Y, previous) as unknown as Grads;
      // Large enough to be pooled (256 elements and up): the donated memory holds the new result.
      if (batch * inputs * hidden >= 256) t.equal(g.W1.data, donatedW1, `donating call ${call}: W1 written into the donated buffer`);
      const want = float64Grads(W1, b1, W2, b2, b.x, b.y, sizes);
      const w1 = g.W1.toTyped();
      let worst = 0;
      for (let i = 0; i < w1.length; i++) worst = Math.max(worst, Math.abs(w1[i] - want.W1[i]));
      t.ok(worst <= 1e-5, `donating call ${call}: W1 gradients right (worst ${worst})`);
      previous = g;
    }
    // The same with the previous results disposed (dispose) instead of donated: their memory holds
    // the next call's gradients, which are right; the first results, never disposed, stay intact.
    let last = perExample(params, makeBatch().X, makeBatch().Y) as unknown as Grads;
    for (let call = 0; call < 3; call++) {
      const b = makeBatch();
      const disposedW1 = last.W1.data;
      dispose(last);
      t.throws(() => last.W1.toTyped(), /toTyped: .* was disposed/, `disposing call ${call}: the disposed gradients are deleted`);
      const g = perExample(params, b.X, b.Y) as unknown as Grads;
      if (batch * inputs * hidden >= 256) t.equal(g.W1.data, disposedW1, `disposing call ${call}: W1 written into the disposed buffer`);
      const want = float64Grads(W1, b1, W2, b2, b.x, b.y, sizes);
      for (const k of LEAVES) {
        const got1 = g[k].toTyped();
        let worst = 0;
        for (let i = 0; i < got1.length; i++) worst = Math.max(worst, Math.abs(got1[i] - want[k][i]));
        t.ok(worst <= 1e-5, `disposing call ${call}: ${k} gradients right (worst ${worst})`);
      }
      last = g;
    }
    for (const k of LEAVES)
      t.equal(firstBitDifference(got[k].toTyped() as Float32Array, kept[k]), -1, `${k}: the first results are untouched`);
  });
}
