/**
 * cond, whileLoop and vmap on the gpujs backend: jitted programs holding cond and while_loop
 * equations (run through the CPU kernels by the gpu compiler) and a vmapped per-example gradient
 * give the CPU backend's results.
 */
import t from 'tap';
import {
  add,
  array,
  cond,
  grad,
  greater,
  jit,
  less,
  matmul,
  mul,
  sub,
  sum,
  tanh,
  vmap,
  whileLoop,
  withBackend,
  type Tensor,
} from '../../core/index.js';
import { gpuBackendOrSkip } from './fixtures/gpu.js';

if (gpuBackendOrSkip()) {
  const x = array([
    [0.5, -1, 2],
    [1.5, 0.25, -0.75],
  ]);
  const w = array([
    [0.3, -0.2],
    [0.1, 0.4],
    [-0.5, 0.6],
  ]);
  const program = (x: Tensor, w: Tensor): Tensor => {
    const h = cond(
      greater(sum(x), 0),
      (a: Tensor) => tanh(matmul(a, w)),
      (a: Tensor) => sub(matmul(a, w), 1),
      x,
    );
    return whileLoop(
      (v: Tensor) => less(sum(v), 10),
      (v: Tensor) => add(mul(v, 2), 1),
      h,
    );
  };
  const perExample = (x: Tensor, w: Tensor) =>
    vmap(
      grad((w: Tensor, xi: Tensor) => sum(tanh(matmul(xi, w)))),
      { inAxes: [null, 0] },
    )(w, x) as Tensor;
  for (const [name, f] of [
    ['cond and whileLoop', program],
    ['vmap(grad)', perExample],
  ] as const) {
    const cpu = withBackend('cpu', () => jit(f)(x, w)).toTyped();
    const gpu = withBackend('gpujs', () => jit(f)(x, w)).toTyped();
    t.ok(
      cpu.every((v, i) => Math.abs(v - gpu[i]) <= 1e-5 * Math.max(1, Math.abs(v))),
      `${name}: gpujs matches cpu`,
      { cpu: Array.from(cpu), gpu: Array.from(gpu) },
    );
  }
}
