/**
 * Threefry-2x32 (20 rounds) over four counter blocks at once in WebAssembly SIMD, for the CPU
 * backend's random_bits and [0, 1) random_uniform in the classic (non-partitionable) counter
 * layout: the same words as core/prng (JAX's threefry_2x32 of iota(m)), since every operation is
 * exact 32-bit integer arithmetic; uniform floats are (bits >>> 9) * 2^-23, exact as well. Why:
 * Poisson-encoding a batch draws 500k uniforms per step, which the JS loop spends ~3.6 ms on here.
 */
import { Code, I32, V128, encodeModule, type ValType } from './encoder.js';
import { wasmSimdAvailable } from './index.js';
import { arenaAlloc, arenaF32, arenaFree, arenaImport, arenaMemory, residentOffset } from './kernel-cache.js';

/** Rotation amounts of the 20 rounds, in groups of four (Random123's threefry2x32 constants). */
const ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24];
const PARITY = 0x1bd11bda;

const OP = {
  i32x4Splat: 0x11,
  i32x4LtU: 0x3a,
  v128And: 0x4e,
  v128Xor: 0x51,
  i32x4Shl: 0xab,
  i32x4ShrU: 0xad,
  i32x4Add: 0xae,
  f32x4ConvertI32x4U: 0xfb,
  f32x4Mul: 0xe6,
} as const;

/**
 * Blocks hashed per loop iteration, as independent vectors of four: each round is a chain of
 * dependent operations (add, rotate, xor), so one vector at a time leaves the vector units waiting
 * on latency; interleaving four keeps them busy (0.9 -> 0.6 ms for a Poisson batch's 250k floats,
 * best of 200 calls on a busy machine; five or more would spill the 16 vector registers).
 */
const VECTORS = 4;
const BLOCKS_PER_STEP = 4 * VECTORS;

/**
 * hash(k0, k1, half, m, y0Ptr, y1Ptr): for block i < half (rounded up to BLOCKS_PER_STEP),
 * counters (i, half + i, or 0 where half + i >= m), words to y0[i], y1[i].
 * hashUniform: the same, each word stored as the float32 (w >>> 9) * 2^-23.
 */
function moduleBytes(importMemory: ReturnType<typeof arenaImport>): Uint8Array<ArrayBuffer> {
  const i32s = (n: number): ValType[] => new Array<ValType>(n).fill(I32);
  const locals: ValType[] = [I32, ...new Array<ValType>(5 + 2 * VECTORS).fill(V128)];
  return encodeModule(
    [
      { name: 'hash', params: i32s(6), results: [], locals, body: hashBody(false) },
      { name: 'hashUniform', params: i32s(6), results: [], locals, body: hashBody(true) },
    ],
    16,
    importMemory,
  );
}

/**
 * The hash loop; with `uniform` each word w is stored as the float32 (w >>> 9) * 2^-23 (exact), so
 * uniform floats take no second pass over the words.
 */
function hashBody(uniform: boolean): Code {
  // hash params: k0 0, k1 1, half 2, m 3, y0 4, y1 5; locals: i 6 (i32), then v128: x0 7, ks0 8,
  // ks1 9, ks2 10, lane 11, and a, b of each vector from 12.
  const [K0, K1, HALF, M, Y0, Y1, I] = [0, 1, 2, 3, 4, 5, 6];
  const [X0, KS0, KS1, KS2, LANE] = [7, 8, 9, 10, 11];
  const vecs = Array.from({ length: VECTORS }, (_, v) => ({ a: 12 + 2 * v, b: 13 + 2 * v }));
  const f = new Code();
  const op = (sub: number) => f.simdOp(sub);
  const splat = (local: number) => {
    f.get(local);
    op(OP.i32x4Splat);
  };
  splat(K0);
  f.set(KS0);
  splat(K1);
  f.set(KS1);
  f.get(K0).get(K1).xor().i32(PARITY).xor();
  op(OP.i32x4Splat);
  f.set(KS2);
  f.i32x4Const([0, 1, 2, 3]).set(LANE);
  f.i32(0).set(I);
  f.block().loop();
  f.get(I).get(HALF).geU().brIf(1);
  vecs.forEach(({ a, b }, v) => {
    // x0 = i + 4v + lane
    f.get(I)
      .i32(4 * v)
      .add();
    op(OP.i32x4Splat);
    f.get(LANE);
    op(OP.i32x4Add);
    f.set(X0);
    // a = x0 + ks0; b = ((half + x0) & (x0 < m - half)) + ks1
    f.get(X0).get(KS0);
    op(OP.i32x4Add);
    f.set(a);
    f.get(HALF);
    op(OP.i32x4Splat);
    f.get(X0);
    op(OP.i32x4Add);
    f.get(X0).get(M).get(HALF).sub();
    op(OP.i32x4Splat);
    op(OP.i32x4LtU);
    op(OP.v128And);
    f.get(KS1);
    op(OP.i32x4Add);
    f.set(b);
  });
  const ks = [KS0, KS1, KS2];
  for (let group = 0; group < 5; group++) {
    for (let r = 0; r < 4; r++) {
      const rot = ROTATIONS[(group % 2) * 4 + r];
      for (const { a, b } of vecs) {
        // a += b; b = rotl(b, rot) ^ a
        f.get(a).get(b);
        op(OP.i32x4Add);
        f.set(a);
        if (rot % 8 === 0) {
          // A whole-byte rotation is one byte shuffle: output byte j of a lane is input byte j - rot/8.
          const k = rot / 8;
          f.get(b)
            .get(b)
            .shuffle(Array.from({ length: 16 }, (_, j) => (j & ~3) + (((j & 3) - k) & 3)));
        } else {
          f.get(b).i32(rot);
          op(OP.i32x4Shl);
          f.get(b).i32(32 - rot);
          op(OP.i32x4ShrU);
          op(0x50); // v128.or
        }
        f.get(a);
        op(OP.v128Xor);
        f.set(b);
      }
    }
    // Key injection s = group + 1: a += ks[s % 3]; b += ks[(s + 1) % 3] + s.
    const s = group + 1;
    for (const { a, b } of vecs) {
      f.get(a).get(ks[s % 3]);
      op(OP.i32x4Add);
      f.set(a);
      f.get(b).get(ks[(s + 1) % 3]);
      op(OP.i32x4Add);
      f.i32(s);
      op(OP.i32x4Splat);
      op(OP.i32x4Add);
      f.set(b);
    }
  }
  const store = (ptr: number, word: number, v: number) => {
    f.get(ptr).get(I).i32(4).mul().add().get(word);
    if (uniform) {
      f.i32(9);
      op(OP.i32x4ShrU);
      op(OP.f32x4ConvertI32x4U);
      f.f32x4Const(2 ** -23);
      op(OP.f32x4Mul);
    }
    f.v128Store(16 * v, 0);
  };
  vecs.forEach(({ a, b }, v) => {
    store(Y0, a, v);
    store(Y1, b, v);
  });
  f.get(I).i32(BLOCKS_PER_STEP).add().set(I).br(0);
  f.end().end();
  return f;
}

interface Exports {
  hash(k0: number, k1: number, half: number, m: number, y0: number, y1: number): void;
  hashUniform(k0: number, k1: number, half: number, m: number, y0: number, y1: number): void;
}

let wasm: Exports | null | undefined;

function instance(): Exports | null {
  if (wasm !== undefined) return wasm;
  if (!wasmSimdAvailable()) return (wasm = null);
  try {
    // Over the kernels' arena, so that words can be written straight into an array living there.
    const module = new WebAssembly.Module(moduleBytes(arenaImport()));
    wasm = new WebAssembly.Instance(module, { env: { memory: arenaMemory() } }).exports as unknown as Exports;
  } catch {
    wasm = null;
  }
  return wasm;
}

/**
 * Fills out[0, m) with the m words (or uniform floats) for the key: y0 (blocks 0 .. half) then y1
 * (the other counter of each block). When `out` lives in the arena, m is even and half is a whole
 * number of loop steps, the kernel writes both halves in place (a Poisson batch's 2.5M floats: no copies);
 * otherwise into a scratch block, copied out. False when the arena cannot hold the scratch.
 */
function hashInto(w: Exports, key0: number, key1: number, m: number, uniform: boolean, out: Float32Array | Uint32Array): boolean {
  const half = Math.ceil(m / 2);
  const padded = Math.ceil(half / BLOCKS_PER_STEP) * BLOCKS_PER_STEP;
  const hash = uniform ? w.hashUniform : w.hash;
  const at = residentOffset(out);
  // In place only when the halves fill out exactly (m even): the kernel writes whole loop steps.
  if (at >= 0 && padded === half && 2 * half === m) {
    hash(key0 | 0, key1 | 0, half, m, at, at + 4 * half);
    return true;
  }
  const bytes = 8 * padded;
  const y0 = arenaAlloc(bytes);
  if (y0 < 0) return false;
  const y1 = y0 + 4 * padded;
  hash(key0 | 0, key1 | 0, half, m, y0, y1);
  const words = out instanceof Float32Array ? arenaF32() : new Uint32Array(arenaMemory().buffer);
  out.set(words.subarray(y0 >> 2, (y0 >> 2) + half));
  out.set(words.subarray(y1 >> 2, (y1 >> 2) + (m - half)), half);
  arenaFree(y0, bytes);
  return true;
}

/**
 * The classic-layout random words of core/prng's randomBits(key, m), in `out` (default: a new
 * array) or null when WebAssembly SIMD is unavailable.
 */
export function wasmRandomBits(key0: number, key1: number, m: number, out: Uint32Array = new Uint32Array(m)): Uint32Array | null {
  const w = instance();
  if (w === null || m === 0 || out.length < m) return null;
  return hashInto(w, key0, key1, m, false, out) ? out : null;
}

/** core/prng's uniform(key, m) over [0, 1) in float32 (classic layout), in `out` (default: a new array), or null. */
export function wasmUniform01(key0: number, key1: number, m: number, out: Float32Array = new Float32Array(m)): Float32Array | null {
  const w = instance();
  if (w === null || m === 0 || out.length < m) return null;
  return hashInto(w, key0, key1, m, true, out) ? out : null;
}
