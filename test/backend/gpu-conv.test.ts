/**
 * The gpu.js conv kernel against the CPU backend (float32 tolerances): eager convolutions over
 * strides, paddings, dilations, input dilation (the transposed convolutions of the VJP) and
 * groups, on contiguous and transposed views; and jit(grad) of a small CNN loss (conv, relu,
 * max pooling, dense), whose compiled program runs the forward and both gradient convolutions as
 * gpu kernels. Needs `gl` and an X display (`xvfb-run -a`); skips without them.
 */
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { gpuBackendOrSkip } from './fixtures/gpu.js';
import { expectAllClose, type Tap } from './fixtures/compare.js';
import {
  convGeneral,
  fromTyped,
  grad,
  jit,
  logSoftmax,
  matmul,
  maxPool2d,
  mean,
  mul,
  relu,
  reshape,
  sum,
  transpose,
  withBackend,
  type NDArray,
  type Tensor,
} from '../../core/index.js';

const enabled = gpuBackendOrSkip();

function rand(shape: number[], seed: number): NDArray {
  const next = rng(seed);
  return fromTyped(
    Float32Array.from({ length: shape.reduce((a, c) => a * c, 1) }, () => next() * 2 - 1),
    shape,
  );
}

if (enabled) {
  t.test('eager conv: gpujs matches cpu', (t) => {
    const cases: { x: number[]; w: number[]; opts: Parameters<typeof convGeneral>[2] }[] = [
      { x: [2, 9, 8, 3], w: [3, 3, 3, 4], opts: {} },
      { x: [2, 9, 8, 4], w: [3, 2, 2, 6], opts: { strides: [2, 1], padding: 'same', groups: 2 } },
      {
        x: [1, 7, 7, 2],
        w: [3, 3, 2, 3],
        opts: {
          dilation: 2,
          padding: [
            [1, 2],
            [0, -1],
          ],
        },
      },
      { x: [2, 5, 6, 3], w: [2, 3, 3, 2], opts: { lhsDilation: [2, 3], strides: [1, 2], padding: 'same' } },
      { x: [3, 11, 5], w: [4, 5, 2], opts: { strides: 3, padding: 'causal' } },
    ];
    cases.forEach((c, i) => {
      const x = rand(c.x, 10 + i);
      const w = rand(c.w, 20 + i);
      const cpu = convGeneral(x, w, c.opts);
      const gpu = withBackend('gpujs', () => convGeneral(x, w, c.opts));
      expectAllClose(t as unknown as Tap, gpu, cpu, `case ${i} ${JSON.stringify(c)}`, 2e-5, 2e-6);
    });
    const xT = transpose(rand([2, 3, 8, 9], 40), [0, 3, 2, 1]);
    const w = rand([3, 3, 3, 5], 41);
    expectAllClose(
      t as unknown as Tap,
      withBackend('gpujs', () => convGeneral(xT, w, { padding: 'same' })),
      convGeneral(xT, w, { padding: 'same' }),
      'transposed input view',
      2e-5,
      2e-6,
    );
    t.end();
  });

  t.test('jit(grad) of a small CNN: gpujs matches cpu', (t) => {
    const params = { k: rand([3, 3, 1, 4], 1), d: rand([4 * 4 * 4, 10], 2) };
    const x = rand([8, 10, 10, 1], 3);
    const y = fromTyped(
      Float32Array.from({ length: 80 }, (_, i) => (i % 10 === Math.floor(i / 10) % 10 ? 1 : 0)),
      [8, 10],
    );
    const loss = (p: typeof params, xb: Tensor, yb: Tensor): Tensor => {
      const h = maxPool2d(relu(convGeneral(xb, p.k)), 2);
      return mean(sum(mul(yb, logSoftmax(matmul(reshape(h, [8, 64]), p.d))), -1));
    };
    const step = jit((p: typeof params, xb: Tensor, yb: Tensor) => grad(loss)(p, xb, yb));
    const cpu = step(params, x, y) as { k: Tensor; d: Tensor };
    const gpu = withBackend('gpujs', () => step(params, x, y)) as { k: Tensor; d: Tensor };
    expectAllClose(t as unknown as Tap, gpu.k, cpu.k, 'kernel gradient', 1e-4, 1e-5);
    expectAllClose(t as unknown as Tap, gpu.d, cpu.d, 'dense gradient', 1e-4, 1e-5);
    t.end();
  });
}
