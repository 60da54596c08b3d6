/**
 * Numerical edge cases (issue 16): NaN propagates through relu, maximum/minimum (a NaN operand
 * wins) and their reductions on every CPU path (eager, the fused JS loops, the WebAssembly SIMD
 * kernels); relu's bits for every other input are those of the old `x > 0 ? x : 0`; gradients at
 * 0 and at the kinks against JAX's values; softplus accurate in float32 (against float64
 * log1p(exp(x))), with derivative 0.5 and second derivative 0.25 at 0; the log1p primitive; and
 * logsumexp with infinite entries.
 */
import t from 'tap';
import {
  abs,
  exp,
  floor,
  fromTyped,
  grad,
  jit,
  log,
  log1p,
  logsumexp,
  max,
  maximum,
  min,
  minimum,
  mul,
  pow,
  relu,
  sigmoid,
  sign,
  softplus,
  sqrt,
  sum,
  tanh,
  type NDArray,
  type Tensor,
} from '../../core/index.js';
import { setElementwiseBackend } from '../../core/backend/wasm/elementwise.js';

t.teardown(() => setElementwiseBackend('auto'));

const f32 = (v: readonly number[]): NDArray => fromTyped(Float32Array.from(v), [v.length], 'float32');
const f64 = (v: readonly number[]): NDArray => fromTyped(Float64Array.from(v), [v.length], 'float64');
const values = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);
const show = (v: number): string => (Object.is(v, -0) ? '-0' : String(v));

/** Special values repeated to 1024 elements, so a jitted program is large enough for the SIMD kernels. */
const SPECIAL = [NaN, -1, -0, 0, 1.5, Infinity, -Infinity, 1e-45, -1e-45, 3.4e38, -3.4e38, 7];
const big = (base: readonly number[], shift = 0): number[] => Array.from({ length: 1024 }, (_, i) => base[(i + shift) % base.length]);

/** Runs `f` eagerly, jitted on the JS loops, and jitted with the WebAssembly kernels allowed. */
function everyPath(f: (...xs: Tensor[]) => Tensor, ...xs: Tensor[]): [string, number[]][] {
  const out: [string, number[]][] = [['eager', values(f(...xs))]];
  setElementwiseBackend('js');
  out.push(['jit, JS loops', values(jit(f)(...xs) as Tensor)]);
  setElementwiseBackend('auto');
  out.push(['jit, WebAssembly', values(jit(f)(...xs) as Tensor)]);
  return out;
}

function sameValues(t: Tap, got: number[], want: number[], msg: string): void {
  const bad = got.findIndex((g, i) => !(Object.is(g, want[i]) || (Number.isNaN(g) && Number.isNaN(want[i]))));
  t.equal(bad, -1, bad < 0 ? msg : `${msg}: element ${bad} is ${show(got[bad])}, expected ${show(want[bad])}`);
}
type Tap = Pick<typeof t, 'equal'>;

t.test('relu: NaN stays NaN; every other input gives the bits of x > 0 ? x : +0', async (t) => {
  const x = big(SPECIAL);
  const want = x.map((v) => (Number.isNaN(v) ? NaN : Math.fround(v) > 0 ? Math.fround(v) : 0));
  for (const [path, got] of everyPath((a) => relu(a), f32(x))) sameValues(t, got, want, `relu on ${path}`);
  sameValues(t, values(relu(f64([NaN, -0, 2]))), [NaN, 0, 2], 'relu on float64');
  t.equal(
    (grad((a: Tensor) => sum(relu(a)))(f32([NaN])) as Tensor).toTyped()[0],
    1,
    'a NaN input passes its cotangent (the select keeps x)',
  );
});

t.test('maximum / minimum and their reductions: a NaN operand wins on every path', async (t) => {
  const a = big(SPECIAL);
  const b = big(SPECIAL, 5);
  const pick = (x: number, y: number, gt: boolean): number => {
    const [fx, fy] = [Math.fround(x), Math.fround(y)];
    if (Number.isNaN(fx) || Number.isNaN(fy)) return NaN;
    return (gt ? fx > fy : fx < fy) ? fx : fy;
  };
  for (const [path, got] of everyPath((p, q) => maximum(p, q), f32(a), f32(b)))
    sameValues(
      t,
      got,
      a.map((x, i) => pick(x, b[i], true)),
      `maximum on ${path}`,
    );
  for (const [path, got] of everyPath((p, q) => minimum(p, q), f32(a), f32(b)))
    sameValues(
      t,
      got,
      a.map((x, i) => pick(x, b[i], false)),
      `minimum on ${path}`,
    );
  const rows = fromTyped(Float32Array.from(big([1, 2, NaN, 3, 4, 5, 6, 7])), [128, 8], 'float32');
  for (const [path, got] of everyPath((r) => max(r, 1), rows))
    t.ok(got.every(Number.isNaN), `max over a row holding NaN is NaN on ${path}`);
  for (const [path, got] of everyPath((r) => min(r, 1), rows))
    t.ok(got.every(Number.isNaN), `min over a row holding NaN is NaN on ${path}`);
});

/** d/dx f at x (float64), through grad. */
const derivative = (f: (x: Tensor) => Tensor, x: number): number => (grad((a: Tensor) => sum(f(a)))(f64([x])) as Tensor).toTyped()[0];
const second = (f: (x: Tensor) => Tensor, x: number): number =>
  (grad((a: Tensor) => sum(grad((b: Tensor) => sum(f(b)))(a) as Tensor))(f64([x])) as Tensor).toTyped()[0];

t.test("gradients at 0 and at the kinks, against JAX's values", async (t) => {
  // JAX: relu'(0) = 0 (jax.nn.relu's custom JVP); maximum/minimum split ties evenly (0.5 each);
  // sign and floor have zero derivative; sqrt'(0) = inf; log'(0) = inf; softplus'(0) = 0.5.
  const cases: [string, (x: Tensor) => Tensor, number, number][] = [
    ['relu', relu, 0, 0],
    ['relu', relu, -0, 0],
    ['maximum(x, 0)', (x) => maximum(x, 0), 0, 0.5],
    ['minimum(x, 0)', (x) => minimum(x, 0), 0, 0.5],
    ['maximum(x, x)', (x) => maximum(x, x), 1, 1],
    ['sign', sign, 0, 0],
    ['floor', floor, 0, 0],
    ['floor', floor, 2, 0],
    ['sqrt', sqrt, 0, Infinity],
    ['log', log, 0, Infinity],
    ['log1p', log1p, -1, Infinity],
    ['log1p', log1p, 0, 1],
    ['exp', exp, 0, 1],
    ['tanh', tanh, 0, 1],
    ['sigmoid', sigmoid, 0, 0.25],
    ['softplus', softplus, 0, 0.5],
    ['softplus', softplus, -0, 0.5],
    ['pow(x, 2)', (x) => pow(x, 2), 0, 0],
    ['x * x', (x) => mul(x, x), 0, 0],
    // spiketrace keeps d|x| = sign(x), 0 at 0 (PyTorch's choice; JAX's abs JVP gives 1 there).
    ['abs', abs, 0, 0],
  ];
  for (const [name, f, x, want] of cases) t.equal(show(derivative(f, x)), show(want), `${name}'(${show(x)}) = ${show(want)}`);
  t.equal(second(softplus, 0), 0.25, "softplus''(0) = 0.25 (logistic'(0))");
  t.equal(second(sigmoid, 0), 0, "sigmoid''(0) = 0");
  for (const x of [-30, -3, -0.5, 0.5, 3, 30]) {
    const s = 1 / (1 + Math.exp(-x));
    t.ok(Math.abs(derivative(softplus, x) - s) <= 1e-15, `softplus'(${x}) = logistic(${x})`);
    t.ok(Math.abs(second(softplus, x) - s * (1 - s)) <= 1e-15, `softplus''(${x}) = s (1 - s)`);
  }
});

t.test('softplus in float32: within 2 ulp of the float64 value, for very negative x too; infinities and NaN', async (t) => {
  const xs = [-200, -104, -90, -40, -17, -15, -5, -1, -1e-3, -1e-8, 0, 1e-8, 1e-3, 1, 5, 15, 17, 40, 90, 200];
  const ref = xs.map((x) => (x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x))));
  for (const [path, got] of everyPath((a) => softplus(a), f32(xs))) {
    const worst = got.map((g, i) => {
      const r = Math.fround(ref[i]);
      const ulp = r === 0 ? 1.4e-45 : Math.abs(Math.fround(r * (1 + 2 ** -23)) - r) || 1.4e-45;
      return Math.abs(g - ref[i]) / ulp;
    });
    const i = worst.indexOf(Math.max(...worst));
    t.ok(worst[i] <= 2, `${path}: worst at x = ${xs[i]}: ${got[i]} vs ${ref[i]} (${worst[i].toFixed(2)} ulp)`);
  }
  sameValues(t, values(softplus(f32([Infinity, -Infinity, NaN]))), [Infinity, 0, NaN], 'softplus(inf, -inf, NaN)');
  t.equal(derivative(softplus, Infinity), 1, "softplus'(inf) = 1, not NaN");
  t.equal(derivative(softplus, -Infinity), 0, "softplus'(-inf) = 0");
});

t.test('log1p: exact for tiny x where log(1 + x) is 0; float32 and float64; fused', async (t) => {
  const xs = [1e-10, -1e-10, 1e-30, 0.5, -0.5, 3, -1, -2, NaN, Infinity];
  const want = xs.map((x) => Math.fround(Math.log1p(Math.fround(x))));
  for (const [path, got] of everyPath((a) => log1p(a), f32(xs))) sameValues(t, got, want, `log1p on ${path}`);
  sameValues(t, values(log1p(f64([1e-300, 2]))), [Math.log1p(1e-300), Math.log1p(2)], 'log1p on float64');
});

t.test('logsumexp with infinite entries: +inf wins (not inf - inf = NaN), all -inf gives -inf, NaN propagates', async (t) => {
  const rows = fromTyped(Float32Array.from([Infinity, 0, -Infinity, -Infinity, NaN, 0, 1, 2]), [4, 2], 'float32');
  const want = [Infinity, -Infinity, NaN, 2 + Math.log1p(Math.exp(-1))];
  for (const [path, got] of everyPath((r) => logsumexp(r, -1), rows)) {
    sameValues(t, got.slice(0, 3), want.slice(0, 3), `${path}: infinite rows`);
    t.ok(Math.abs(got[3] - want[3]) < 1e-6, `${path}: finite row ${got[3]} vs ${want[3]}`);
  }
});
