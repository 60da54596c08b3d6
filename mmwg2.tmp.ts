import { gemmF32 } from './core/backend/wasm/index.js';
import { residentArray } from './core/backend/wasm/kernel-cache.js';
const rnd = (n: number) => { const a = residentArray('float32', n) as Float32Array; for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5; return a; };
const x = rnd(32 * 784), W = rnd(784 * 128), g = rnd(32 * 128);
const C1 = residentArray('float32', 32 * 128) as Float32Array, C2 = residentArray('float32', 784 * 128) as Float32Array;
const xT = rnd(784 * 32);
const f1 = () => gemmF32(x, 0, 784, 1, W, 0, 128, 1, C1, 0, 32, 784, 128);
const f2 = () => gemmF32(x, 0, 1, 784, g, 0, 128, 1, C2, 0, 784, 32, 128);
const f3 = () => gemmF32(xT, 0, 32, 1, g, 0, 128, 1, C2, 0, 784, 32, 128);
// 320-row product (issue's matmul case)
const X = rnd(320 * 784), C3 = residentArray('float32', 320 * 128) as Float32Array;
const f4 = () => gemmF32(X, 0, 784, 1, W, 0, 128, 1, C3, 0, 320, 784, 128);
const time = (f: () => void, n = 200) => { const t0 = performance.now(); for (let i = 0; i < n; i++) f(); return ((performance.now() - t0) / n) * 1000; };
for (let i = 0; i < 50; i++) { f1(); f2(); f3(); f4(); }
const res: Record<string, number[]> = { fwd: [], wgrad: [], wgradRowMajorA: [], m320: [] };
for (let r2 = 0; r2 < 7; r2++) { res.fwd.push(time(f1)); res.wgrad.push(time(f2)); res.wgradRowMajorA.push(time(f3)); res.m320.push(time(f4, 30) / 10); }
for (const [k, v] of Object.entries(res)) { v.sort((a, b) => a - b); console.log(k, v.map((t) => t.toFixed(0)).join(' '), 'GFLOP/s', (2 * 32 * 784 * 128 / v[3] / 1e3).toFixed(1)); }
const junk = new Float32Array(1 << 20); // 4 MB
const evict = () => { for (let i = 0; i < junk.length; i += 16) junk[i] += 1; };
const res2: Record<string, number[]> = { fwdEvict: [], wgradEvict: [], evictOnly: [] };
for (let r2 = 0; r2 < 7; r2++) { res2.fwdEvict.push(time(() => { evict(); f1(); })); res2.wgradEvict.push(time(() => { evict(); f2(); })); res2.evictOnly.push(time(evict)); }
for (const [k, v] of Object.entries(res2)) { v.sort((a, b) => a - b); console.log(k, v.map((t) => t.toFixed(0)).join(' ')); }
