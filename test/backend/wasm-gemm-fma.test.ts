/**
 * The opt-in fused multiply-add matmul kernel (relaxed SIMD's f32x4.relaxed_madd). Node 20 only
 * validates relaxed SIMD under --experimental-wasm-relaxed-simd, so the checks run in a child Node
 * started with that flag: FMA products against a float64 reference, within float32 rounding of
 * the exact sums (not bit-identical to the unfused kernel: that is the policy), one and two threads,
 * odd sizes and strided operands; and the default (no opt-in) stays the unfused kernel, bit-identical
 * to the JS fallback.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { relaxedSimdAvailable, setGemmFma, gemmFmaActive } from '../../core/backend/wasm/index.js';
import { wasmSimdAvailable } from '../../core/backend/wasm/index.js';

const CHILD = `
import { createWasmGemm, gemm, gemmF32Fallback, gemmFmaActive, relaxedSimdAvailable, setGemmFma } from './core/backend/wasm/index.js';
const out = { relaxed: relaxedSimdAvailable(), cases: [] };
let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
for (const [m, k, n, threads, transposedA] of [[5, 7, 9, 1, false], [64, 300, 40, 1, true], [320, 784, 128, 2, false], [37, 513, 129, 2, true]]) {
  const g = createWasmGemm({ fma: true, threads });
  const A = Float32Array.from({ length: m * k }, rnd);
  const B = Float32Array.from({ length: k * n }, rnd);
  const C = new Float32Array(m * n);
  // A as stored (m x k row-major) or read through its transpose's strides (k x m storage).
  const At = new Float32Array(m * k);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) At[p * m + i] = A[i * k + p];
  if (transposedA) g(At, 0, 1, m, B, 0, n, 1, C, 0, m, k, n);
  else g(A, 0, k, 1, B, 0, n, 1, C, 0, m, k, n);
  let worst = 0;
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let exact = 0, mag = 0;
    for (let p = 0; p < k; p++) { exact += A[i * k + p] * B[p * n + j]; mag += Math.abs(A[i * k + p] * B[p * n + j]); }
    // Recursive summation in float32: |error| <= k * u * sum |a b| (u = 2^-24), plus one rounding.
    worst = Math.max(worst, Math.abs(C[i * n + j] - exact) / ((k + 1) * 2 ** -24 * mag + 1e-30));
  }
  out.cases.push({ m, k, n, threads, transposedA, built: g !== null, worst });
}
// The default is the unfused kernel (bit-identical to the JS fallback); setGemmFma switches.
const A = Float32Array.from({ length: 33 * 70 }, rnd), B = Float32Array.from({ length: 70 * 21 }, rnd);
const C1 = new Float32Array(33 * 21), C2 = new Float32Array(33 * 21);
gemm(A, 0, 70, 1, B, 0, 21, 1, C1, 0, 33, 70, 21);
gemmF32Fallback(A, 0, 70, 1, B, 0, 21, 1, C2, 0, 33, 70, 21);
out.defaultFma = gemmFmaActive();
out.defaultSameAsFallback = C1.every((v, i) => Object.is(v, C2[i]));
out.optedIn = setGemmFma(true);
gemm(A, 0, 70, 1, B, 0, 21, 1, C1, 0, 33, 70, 21);
out.optedInClose = C1.every((v, i) => Math.abs(v - C2[i]) <= 1e-5 * (1 + Math.abs(C2[i])));
console.log(JSON.stringify(out));
`;

t.test(
  'FMA matmul is within float32 rounding of a float64 reference; default stays unfused',
  { skip: !wasmSimdAvailable() && 'no WebAssembly SIMD' },
  async (t) => {
    const log = execFileSync(
      process.execPath,
      ['--experimental-wasm-relaxed-simd', '--import', 'tsx', '--input-type=module', '-e', CHILD],
      { encoding: 'utf8', timeout: 120_000 },
    );
    const r = JSON.parse(log.trim().split('\n').pop() ?? '{}') as {
      relaxed: boolean;
      cases: { m: number; k: number; n: number; threads: number; built: boolean; worst: number }[];
      defaultFma: boolean;
      defaultSameAsFallback: boolean;
      optedIn: boolean;
      optedInClose: boolean;
    };
    t.ok(r.relaxed, 'relaxed SIMD validates under --experimental-wasm-relaxed-simd');
    for (const c of r.cases) {
      t.ok(c.built, `${c.m}x${c.k}x${c.n}: the FMA kernel builds`);
      t.ok(c.worst <= 1, `${c.m}x${c.k}x${c.n} on ${c.threads} thread(s): error ${c.worst.toFixed(3)} of the float32 bound`);
    }
    t.equal(r.defaultFma, false, 'FMA is off unless asked for');
    t.ok(r.defaultSameAsFallback, 'the default kernel is bit-identical to the JS fallback');
    t.equal(r.optedIn, true, 'setGemmFma(true) turns it on');
    t.ok(r.optedInClose, 'opted-in products stay close to the fallback');
  },
);

t.test('without relaxed SIMD, asking for FMA keeps the unfused kernel', async (t) => {
  if (relaxedSimdAvailable()) return t.pass('this engine has relaxed SIMD by default');
  t.equal(setGemmFma(true), false);
  t.equal(gemmFmaActive(), false);
  setGemmFma(false);
});
