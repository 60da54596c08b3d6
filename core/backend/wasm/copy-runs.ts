/**
 * Gathers runs of float32 values into a patch matrix as a WebAssembly SIMD kernel: a list of
 * (source index, destination index, length) entries, each copied with f32x4 loads and stores (a
 * source index of -1 writes zeros: a window tap over padding). The convolutions' im2col copies
 * (core/backend/conv.ts) are runs of one tap's channels, 32-192 floats; in a JS loop each float
 * costs ~1.7 ns and each TypedArray.set ~100 ns of call overhead, which made building the patch
 * matrices about a third of a convolution's time.
 *
 * Exactness: a copy; the values are moved bit for bit (NaN payloads included).
 */
import { Code, encodeModule, I32, V128, type ValType } from './encoder.js';
import { arenaAlloc, arenaFree, arenaImport, arenaMemory, residentOffset } from './kernel-cache.js';
import { simdKernel } from './index.js';

/**
 * run(listPtr, count, srcBase, dstBase): for each entry e (three i32 at listPtr + 12 e: source
 * index or -1, destination index, length, in floats) copies `length` floats from srcBase + 4 src
 * to dstBase + 4 dst, or writes zeros there when src is -1.
 */
function kernelBytes(): Uint8Array<ArrayBuffer> {
  const [LIST, COUNT, SRC, DST] = [0, 1, 2, 3];
  const [E, S, D, N, ZERO] = [4, 5, 6, 7, 8];
  const f = new Code();
  f.i32(0).set(E);
  f.block().loop(); // entries
  f.get(E).get(COUNT).geU().brIf(1);
  f.get(LIST).i32Load(8).set(N);
  f.get(DST).get(LIST).i32Load(4).i32(2).shl().add().set(D);
  f.get(LIST).i32Load(0).i32(-1).eq();
  f.if();
  // Zeros: four floats at a time, then one.
  f.block().loop();
  f.get(N).i32(4).ltU().brIf(1);
  f.get(D).get(ZERO).v128Store(0, 0);
  f.get(D).i32(16).add().set(D).get(N).i32(4).sub().set(N).br(0);
  f.end().end();
  f.block().loop();
  f.get(N).eqz().brIf(1);
  f.get(D).f32Const(0).f32Store(0);
  f.get(D).i32(4).add().set(D).get(N).i32(1).sub().set(N).br(0);
  f.end().end();
  f.else();
  f.get(SRC).get(LIST).i32Load(0).i32(2).shl().add().set(S);
  f.block().loop();
  f.get(N).i32(4).ltU().brIf(1);
  f.get(D).get(S).v128Load(0, 0).v128Store(0, 0);
  f.get(S).i32(16).add().set(S).get(D).i32(16).add().set(D).get(N).i32(4).sub().set(N).br(0);
  f.end().end();
  f.block().loop();
  f.get(N).eqz().brIf(1);
  f.get(D).get(S).f32Load(0).f32Store(0);
  f.get(S).i32(4).add().set(S).get(D).i32(4).add().set(D).get(N).i32(1).sub().set(N).br(0);
  f.end().end();
  f.end();
  f.get(LIST).i32(12).add().set(LIST).get(E).i32(1).add().set(E).br(0);
  f.end().end();
  const params: ValType[] = [I32, I32, I32, I32];
  // ZERO is never set: v128 locals start as all-zero bits.
  const locals: ValType[] = [I32, I32, I32, I32, V128];
  return encodeModule([{ name: 'run', params, results: [], locals, body: f }], 1, arenaImport());
}

const copyKernel = simdKernel('copy-runs', kernelBytes);

export const copyRunsStats = { calls: 0 };

/**
 * A growing list of runs: entries (source index or -1 for zeros, destination index, length).
 * Reused between calls (its array grows to the largest block seen).
 */
export class RunList {
  data = new Int32Array(3 * 1024);
  count = 0;
  clear(): void {
    this.count = 0;
  }
  push(src: number, dst: number, len: number): void {
    let at = 3 * this.count;
    if (at + 3 > this.data.length) {
      const bigger = new Int32Array(2 * this.data.length);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[at++] = src;
    this.data[at++] = dst;
    this.data[at] = len;
    this.count++;
  }
}

/**
 * Copies the runs of `list` from `src` into `dst` (indices relative to element 0 of each). In the
 * WebAssembly kernel when both arrays live in the arena (a compiled program's intermediates),
 * else by a JS loop; either way dst ends up the same.
 */
export function copyRuns(src: Float32Array, dst: Float32Array, list: RunList): void {
  const n = list.count;
  if (n === 0) return;
  const run = copyKernel();
  const srcBase = residentOffset(src);
  const dstBase = residentOffset(dst);
  if (run !== null && srcBase >= 0 && dstBase >= 0) {
    const bytes = 12 * n;
    const at = arenaAlloc(bytes);
    if (at >= 0) {
      new Int32Array(arenaMemory().buffer, at, 3 * n).set(list.data.subarray(0, 3 * n));
      run(at, n, srcBase, dstBase);
      arenaFree(at, bytes);
      copyRunsStats.calls++;
      return;
    }
  }
  const L = list.data;
  for (let e = 0; e < n; e++) {
    const s = L[3 * e];
    const d = L[3 * e + 1];
    const len = L[3 * e + 2];
    if (s < 0) dst.fill(0, d, d + len);
    else if (len >= 64) dst.set(src.subarray(s, s + len), d);
    else for (let j = 0; j < len; j++) dst[d + j] = src[s + j];
  }
}
