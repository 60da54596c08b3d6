/**
 * Fused elementwise kernels: the generated JS loop against the generated WebAssembly SIMD kernel,
 * per size, for three programs from a training step (bias + relu, the spiking neuron's voltage
 * update, Adam's update). Prints microseconds per call and the ratio; the crossover sets
 * WASM_ELEMENTWISE_MIN in core/backend/cpu-compile.ts.
 *
 *   npx tsx bench/kernels.ts        (npm run bench:kernels)
 */
import { fromTyped, jit, maximum, floor, sqrt, type NDArray, type Tensor } from '../core/index.js';
import { setElementwiseBackend } from '../core/backend/wasm/elementwise.js';

type Program = { name: string; inputs: number; f: (...xs: NDArray[]) => Tensor | Tensor[] };
const programs: Program[] = [
  { name: 'bias + relu', inputs: 2, f: (x, b) => maximum(x.add(b), 0) },
  {
    name: 'voltage update',
    inputs: 2,
    f: (v, j) => {
      const u = v.add(j.mul(0.01));
      const s = floor(u);
      return [u.sub(s), s.div(0.01)];
    },
  },
  {
    name: 'adam update',
    inputs: 4,
    f: (g, m, v, w) => {
      const m2 = m.mul(0.9).add(g.mul(0.1));
      const v2 = v.mul(0.999).add(g.mul(g).mul(0.001));
      return [m2, v2, w.sub(m2.div(sqrt(v2).add(1e-7)).mul(0.001))];
    },
  },
];

function timeUs(fn: () => void, minMs = 150): number {
  for (let i = 0; i < 20; i++) fn();
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < minMs / 5) {
      fn();
      n++;
    }
    best = Math.min(best, ((performance.now() - t0) / n) * 1000);
  }
  return best;
}

const sizes = [16, 64, 256, 1024, 4096, 16384, 100352];
console.log(`| program | elements | JS loop us | WASM SIMD us | JS/WASM |`);
console.log(`|---|---|---|---|---|`);
for (const p of programs) {
  for (const n of sizes) {
    const xs = Array.from({ length: p.inputs }, (_, k) =>
      fromTyped(
        Float32Array.from({ length: n }, (_, i) => ((i * 7 + k * 13) % 101) / 50 - 1 + (k === 2 ? 2 : 0)),
        [n],
      ),
    );
    const us: Record<string, number> = {};
    for (const backend of ['js', 'wasm-simd'] as const) {
      setElementwiseBackend(backend);
      const f = jit(p.f);
      us[backend] = timeUs(() => f(...xs));
    }
    console.log(`| ${p.name} | ${n} | ${us.js.toFixed(2)} | ${us['wasm-simd'].toFixed(2)} | ${(us.js / us['wasm-simd']).toFixed(2)}x |`);
  }
}
setElementwiseBackend('auto');
