/**
 * The gpujs backend agrees with the CPU on issue 16's edge cases: maximum / minimum and their
 * reductions return NaN when an operand is NaN (GLSL's own max/min leave that undefined), relu
 * keeps NaN, and the log1p primitive (GLSL has none) is within a few float32 ulp of Math.log1p,
 * including arguments so small that log(1 + x) would round to 0. Eager and jitted.
 */
import t from 'tap';
import { gpuBackendOrSkip } from './fixtures/gpu.js';
import { fromTyped, jit, log1p, max, maximum, min, minimum, relu, softplus, withBackend, type Tensor } from '../../core/index.js';

const enabled = gpuBackendOrSkip();
const f32 = (v: readonly number[]): Tensor => fromTyped(Float32Array.from(v), [v.length], 'float32');
const vals = (x: Tensor): number[] => Array.from(x.toTyped() as Float32Array);

if (enabled) {
  t.test('NaN wins in maximum / minimum / max / min and survives relu on the GPU', async (t) => {
    const a = f32([NaN, 1, NaN, -2, 3, 0]);
    const b = f32([1, NaN, NaN, 5, -1, 0]);
    for (const [how, run] of [
      ['eager', <T>(f: () => T) => f()],
      ['jit', <T>(f: () => T) => f()],
    ] as const) {
      const wrap = (f: (...x: Tensor[]) => Tensor) => (how === 'jit' ? (jit(f) as (...x: Tensor[]) => Tensor) : f);
      withBackend('gpujs', () =>
        run(() => {
          const mx = vals(wrap((p, q) => maximum(p, q))(a, b));
          const mn = vals(wrap((p, q) => minimum(p, q))(a, b));
          t.same(mx.slice(0, 3).map(Number.isNaN), [true, true, true], `${how}: maximum with a NaN operand is NaN`);
          t.same(mx.slice(3), [5, 3, 0], `${how}: maximum otherwise`);
          t.same(mn.slice(0, 3).map(Number.isNaN), [true, true, true], `${how}: minimum with a NaN operand is NaN`);
          t.same(mn.slice(3), [-2, -1, 0], `${how}: minimum otherwise`);
          const r = vals(wrap((p) => relu(p))(a));
          t.ok(Number.isNaN(r[0]) && r[1] === 1 && r[3] === 0, `${how}: relu keeps NaN`);
          const rows = fromTyped(Float32Array.of(1, NaN, 3, 4, 5, 6), [2, 3], 'float32');
          const rmax = vals(wrap((p) => max(p, 1))(rows));
          const rmin = vals(wrap((p) => min(p, 1))(rows));
          t.ok(Number.isNaN(rmax[0]) && rmax[1] === 6, `${how}: max over a row holding NaN is NaN (${rmax})`);
          t.ok(Number.isNaN(rmin[0]) && rmin[1] === 4, `${how}: min over a row holding NaN is NaN (${rmin})`);
        }),
      );
    }
  });

  t.test('log1p and softplus on the GPU against Math.log1p', async (t) => {
    const xs = [1e-10, -1e-10, 1e-6, 0.25, -0.5, 3, 100, 0];
    for (const how of ['eager', 'jit'] as const) {
      const got = withBackend('gpujs', () => vals(how === 'jit' ? (jit((x: Tensor) => log1p(x))(f32(xs)) as Tensor) : log1p(f32(xs))));
      got.forEach((g, i) => {
        const ref = Math.log1p(Math.fround(xs[i]));
        t.ok(Math.abs(g - ref) <= 4e-7 * Math.abs(ref) + 1e-45, `${how}: log1p(${xs[i]}) = ${g} vs ${ref}`);
      });
    }
    const sp = withBackend('gpujs', () => vals(softplus(f32([-20, 0, 20]))));
    const ref = [Math.log1p(Math.exp(-20)), Math.LN2, 20 + Math.log1p(Math.exp(-20))];
    sp.forEach((g, i) => t.ok(Math.abs(g - ref[i]) <= 1e-5 * Math.abs(ref[i]), `softplus: ${g} vs ${ref[i]}`));
  });
}
