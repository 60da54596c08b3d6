/**
 * Threefry-2x32 (20 rounds) over four counter blocks at once in WebAssembly SIMD, for the CPU
 * backend's random_bits and [0, 1) random_uniform in the classic (non-partitionable) counter
 * layout: the same words as core/prng (JAX's threefry_2x32 of iota(m)), since every operation is
 * exact 32-bit integer arithmetic; uniform floats are (bits >>> 9) * 2^-23, exact as well. Why:
 * Poisson-encoding a batch draws 500k uniforms per step, which the JS loop spends ~3.6 ms on here.
 */
import { Code, I32, V128, encodeModule, type ValType } from './encoder.js';
import { wasmSimdAvailable } from './index.js';

/** Rotation amounts of the 20 rounds, in groups of four (Random123's threefry2x32 constants). */
const ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24];
const PARITY = 0x1bd11bda;
const PAGE = 65536;

const OP = { i32x4Splat: 0x11, i32x4LtU: 0x3a, v128And: 0x4e, v128Xor: 0x51, i32x4Shl: 0xab, i32x4ShrU: 0xad, i32x4Add: 0xae, f32x4ConvertI32x4U: 0xfb, f32x4Mul: 0xe6 } as const;

/**
 * hash(k0, k1, half, m, y0Ptr, y1Ptr): for block i < half (rounded up to 4), counters
 * (i, half + i, or 0 where half + i >= m), words to y0[i], y1[i].
 * toUniform(ptr, count): the words at ptr become float32 (w >>> 9) * 2^-23 in place.
 */
function moduleBytes(): Uint8Array<ArrayBuffer> {
  // hash params: k0 0, k1 1, half 2, m 3, y0 4, y1 5; locals: i 6 (i32), then v128: a 7, b 8, x0 9, ks0 10, ks1 11, ks2 12, lane 13
  const [K0, K1, HALF, M, Y0, Y1, I] = [0, 1, 2, 3, 4, 5, 6];
  const [A, B, X0, KS0, KS1, KS2, LANE] = [7, 8, 9, 10, 11, 12, 13];
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
  // x0 = i + lane
  f.get(I);
  op(OP.i32x4Splat);
  f.get(LANE);
  op(OP.i32x4Add);
  f.set(X0);
  // a = x0 + ks0; b = ((half + x0) & (x0 < m - half)) + ks1
  f.get(X0).get(KS0);
  op(OP.i32x4Add);
  f.set(A);
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
  f.set(B);
  const ks = [KS0, KS1, KS2];
  for (let group = 0; group < 5; group++) {
    for (let r = 0; r < 4; r++) {
      const rot = ROTATIONS[(group % 2) * 4 + r];
      // a += b; b = rotl(b, rot) ^ a
      f.get(A).get(B);
      op(OP.i32x4Add);
      f.set(A);
      f.get(B).i32(rot);
      op(OP.i32x4Shl);
      f.get(B).i32(32 - rot);
      op(OP.i32x4ShrU);
      op(0x50); // v128.or
      f.get(A);
      op(OP.v128Xor);
      f.set(B);
    }
    // Key injection s = group + 1: a += ks[s % 3]; b += ks[(s + 1) % 3] + s.
    const s = group + 1;
    f.get(A).get(ks[s % 3]);
    op(OP.i32x4Add);
    f.set(A);
    f.get(B).get(ks[(s + 1) % 3]);
    op(OP.i32x4Add);
    f.i32(s);
    op(OP.i32x4Splat);
    op(OP.i32x4Add);
    f.set(B);
  }
  f.get(Y0).get(I).i32(4).mul().add().get(A).v128Store(0, 0);
  f.get(Y1).get(I).i32(4).mul().add().get(B).v128Store(0, 0);
  f.get(I).i32(4).add().set(I).br(0);
  f.end().end();
  const hash = f;

  // toUniform(ptr, count): in place.
  const g = new Code();
  const [P, N, END] = [0, 1, 2];
  g.get(P).get(N).i32(4).mul().add().set(END);
  g.block().loop();
  g.get(P).get(END).geU().brIf(1);
  g.get(P).get(P).v128Load(0, 0).i32(9);
  g.simdOp(OP.i32x4ShrU);
  g.simdOp(OP.f32x4ConvertI32x4U);
  g.f32x4Const(2 ** -23);
  g.simdOp(OP.f32x4Mul);
  g.v128Store(0, 0);
  g.get(P).i32(16).add().set(P).br(0);
  g.end().end();

  const i32s = (n: number): ValType[] => new Array<ValType>(n).fill(I32);
  return encodeModule(
    [
      { name: 'hash', params: i32s(6), results: [], locals: [I32, ...new Array<ValType>(7).fill(V128)], body: hash },
      { name: 'toUniform', params: i32s(2), results: [], locals: [I32], body: g },
    ],
    16,
  );
}

interface Exports {
  memory: WebAssembly.Memory;
  hash(k0: number, k1: number, half: number, m: number, y0: number, y1: number): void;
  toUniform(ptr: number, count: number): void;
}

let wasm: Exports | null | undefined;

function instance(): Exports | null {
  if (wasm !== undefined) return wasm;
  if (!wasmSimdAvailable()) return (wasm = null);
  try {
    wasm = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), {}).exports as unknown as Exports;
  } catch {
    wasm = null;
  }
  return wasm;
}

/** Runs the hash for m words; returns the byte offsets of the y0 and y1 blocks, or null. */
function hashInto(w: Exports, key0: number, key1: number, m: number): { y0: number; y1: number; half: number } | null {
  const half = Math.ceil(m / 2);
  const padded = Math.ceil(half / 4) * 4;
  const y0 = 64;
  const y1 = y0 + 4 * padded;
  const bytes = y1 + 4 * padded;
  const have = w.memory.buffer.byteLength;
  if (bytes > have) {
    try {
      w.memory.grow(Math.ceil((bytes - have) / PAGE));
    } catch {
      return null;
    }
  }
  w.hash(key0 | 0, key1 | 0, half, m, y0, y1);
  return { y0, y1, half };
}

/**
 * The classic-layout random words of core/prng's randomBits(key, m), or null when WebAssembly
 * SIMD is unavailable.
 */
export function wasmRandomBits(key0: number, key1: number, m: number): Uint32Array | null {
  const w = instance();
  if (w === null || m === 0) return null;
  const r = hashInto(w, key0, key1, m);
  if (r === null) return null;
  const out = new Uint32Array(m);
  const u = new Uint32Array(w.memory.buffer);
  out.set(u.subarray(r.y0 >> 2, (r.y0 >> 2) + r.half));
  out.set(u.subarray(r.y1 >> 2, (r.y1 >> 2) + (m - r.half)), r.half);
  return out;
}

/** core/prng's uniform(key, m) over [0, 1) in float32 (classic layout), or null. */
export function wasmUniform01(key0: number, key1: number, m: number): Float32Array | null {
  const w = instance();
  if (w === null || m === 0) return null;
  const r = hashInto(w, key0, key1, m);
  if (r === null) return null;
  w.toUniform(r.y0, Math.ceil(r.half / 4) * 4);
  w.toUniform(r.y1, Math.ceil(r.half / 4) * 4);
  const out = new Float32Array(m);
  const fl = new Float32Array(w.memory.buffer);
  out.set(fl.subarray(r.y0 >> 2, (r.y0 >> 2) + r.half));
  out.set(fl.subarray(r.y1 >> 2, (r.y1 >> 2) + (m - r.half)), r.half);
  return out;
}
