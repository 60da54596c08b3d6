/**
 * The run-gathering kernel (core/backend/wasm/copy-runs.ts) that builds the convolutions' patch
 * matrices: for random lists of runs (lengths that are and are not multiples of 4, zero runs,
 * overlapping sources) over arrays in the arena, the destination equals a copy made element by
 * element here, bit for bit (quiet-NaN payloads, -0 and subnormals included), and the JS path (arrays
 * outside the arena) gives the same; and a jit'd convolution's gradients, which build their
 * patches through it, equal a float64 loop written here within float32 rounding.
 */
import fc from 'fast-check';
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { wasmSimdAvailable } from '../../core/backend/wasm/index.js';
import { copyRuns, copyRunsStats, RunList } from '../../core/backend/wasm/copy-runs.js';
import { releaseResidentArray, residentArray } from '../../core/backend/wasm/kernel-cache.js';
import { conv2d, fromTyped, grad, jit, mul, sum, type NDArray, type Tensor } from '../../core/index.js';

const simd = wasmSimdAvailable();

/** Bit patterns of every kind: ordinary, ±0, subnormal, infinities, NaNs with payloads. */
function source(count: number, next: () => number): Float32Array {
  const bits = new Uint32Array(count);
  const kinds = [
    () => Math.floor(next() * 2 ** 32),
    () => 0x80000000,
    () => 0,
    () => 1 + Math.floor(next() * 1000),
    () => 0x7f800000,
    () => 0x7fc00001 + Math.floor(next() * 1000),
  ];
  for (let i = 0; i < count; i++) {
    const b = kinds[Math.floor(next() * kinds.length)]();
    // Signaling NaNs are quieted by a JS element copy (float32 -> number -> float32), as they were
    // by the JS loops this kernel replaces: set their quiet bit, so both paths compare by bits.
    const signaling = (b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0 && (b & 0x00400000) === 0;
    bits[i] = signaling ? (b | 0x00400000) >>> 0 : b;
  }
  return new Float32Array(bits.buffer);
}

const sameBits = (a: Float32Array, b: Float32Array): boolean => {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
};

t.test(
  'random run lists: the kernel and the JS path equal an element-by-element copy',
  { skip: !simd && 'no WebAssembly SIMD (the JS path only)' },
  async (t) => {
    const before = copyRunsStats.calls;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 1, max: 2000 }), fc.integer(), (runsCount, srcLen, seed) => {
        const next = rng(seed);
        const src = source(srcLen, next);
        const list = new RunList();
        let dstLen = 0;
        for (let r = 0; r < runsCount; r++) {
          const len = 1 + Math.floor(next() * Math.min(srcLen, 70));
          const zero = next() < 0.2;
          list.push(zero ? -1 : Math.floor(next() * (srcLen - len + 1)), dstLen, len);
          dstLen += len + Math.floor(next() * 3); // gaps stay untouched
        }
        // Expected: an element-by-element copy into a prefilled destination (gaps keep their bits).
        const fill = source(dstLen, rng(seed + 1));
        const expected = Float32Array.from(fill);
        for (let e = 0; e < list.count; e++) {
          const [s, d, len] = [list.data[3 * e], list.data[3 * e + 1], list.data[3 * e + 2]];
          for (let j = 0; j < len; j++) expected[d + j] = s < 0 ? 0 : src[s + j];
        }
        // In the arena (the kernel) and outside it (the JS path).
        const rSrc = residentArray('float32', srcLen) as Float32Array | null;
        const rDst = residentArray('float32', dstLen) as Float32Array | null;
        let ok = true;
        if (rSrc !== null && rDst !== null) {
          rSrc.set(src);
          rDst.set(fill);
          copyRuns(rSrc, rDst, list);
          ok = sameBits(rDst, expected);
        }
        if (rSrc !== null) releaseResidentArray(rSrc);
        if (rDst !== null) releaseResidentArray(rDst);
        const plain = Float32Array.from(fill);
        copyRuns(src, plain, list);
        return ok && sameBits(plain, expected);
      }),
      { numRuns: 200, seed: 5 },
    );
    t.ok(copyRunsStats.calls - before > 100, `the kernel ran ${copyRunsStats.calls - before} times (shared arena)`);
  },
);

t.test('jit(grad) of a padded, strided convolution builds its patches with the kernel and matches a float64 loop', async (t) => {
  const next = rng(11);
  const [n, h, w, c, o] = [3, 9, 8, 12, 8];
  const xv = Float32Array.from({ length: n * h * w * c }, () => next() - 0.5);
  const kv = Float32Array.from({ length: 3 * 3 * c * o }, () => next() - 0.5);
  const [oh, ow] = [Math.ceil(h / 2), Math.ceil(w / 2)]; // 'same', stride 2
  const wv = Float32Array.from({ length: n * oh * ow * o }, () => next() - 0.5);
  const x = fromTyped(xv, [n, h, w, c]);
  const k = fromTyped(kv, [3, 3, c, o]);
  const weights = fromTyped(wv, [n, oh, ow, o]);
  const before = copyRunsStats.calls;
  // The input scaled by a traced 1 inside the step: an intermediate, so it lives in the arena as
  // a training step's activations do (the kernel needs its source there).
  const f = jit((xx: Tensor, kk: Tensor, ww: Tensor, one: Tensor) =>
    grad((q: Tensor) => sum(mul(conv2d(mul(xx, one), q, { strides: 2, padding: 'same' }), ww)))(kk),
  );
  const g = (f(x, k, weights, fromTyped(Float32Array.of(1), [])) as NDArray).toTyped() as Float32Array;
  // d/dk sum(w * conv(x, k)) = sum over (n, i, j) of w[n, i, j, o] * x[n, 2i + di - pad, 2j + dj - pad, c].
  const padTop = Math.floor(Math.max((oh - 1) * 2 + 3 - h, 0) / 2);
  const padLeft = Math.floor(Math.max((ow - 1) * 2 + 3 - w, 0) / 2);
  let worst = 0;
  for (let di = 0; di < 3; di++)
    for (let dj = 0; dj < 3; dj++)
      for (let ci = 0; ci < c; ci++)
        for (let oo = 0; oo < o; oo++) {
          let s = 0;
          for (let b = 0; b < n; b++)
            for (let i = 0; i < oh; i++)
              for (let j = 0; j < ow; j++) {
                const y = 2 * i + di - padTop;
                const z = 2 * j + dj - padLeft;
                if (y < 0 || y >= h || z < 0 || z >= w) continue;
                s += wv[((b * oh + i) * ow + j) * o + oo] * xv[((b * h + y) * w + z) * c + ci];
              }
          worst = Math.max(worst, Math.abs(g[((di * 3 + dj) * c + ci) * o + oo] - s) / (1e-3 + Math.abs(s)));
        }
  t.ok(worst < 1e-4, `kernel gradient within float32 rounding of the float64 loop (worst relative ${worst.toExponential(2)})`);
  if (simd) t.ok(copyRunsStats.calls > before, 'the patches were gathered by the kernel');
});
