/**
 * Whole scans as one WebAssembly SIMD kernel (core/backend/wasm/scan.ts): a scan whose body is one
 * float32 elementwise group runs with its time loop inside the kernel. Checked here:
 *   - the integrate-and-fire update of SpikingActivation (v += relu(x) dt; n = floor(v); v -= n)
 *     against a float32 reference loop written in this test from the formula, NaN and infinities
 *     included;
 *   - bit-identity with the step-by-step path (the kernel off) on random bodies, lengths,
 *     directions, layouts (x broadcast over time, transposed xs) and special values, forward and
 *     through grad (reverse scans, a scalar carry for the cotangent of a scalar const, literal
 *     carries), eagerly and under jit;
 *   - that the kernel actually ran where it should, and that bodies it cannot run (a matmul in the
 *     body, a state whose size is not a multiple of 4) still give the same results step by step.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  add,
  broadcastTo,
  customVjp,
  div,
  floor,
  fromTyped,
  grad,
  jit,
  lessEqual,
  matmul,
  maximum,
  mul,
  relu,
  scan,
  slice,
  sub,
  sum,
  transpose,
  where,
  zerosLike,
  type NDArray,
  type Tensor,
} from '../../core/index.js';
import { setWasmScan, wasmScanStats } from '../../core/backend/wasm/scan.js';
import { wasmSimdAvailable } from '../../core/backend/wasm/index.js';
import { firstBitDifference } from './fixtures/compare.js';
import { rng } from './fixtures/rng.js';

const f32 = (x: Tensor): Float32Array => (x as NDArray).toTyped() as Float32Array;

/** Runs `f` with the whole-scan kernel on and off; returns both results and the kernel calls made with it on. */
function bothPaths<T>(f: () => T): { on: T; off: T; calls: number } {
  const before = wasmScanStats.calls;
  const on = f();
  const calls = wasmScanStats.calls - before;
  setWasmScan(false);
  try {
    return { on, off: f(), calls };
  } finally {
    setWasmScan(true);
  }
}

function sameTensors(t0: Pick<typeof t, 'equal'>, a: readonly Tensor[], b: readonly Tensor[], msg: string): void {
  t0.equal(a.length, b.length, `${msg}: count`);
  a.forEach((x, i) => {
    t0.equal(firstBitDifference(f32(x), f32(b[i])), -1, `${msg}: output ${i} bit-identical`);
  });
}

/** The integrate-and-fire step with a straight-through surrogate (custom VJP), as the spiking layer writes it. */
const fire = customVjp(
  (x: Tensor, v: Tensor, dt: Tensor): Tensor[] => {
    const nv = add(v, mul(relu(x), dt));
    const n = floor(nv);
    return [div(n, dt), sub(nv, n)];
  },
  (x: Tensor, v: Tensor, dt: Tensor) => {
    const nv = add(v, mul(relu(x), dt));
    const n = floor(nv);
    return [
      [div(n, dt), sub(nv, n)],
      [x, dt],
    ];
  },
  ([x, dt]: Tensor[], ct: Tensor[]) => [where(lessEqual(x, 0), zerosLike(ct[0]), ct[0]), zerosLike(ct[1]), zerosLike(dt)],
);

function spikeTrain(xs: Tensor, v0: Tensor, dt: Tensor): [Tensor, Tensor] {
  return scan(
    (v: Tensor, x: Tensor) => {
      const [s, nv] = fire(x, v, dt) as Tensor[];
      return [nv, s];
    },
    v0,
    xs,
  ) as [Tensor, Tensor];
}

/**
 * Seeded inputs of a 32 x 16 spiking layer over T steps: input currents x (T, 32, 16) in
 * [-100, 200), initial voltages v0 in [0, 1), dt 0.01, and loss weights w (wSteps, 32, 16) in
 * [-0.5, 0.5); `next` goes on drawing from the same generator.
 */
function spikeInputs(seed: number, T: number, wSteps: number): { next: () => number; x: NDArray; v0: NDArray; dt: NDArray; w: NDArray } {
  const next = rng(seed);
  const draw = (shape: number[], f: () => number): NDArray =>
    fromTyped(Float32Array.from({ length: shape.reduce((a, c) => a * c, 1) }, f), shape);
  const x = draw([T, 32, 16], () => 300 * next() - 100);
  const v0 = draw([32, 16], () => next());
  const dt = fromTyped(new Float32Array([0.01]), []);
  const w = draw([wSteps, 32, 16], () => next() - 0.5);
  return { next, x, v0, dt, w };
}

const skip = !wasmSimdAvailable() ? 'no WebAssembly SIMD here' : false;

t.test('the spiking update equals a float32 loop of its formula', { skip }, (t) => {
  const T = 7;
  const B = 3;
  const U = 8;
  const next = rng(11);
  const x = Float32Array.from({ length: T * B * U }, () => 40 * next() - 10);
  x[5] = NaN;
  x[B * U + 2] = Infinity;
  x[2 * B * U + 9] = -Infinity;
  const v0 = Float32Array.from({ length: B * U }, () => next());
  const dt = 0.01;
  const before = wasmScanStats.calls;
  const [vT, spikes] = spikeTrain(fromTyped(x, [T, B, U]), fromTyped(v0, [B, U]), fromTyped(new Float32Array([dt]), []));
  t.ok(wasmScanStats.calls > before, 'the whole-scan kernel ran');
  const fr = Math.fround;
  const dt32 = fr(dt);
  const v = Float64Array.from(v0);
  const expectSpikes = new Float32Array(T * B * U);
  for (let s = 0; s < T; s++)
    for (let i = 0; i < B * U; i++) {
      const xi = x[s * B * U + i];
      const r = Number.isNaN(xi) ? NaN : xi <= 0 ? 0 : xi;
      const nv = fr(v[i] + fr(r * dt32));
      const n = Math.floor(nv);
      expectSpikes[s * B * U + i] = fr(n / dt32);
      v[i] = fr(nv - n);
    }
  t.equal(firstBitDifference(f32(spikes), expectSpikes), -1, 'spikes');
  t.equal(firstBitDifference(f32(vT), Float32Array.from(v)), -1, 'final voltage');
  t.ok(Number.isNaN(f32(spikes)[5]), 'NaN input: NaN spike output');
  t.end();
});

t.test('forward, gradient and jit: bit-identical to the step-by-step path', { skip }, (t) => {
  const T = 10;
  const { next, x, v0, dt, w } = spikeInputs(5, T, T);
  const loss = (xs: Tensor, v: Tensor, d: Tensor): Tensor => {
    const [vT, s] = spikeTrain(xs, v, d);
    return add(sum(mul(s, w)), sum(vT));
  };
  const eager = bothPaths(() => [...spikeTrain(x, v0, dt), ...(grad(loss, { argnums: [0, 1, 2] })(x, v0, dt) as Tensor[])]);
  t.ok(eager.calls >= 2, `forward and reverse scans ran as kernels (${eager.calls} calls)`);
  sameTensors(t, eager.on, eager.off, 'eager');
  const step = jit((xs: Tensor, v: Tensor, d: Tensor) => grad(loss, { argnums: [0, 1] })(xs, v, d) as Tensor[]);
  const jitted = bothPaths(() => step(x, v0, dt) as Tensor[]);
  sameTensors(t, jitted.on, jitted.off, 'jit(grad)');
  sameTensors(t, jitted.on, eager.on.slice(2, 4), 'jit(grad) vs eager grad');
  // An x broadcast over time (stride 0) and a transposed one (strided rows).
  const once = fromTyped(
    Float32Array.from({ length: 32 * 16 }, () => 3 * next()),
    [1, 32, 16],
  );
  const tiled = broadcastTo(once, [T, 32, 16]);
  const swapped = transpose(fromTyped(f32(x), [32, T, 16]), [1, 0, 2]);
  const layouts = bothPaths(() => [...spikeTrain(tiled, v0, dt), ...spikeTrain(swapped, v0, dt)]);
  t.ok(layouts.calls >= 2, 'broadcast and transposed xs ran as kernels');
  sameTensors(t, layouts.on, layouts.off, 'broadcast / transposed xs');
  t.end();
});

t.test('a loss on the last step only: the padded cotangent is read in place, bit-identical', { skip }, (t) => {
  // grad pads the last step's cotangent with zeros over time (a pad), which the reverse scan reads
  // as its time-varying input: inside a compiled step it is made in the kernels' arena, so the
  // kernel reads it where it is (it was an ordinary array, copied in on every step).
  const T = 10;
  const { x, v0, dt, w } = spikeInputs(11, T, 1);
  // w is an argument, so the padded cotangent is computed in the step (not folded into a constant).
  const lastStep = (xs: Tensor, weights: Tensor): Tensor => {
    const [, s] = spikeTrain(mul(xs, 1), v0, dt);
    return sum(mul(slice(s, [T - 1, 0, 0], [1, 32, 16]), weights));
  };
  const step = jit((xs: Tensor, weights: Tensor) => grad(lastStep)(xs, weights) as Tensor);
  step(x, w);
  const copiedBefore = wasmScanStats.xsCopied;
  const callsBefore = wasmScanStats.calls;
  const paths = bothPaths(() => [step(x, w) as Tensor]);
  t.ok(wasmScanStats.calls - callsBefore >= 2, 'forward and reverse scans ran as kernels');
  t.equal(wasmScanStats.xsCopied, copiedBefore, 'no time-varying input was copied in');
  sameTensors(t, paths.on, paths.off, 'jit(grad) of the last step');
  t.end();
});

t.test('random bodies, lengths, directions and special values', { skip }, (t) => {
  const specials = [0, -0, 1, -1, 0.5, 3.75, 1e30, -1e30, 1e-40, Infinity, -Infinity, NaN];
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6 }),
      fc.constantFrom([4], [2, 6], [3, 4, 2], [8, 8], [5], [3, 3]),
      fc.boolean(),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      (T, shape, reverse, variant, seed) => {
        const next = rng(seed);
        const size = shape.reduce((a, c) => a * c, 1);
        const val = (): number => (next() < 0.2 ? specials[Math.floor(next() * specials.length)] : 8 * next() - 4);
        const arr = (s: readonly number[]): NDArray => fromTyped(Float32Array.from({ length: s.reduce((a, c) => a * c, 1) }, val), [...s]);
        const xs = arr([T, ...shape]);
        const xs2 = arr([T, ...shape]);
        const a0 = arr(shape);
        const b0 = arr(shape);
        const k = arr(shape);
        // A scalar closed over eagerly becomes a literal, and literal NaN keeps a group on the step-by-step path.
        const c = fromTyped(new Float32Array([Number.isNaN(val()) ? 2 : 8 * next() - 4]), []);
        const body = ([a, b]: Tensor[], [x, x2]: Tensor[]): [Tensor[], Tensor[]] => {
          switch (variant) {
            case 0: // two carries that swap roles
              return [
                [b, add(mul(a, c), x)],
                [maximum(a, x2), sub(b, k)],
              ];
            case 1: // a carry passed through unchanged, a y that is an input
              return [
                [a, div(add(b, x), c)],
                [x2, floor(mul(b, k))],
              ];
            case 2: // a literal carry
              return [[zerosLike(a), where(lessEqual(x, b), x2, mul(b, 0.5))], [relu(add(a, x))]];
            default: // relu integration with a const of the state's shape
              return [
                [add(a, mul(relu(x), k)), maximum(b, x2)],
                [sub(a, floor(a)), add(b, c)],
              ];
          }
        };
        const run = (): Tensor[] => {
          const [carry, ys] = scan(body, [a0, b0], [xs, xs2], { reverse });
          return [...(carry as Tensor[]), ...(ys as Tensor[])];
        };
        const r = bothPaths(run);
        if (size % 4 === 0 && r.calls !== 1) return false;
        if (size % 4 !== 0 && r.calls !== 0) return false;
        return r.on.every((x, i) => firstBitDifference(f32(x), f32(r.off[i])) === -1);
      },
    ),
    { numRuns: 120, seed: 1234 },
  );
  t.pass('120 random scans bit-identical to the step-by-step path');
  t.end();
});

t.test('bodies the kernel does not run still scan step by step', { skip }, (t) => {
  const next = rng(3);
  const W = fromTyped(
    Float32Array.from({ length: 16 }, () => next() - 0.5),
    [4, 4],
  );
  const xs = fromTyped(
    Float32Array.from({ length: 5 * 2 * 4 }, () => next()),
    [5, 2, 4],
  );
  const h0 = fromTyped(new Float32Array(8), [2, 4]);
  const before = wasmScanStats.calls;
  const [hT, hs] = scan(
    (h: Tensor, x: Tensor) => {
      const nh = relu(add(matmul(h, W), x));
      return [nh, nh];
    },
    h0,
    xs,
  ) as [Tensor, Tensor];
  t.equal(wasmScanStats.calls, before, 'a recurrent matmul keeps the step-by-step path');
  // The same recurrence as a float64 loop (every value rounded to float32 as it is stored).
  const Wd = f32(W);
  const xd = f32(xs);
  let h = new Float64Array(8);
  const expect = new Float32Array(5 * 8);
  for (let s = 0; s < 5; s++) {
    const nh = new Float64Array(8);
    for (let r = 0; r < 2; r++)
      for (let j = 0; j < 4; j++) {
        let acc = 0;
        for (let i = 0; i < 4; i++) acc += h[r * 4 + i] * Wd[i * 4 + j];
        nh[r * 4 + j] = Math.max(0, Math.fround(Math.fround(acc) + xd[s * 8 + r * 4 + j]));
      }
    h = nh;
    expect.set(Float32Array.from(nh), s * 8);
  }
  const got = f32(hs);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - expect[i]));
  t.ok(worst <= 1e-6, `recurrence matches the float64 loop (max error ${worst})`);
  t.equal(firstBitDifference(f32(hT), got.subarray(32)), -1, 'final carry is the last step');
  t.end();
});
