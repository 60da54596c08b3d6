/**
 * Reductions as WebAssembly SIMD kernels (core/backend/wasm/reduce.ts): sum / max / min over the
 * axes a training step reduces (batch, time, both), alone and after a fused prologue, on inputs
 * with NaN, +-0, +-Inf and values whose float32 sums round differently from float64 ones; each
 * result is bit-identical to the JS loop (float64 accumulation in order, one rounding) and, for
 * sums, to a float64 reference computed here.
 */
import fc from 'fast-check';
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { fromTyped, jit, max, min, reshape, slice, sum, transpose, type NDArray, type Tensor } from '../../core/index.js';
import { setElementwiseBackend } from '../../core/backend/wasm/elementwise.js';
import { wasmReduceStats } from '../../core/backend/wasm/reduce.js';
import { wasmSimdAvailable } from '../../core/backend/wasm/index.js';

/** `op` over `axes` of x (of x * x - 1 with `prologue`) by the JS loop and by WebAssembly: equal bits, and whether WebAssembly ran. */
function jsAndWasm(op: 'sum' | 'max' | 'min', prologue: boolean, axes: number[], x: NDArray): { same: boolean; wasmRan: boolean } {
  const reduce = op === 'sum' ? sum : op === 'max' ? max : min;
  const f = (v: Tensor): Tensor => reduce(prologue ? v.mul(v).sub(1) : v, axes);
  const js = run('js', f, x);
  const wasm = run('wasm-simd', f, x);
  return { same: js.calls === 0 && sameBits(js.out, wasm.out), wasmRan: wasm.calls > 0 };
}

/** Values over ten decades of either sign, each replaced by a special one (NaN, ±0, ±inf, near-max, subnormal) with probability `special`. */
function specialData(seed: number, special: number, length: number): Float32Array {
  const next = rng(seed);
  const specials = [NaN, -0, 0, Infinity, -Infinity, 3e38, 1e-40];
  return Float32Array.from({ length }, () =>
    next() < special ? specials[Math.floor(next() * specials.length)] : (next() - 0.5) * 10 ** Math.floor(next() * 8 - 2),
  );
}

const simd = wasmSimdAvailable();
const sameBits = (a: ArrayLike<number>, b: ArrayLike<number>): boolean =>
  a.length === b.length && Array.from(a).every((x, i) => Object.is(x, b[i]) || (Number.isNaN(x) && Number.isNaN(b[i])));

function run(backend: 'js' | 'wasm-simd', f: (x: Tensor) => Tensor, x: NDArray): { out: Float32Array; calls: number } {
  setElementwiseBackend(backend);
  const before = wasmReduceStats.calls;
  const out = (jit(f)(x) as NDArray).toTyped() as Float32Array;
  const calls = wasmReduceStats.calls - before;
  setElementwiseBackend('auto');
  return { out, calls };
}

/**
 * Draws `numRuns` cases from `cases` (seeded); `check` reduces each by the JS loop and by
 * WebAssembly and says whether they agree and whether WebAssembly ran. Fails on the first
 * disagreement; returns how many cases WebAssembly took (each test says how many it must).
 */
function wasmRunsOver<T>(
  cases: fc.Arbitrary<T>,
  check: (c: T) => { same: boolean; wasmRan: boolean },
  numRuns: number,
  seed: number,
): number {
  let wasmRuns = 0;
  fc.assert(
    fc.property(cases, (c) => {
      const { same, wasmRan } = check(c);
      if (wasmRan) wasmRuns++;
      return same;
    }),
    { numRuns, seed },
  );
  return wasmRuns;
}

t.test('bit-identical to the JS loop over shapes, axes, ops and special values', { skip: !simd && 'no WebAssembly SIMD' }, async (t) => {
  const wasmRuns = wasmRunsOver(
    fc.tuple(
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 4, max: 70 }),
      fc.constantFrom('sum', 'max', 'min'),
      fc.constantFrom('time', 'batch', 'both'),
      fc.boolean(),
      fc.double({ min: 0, max: 0.05, noNaN: true }),
      fc.integer(),
    ),
    ([b, n, k, op, over, prologue, special, seed]) => {
      const x = fromTyped(specialData(seed, special, b * n * k), [b, n, k]);
      return jsAndWasm(op, prologue, over === 'time' ? [1] : over === 'batch' ? [0] : [0, 1], x);
    },
    150,
    77,
  );
  t.ok(wasmRuns >= 75, `WebAssembly reduced in ${wasmRuns} of 150 cases`);
});

t.test('a sum over time equals a float64 reference rounded once', { skip: !simd && 'no WebAssembly SIMD' }, async (t) => {
  const [b, n, k] = [32, 10, 130];
  const next = rng(3);
  // Terms of very different magnitudes: a float32 running sum would lose the small ones.
  const data = Float32Array.from({ length: b * n * k }, (_, i) => (i % 3 === 0 ? 1e8 * (next() - 0.5) : next()));
  const { out, calls } = run('wasm-simd', (v) => sum(v, 1), fromTyped(data, [b, n, k]));
  t.ok(calls > 0, 'WebAssembly ran');
  let ok = true;
  for (let i = 0; i < b && ok; i++) {
    for (let c = 0; c < k && ok; c++) {
      let acc = 0;
      for (let j = 0; j < n; j++) acc += data[(i * n + j) * k + c];
      ok = Object.is(Math.fround(acc), out[i * k + c]);
    }
  }
  t.ok(ok, 'every output is the float64 sum rounded to float32');
});

t.test(
  'rows form (reduced axes innermost; a full reduction stays in JS): bit-identical to the JS loop',
  { skip: !simd && 'no WebAssembly SIMD' },
  async (t) => {
    const wasmRuns = wasmRunsOver(
      fc.tuple(
        fc.integer({ min: 1, max: 11 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 70 }),
        fc.constantFrom('sum', 'max', 'min'),
        fc.constantFrom('last', 'inner', 'all', 'outer-strided'),
        fc.boolean(),
        fc.double({ min: 0, max: 0.05, noNaN: true }),
        fc.integer(),
      ),
      ([b, n, k, op, over, prologue, special, seed]) => {
        const x = fromTyped(specialData(seed, special, b * n * k), [b, n, k]);
        // 'outer-strided': the kept axis is the last one but reduced over the first two, whose
        // stride is not 1 only when k > 1; b * n outputs of k terms when reducing the last axis.
        const axes = over === 'last' ? [2] : over === 'inner' ? [1, 2] : over === 'all' ? [0, 1, 2] : [0, 1];
        return jsAndWasm(op, prologue, axes, x);
      },
      200,
      78,
    );
    t.ok(wasmRuns >= 60, `WebAssembly reduced in ${wasmRuns} of 200 cases`);
  },
);

t.test(
  'rows form: a per-example squared norm equals a float64 reference rounded once',
  { skip: !simd && 'no WebAssembly SIMD' },
  async (t) => {
    const [b, n, k] = [7, 33, 29];
    const next = rng(4);
    const data = Float32Array.from({ length: b * n * k }, (_, i) => (i % 5 === 0 ? 1e4 * (next() - 0.5) : next() - 0.5));
    const { out, calls } = run('wasm-simd', (v) => sum(v.mul(v), [1, 2]), fromTyped(data, [b, n, k]));
    t.ok(calls > 0, 'WebAssembly ran');
    let ok = true;
    for (let i = 0; i < b && ok; i++) {
      let acc = 0;
      for (let j = 0; j < n * k; j++) acc += Math.fround(data[i * n * k + j] * data[i * n * k + j]);
      ok = Object.is(Math.fround(acc), out[i]);
    }
    t.ok(ok, 'every output is the float64 sum of the float32 squares, rounded to float32');
  },
);

t.test(
  'two reduced axes that do not merge (a time-major cotangent summed over batch and time)',
  { skip: !simd && 'no WebAssembly SIMD' },
  async (t) => {
    const wasmRuns = wasmRunsOver(
      fc.tuple(
        fc.integer({ min: 2, max: 12 }),
        fc.integer({ min: 2, max: 40 }),
        fc.integer({ min: 4, max: 70 }),
        fc.constantFrom('sum', 'max', 'min'),
        fc.boolean(),
        fc.double({ min: 0, max: 0.05, noNaN: true }),
        fc.integer(),
      ),
      ([n, b, k, op, prologue, special, seed]) => {
        const data = specialData(seed, special, n * b * k);
        // Stored [time, batch, units], reduced as [batch, time, units] over batch then time: the
        // reduced strides (units, batch * units) do not merge into one loop.
        const x = fromTyped(data, [n, b, k]);
        const reduce = op === 'sum' ? sum : op === 'max' ? max : min;
        const f = (v: Tensor): Tensor => {
          const bt = transpose(v, [1, 0, 2]);
          return reduce(prologue ? bt.mul(bt).sub(1) : bt, [0, 1]);
        };
        const js = run('js', f, x);
        const wasm = run('wasm-simd', f, x);
        const wasmRan = wasm.calls > 0;
        // Inputs under 256 elements stay on the JS loop; larger ones must take the kernel.
        if (js.calls !== 0 || (!wasmRan && n * b * k >= 256) || !sameBits(js.out, wasm.out)) return { same: false, wasmRan };
        if (op !== 'sum' || prologue) return { same: true, wasmRan };
        // The sum in float64 in the same order (batch outer, time inner), rounded once.
        const same = Array.from({ length: k }, (_, u) => {
          let acc = 0;
          for (let i = 0; i < b; i++) for (let s = 0; s < n; s++) acc += data[(s * b + i) * k + u];
          return Math.fround(acc);
        }).every((r, u) => Object.is(r, wasm.out[u]) || (Number.isNaN(r) && Number.isNaN(wasm.out[u])));
        return { same, wasmRan };
      },
      100,
      78,
    );
    t.ok(wasmRuns >= 80, `WebAssembly reduced in ${wasmRuns} of 100 cases`);
  },
);

t.test(
  'pooling windows (three kept axes: the outermost looped): bit-identical to the JS loop and a float64 reference',
  { skip: !simd && 'no WebAssembly SIMD' },
  async (t) => {
    const wasmRuns = wasmRunsOver(
      fc.tuple(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 4, max: 8 }),
        fc.integer({ min: 16, max: 40 }),
        fc.constantFrom('sum', 'max', 'min'),
        fc.boolean(),
        fc.integer(),
      ),
      ([n, h, w, c, op, prologue, seed]) => {
        // [n, h, 2, w, 2, c] summed over the window axes [2, 4]: kept [n * h, w, c], three axes; the
        // kernel takes the inner two (at least 256 reduced elements a call, as here).
        const x = fromTyped(specialData(seed, 0.02, n * h * 2 * w * 2 * c), [n, h, 2, w, 2, c]);
        return jsAndWasm(op, prologue, [2, 4], x);
      },
      80,
      13,
    );
    t.ok(wasmRuns >= 40, `WebAssembly reduced in ${wasmRuns} of 80 cases`);
    // A float64 reference written here: each output the in-order sum of its four window values.
    const [n, h, w, c] = [3, 4, 5, 16];
    const data = specialData(5, 0, n * h * 2 * w * 2 * c);
    const { out, calls } = run('wasm-simd', (v) => sum(v, [2, 4]), fromTyped(data, [n, h, 2, w, 2, c]));
    t.ok(calls > 0, 'WebAssembly ran');
    const ref: number[] = [];
    for (let a = 0; a < n * h; a++)
      for (let j = 0; j < w; j++)
        for (let k = 0; k < c; k++) {
          let s = 0;
          for (let p = 0; p < 2; p++) for (let q = 0; q < 2; q++) s += data[(((a * 2 + p) * w + j) * 2 + q) * c + k];
          ref.push(Math.fround(s));
        }
    t.ok(sameBits(out, ref), 'equals the float64 reference rounded once');
  },
);

t.test('pooling windows of a cropped map (a view: four kept axes, two looped)', { skip: !simd && 'no WebAssembly SIMD' }, async (t) => {
  // [2, 11, 11, 16] cropped to 10 x 10 and split into 2 x 2 windows without a copy (reshape of a view).
  const data = specialData(9, 0.01, 2 * 11 * 11 * 16);
  const f = (v: Tensor): Tensor => sum(reshape(slice(v, [0, 0, 0, 0], [2, 10, 10, 16]), [2, 5, 2, 5, 2, 16]), [2, 4]);
  const js = run('js', f, fromTyped(data, [2, 11, 11, 16]));
  const wasm = run('wasm-simd', f, fromTyped(data, [2, 11, 11, 16]));
  t.ok(wasm.calls > 0, 'WebAssembly ran');
  t.ok(sameBits(js.out, wasm.out), 'bit-identical to the JS loop');
  const ref: number[] = [];
  for (let b = 0; b < 2; b++)
    for (let i = 0; i < 5; i++)
      for (let j = 0; j < 5; j++)
        for (let k = 0; k < 16; k++) {
          let s = 0;
          for (let p = 0; p < 2; p++) for (let q = 0; q < 2; q++) s += data[((b * 11 + 2 * i + p) * 11 + 2 * j + q) * 16 + k];
          ref.push(Math.fround(s));
        }
  t.ok(sameBits(wasm.out, ref), 'equals the float64 reference rounded once');
});
