/** Lowpass and Alpha filters: step responses, DC gain, training identity, learning tau. */
import t from 'tap';
import { array, broadcastTo, mean, random, square, sub, valueAndGrad, type Tensor, type Tree } from '../../core/index.js';
import { adam, applyUpdates } from '../../nn/index.js';
import { alpha, lowpass } from '../../spiking/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>, Number);

function runFilter(layer: ReturnType<typeof lowpass>, x: Tensor, training = false) {
  const init = layer.init(random.key(0), x.shape.slice(1));
  return layer.apply(init.params, x, { training }, init.state);
}

t.test('step responses match the closed forms', async (t) => {
  const K = 60;
  for (const dt of [0.001, 0.005, 0.02]) {
    for (const tau of [0.01, 0.05]) {
      for (const dtype of ['float32', 'float64'] as const) {
        const x = broadcastTo(array([[[1]]], { dtype }), [1, K, 1]);
        for (const [name, layer, resp] of [
          ['lowpass', lowpass(tau, { dt }), (s: number) => 1 - Math.exp(-s / tau)],
          ['alpha', alpha(tau, { dt }), (s: number) => 1 - Math.exp(-s / tau) * (1 + s / tau)],
        ] as const) {
          const y = runFilter(layer, x).y;
          const tol = y.dtype === 'float64' ? 1e-6 : 1e-5;
          const v = vals(y);
          let worst = 0;
          let at = -1;
          for (let k = 1; k <= K; k++) {
            const e = Math.abs(v[k - 1] - resp(k * dt));
            if (e > worst) {
              worst = e;
              at = k;
            }
          }
          t.ok(worst <= tol, `${name} dt=${dt} tau=${tau} (${y.dtype}): max err ${worst} at step ${at} (tol ${tol})`);
          t.equal(y.dtype, dtype, 'the filter runs in the input precision');
        }
      }
    }
  }
});

t.test('float64 input to a filter runs in float64', async (t) => {
  const x = broadcastTo(array([[[1]]], { dtype: 'float64' }), [1, 5, 1]);
  t.equal(runFilter(lowpass(0.05, { dt: 0.01 }), x).y.dtype, 'float64');
  t.equal(runFilter(alpha(0.05, { dt: 0.01 }), x).y.dtype, 'float64');
});

t.test('unit DC gain', async (t) => {
  const x = broadcastTo(array([[[2.5, -1.0]]]), [1, 400, 2]);
  for (const layer of [lowpass(0.05, { dt: 0.01, returnSequences: false }), alpha(0.05, { dt: 0.01, returnSequences: false })]) {
    const v = vals(runFilter(layer, x).y);
    t.ok(Math.abs(v[0] - 2.5) < 1e-4 && Math.abs(v[1] + 1) < 1e-4, `${layer.kind} converges to the input: ${v}`);
  }
});

t.test('identity in training when applyDuringTraining is false', async (t) => {
  const x = array([
    [
      [1, 2],
      [3, -4],
      [0.5, 7],
    ],
  ]);
  for (const layer of [lowpass(0.05, { dt: 0.01, applyDuringTraining: false }), alpha(0.05, { dt: 0.01, applyDuringTraining: false })]) {
    t.same(vals(runFilter(layer, x, true).y), vals(x), `${layer.kind}: identity in training`);
    t.notSame(vals(runFilter(layer, x, false).y), vals(x), `${layer.kind}: filters in inference`);
  }
});

t.test('lowpass learns a target tau by gradient descent', async (t) => {
  const T = 100,
    dt = 0.01;
  const u = random.normal(random.key(3), [4, T, 1]);
  const target = runFilter(lowpass(0.05, { dt }), u).y;
  const layer = lowpass(0.2, { dt });
  const init = layer.init(random.key(0), [T, 1]);
  const opt = adam(0.01);
  const step = (params: Tree, optState: Tree) => {
    const [loss, g] = valueAndGrad((p: Tree) => mean(square(sub(layer.apply(p as never, u, { training: true }, init.state).y, target))))(
      params,
    ) as [Tensor, Tree];
    const gt = {
      tau: (g as Record<string, Tensor>).tau,
      initialLevel: sub((g as Record<string, Tensor>).initialLevel, (g as Record<string, Tensor>).initialLevel),
    };
    const [upd, next] = opt.update(gt, optState as Tree[], params);
    return { params: applyUpdates(params, upd), optState: next, loss };
  };
  let params: Tree = init.params;
  let optState: Tree = opt.init(params);
  for (let i = 0; i < 200; i++) ({ params, optState } = step(params, optState));
  const tau = vals((params as Record<string, Tensor>).tau)[0];
  t.ok(Math.abs(tau - 0.05) / 0.05 < 0.1, `learned tau ${tau} within 10% of 0.05`);
});
