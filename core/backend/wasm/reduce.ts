/**
 * Reductions of fused float32 programs (reduce_sum / reduce_max / reduce_min after an
 * elementwise prologue) as WebAssembly SIMD kernels, for the layout training steps produce: the
 * innermost kept axis is contiguous and the reduced axes are outer to it (a bias gradient summed
 * over the batch, a mean over time of [batch, time, units]), merging into one or two loops. Four adjacent outputs are reduced at
 * once, one per lane.
 *
 * Exactness: as in the JS loop (core/backend/fusion.ts), each output is accumulated strictly in
 * the reduced axes' order, sums in float64 from +0 (lanes promoted to f64x2), rounded to float32
 * once at the end; max/min compare in float32 with the JS loop's NaN rule. The prologue is the
 * same f32x4 code as core/backend/wasm/elementwise.ts. So results are bit-identical to the JS
 * loop (NaN payloads aside). A second form takes one kept axis outside the reduced ones (at least
 * four outputs: per-example squared norms, sum over [1, 2] of [32, 784, 128]), one output's row
 * per lane; other layouts return null and the JS loop runs.
 */
import { arenaAlloc, arenaF32, arenaFree, arenaImport, cachedKernel, residentOffset, type KernelFn } from './kernel-cache.js';
import { makeView, NDArray } from '../../ndarray.js';
import { contiguousStrides } from '../../shape.js';
import { Code, I32, SIMD_OP, V128, encodeModule, type ValType } from './encoder.js';
import { elementwiseBackendName, emitEqns, type WasmFusedSpec, type WasmOperand } from './elementwise.js';
import { coalesce } from '../fusion.js';
import { takeBuffer } from '../pool.js';
import type { ReduceOp } from '../plan.js';

export interface WasmReduceSpec {
  /** The elementwise prologue over the group's inputs (its outputs are ignored). */
  readonly prologue: WasmFusedSpec;
  /** The value reduced: a prologue temp or a group input. */
  readonly reduced: WasmOperand;
  readonly op: ReduceOp;
}

type Layout = 'vector' | 'splat';
export const wasmReduceStats = { calls: 0 };

/**
 * (O, R, Kv, outRowBytes, outPtr, [ptr, strideOBytes, strideRBytes] per input); with `nested`
 * (two reduced axes that do not merge, as a bias gradient summed over [batch, time] of a
 * time-major cotangent) one more reduced level inside the first: (O, R, Kv, outRowBytes, outPtr,
 * R2, [ptr, strideOBytes, strideRBytes, strideR2Bytes] per input).
 */
/**
 * One reduced element into the accumulators, shared by both kernel forms: the prologue's equations,
 * the reduced value into V, then a sum in float64 (two f64x2 halves, ACC and ACC2) or a NaN-keeping
 * max/min in ACC.
 */
function emitAccumulate(
  f: Code,
  spec: WasmReduceSpec,
  val: readonly number[],
  tmp: readonly number[],
  { ACC, ACC2, V }: { ACC: number; ACC2: number; V: number },
): void {
  const op = (sub: number) => f.simdOp(sub);
  emitEqns(f, spec.prologue.eqns, val, tmp);
  const r = spec.reduced;
  if ('input' in r) f.get(val[r.input]);
  else if ('temp' in r) f.get(tmp[r.temp]);
  else f.f32x4Const(r.literal);
  f.set(V);
  if (spec.op === 'sum') {
    f.get(ACC).get(V);
    op(SIMD_OP.f64x2PromoteLowF32x4);
    op(SIMD_OP.f64x2Add);
    f.set(ACC);
    f.get(ACC2).get(V).get(V).shuffle([8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
    op(SIMD_OP.f64x2PromoteLowF32x4);
    op(SIMD_OP.f64x2Add);
    f.set(ACC2);
  } else {
    // acc = (v > acc || v != v) ? v : acc   (v < acc for min)
    f.get(V).get(ACC).get(V).get(ACC);
    op(spec.op === 'max' ? SIMD_OP.f32x4Gt : SIMD_OP.f32x4Lt);
    f.get(V).get(V);
    op(SIMD_OP.f32x4Ne);
    op(SIMD_OP.v128Or);
    op(SIMD_OP.v128Bitselect);
    f.set(ACC);
  }
}

function kernelBytes(spec: WasmReduceSpec, layouts: readonly Layout[], nested: boolean): Uint8Array<ArrayBuffer> {
  const nIn = spec.prologue.numInputs;
  const [O, R, KV, OUT_ROW, OUT] = [0, 1, 2, 3, 4];
  const R2 = 5;
  const first = nested ? 6 : 5;
  const per = nested ? 4 : 3;
  const ptr = (i: number) => first + per * i;
  const so = (i: number) => first + 1 + per * i;
  const sr = (i: number) => first + 2 + per * i;
  const sr2 = (i: number) => first + 3 + per * i;
  const params: ValType[] = new Array<ValType>(first + per * nIn).fill(I32);
  let next = params.length;
  const [IO, C, IR, Q] = [next++, next++, next++, next++];
  const p = Array.from({ length: nIn }, () => next++);
  const kp = Array.from({ length: nIn }, () => next++);
  const [IR2] = nested ? [next++] : [-1];
  const pr = nested ? Array.from({ length: nIn }, () => next++) : [];
  const val = Array.from({ length: nIn }, () => next++);
  const tmp = spec.prologue.eqns.map(() => next++);
  const [ACC, ACC2, V] = [next++, next++, next++];
  const locals: ValType[] = [
    ...new Array<ValType>(4 + 2 * nIn + (nested ? 1 + nIn : 0)).fill(I32),
    ...new Array<ValType>(nIn + tmp.length + 3).fill(V128),
  ];
  const f = new Code();
  f.loop(); // o
  f.get(OUT).get(IO).get(OUT_ROW).mul().add().set(Q);
  for (let i = 0; i < nIn; i++) f.get(ptr(i)).set(kp[i]);
  f.i32(0).set(C);
  f.loop(); // vectors of K
  if (spec.op === 'sum') f.v128Zero().set(ACC).v128Zero().set(ACC2);
  else f.f32x4Const(spec.op === 'max' ? -Infinity : Infinity).set(ACC);
  for (let i = 0; i < nIn; i++) f.get(kp[i]).set(p[i]);
  f.i32(0).set(IR);
  f.loop(); // r
  if (nested) {
    // The inner reduced axis, from where this r starts; then on to the next r.
    for (let i = 0; i < nIn; i++) f.get(p[i]).set(pr[i]);
    f.i32(0).set(IR2);
    f.loop(); // r2
  }
  for (let i = 0; i < nIn; i++) {
    if (layouts[i] === 'vector') f.get(p[i]).v128Load(0, 0).set(val[i]);
    else f.get(p[i]).v128Load32Splat().set(val[i]);
  }
  emitAccumulate(f, spec, val, tmp, { ACC, ACC2, V });
  if (nested) {
    for (let i = 0; i < nIn; i++) f.get(p[i]).get(sr2(i)).add().set(p[i]);
    f.get(IR2).i32(1).add().tee(IR2).get(R2).ltU().brIf(0);
    f.end();
    for (let i = 0; i < nIn; i++) f.get(pr[i]).get(sr(i)).add().set(p[i]);
  } else for (let i = 0; i < nIn; i++) f.get(p[i]).get(sr(i)).add().set(p[i]);
  f.get(IR).i32(1).add().tee(IR).get(R).ltU().brIf(0);
  f.end();
  if (spec.op === 'sum') {
    for (let lane = 0; lane < 4; lane++) {
      f.get(Q)
        .get(lane < 2 ? ACC : ACC2)
        .simdLaneOp(SIMD_OP.f64x2ExtractLane, lane % 2)
        .f32DemoteF64()
        .f32Store(4 * lane);
    }
  } else f.get(Q).get(ACC).v128Store(0, 0);
  f.get(Q).i32(16).add().set(Q);
  for (let i = 0; i < nIn; i++) if (layouts[i] === 'vector') f.get(kp[i]).i32(16).add().set(kp[i]);
  f.get(C).i32(1).add().tee(C).get(KV).ltU().brIf(0);
  f.end();
  for (let i = 0; i < nIn; i++) f.get(ptr(i)).get(so(i)).add().set(ptr(i));
  f.get(IO).i32(1).add().tee(IO).get(O).ltU().brIf(0);
  f.end();
  return encodeModule([{ name: 'run', params, results: [], locals, body: f }], 1, arenaImport());
}

/**
 * The second form, for a contiguous (or any strided) reduced axis with the kept axis outside it (a
 * per-example gradient's squared norm: sum over [1, 2] of [32, 784, 128]; a full reduction): lane
 * l accumulates output o + l, each lane walking its own row, one element per lane per step, in
 * the reduced axis's order as the JS loop does.
 * (O, R, outPtr, [ptr, keptStrideBytes, redStrideBytes] per input)
 */
function rowsKernelBytes(spec: WasmReduceSpec): Uint8Array<ArrayBuffer> {
  const nIn = spec.prologue.numInputs;
  const [O, R, OUT] = [0, 1, 2];
  const ptr = (i: number) => 3 + 3 * i;
  const ks = (i: number) => 4 + 3 * i;
  const rs = (i: number) => 5 + 3 * i;
  const params: ValType[] = new Array<ValType>(3 + 3 * nIn).fill(I32);
  let next = params.length;
  const [G, VALID, IR, Q] = [next++, next++, next++, next++];
  const off = Array.from({ length: nIn }, () => next++);
  const lane = Array.from({ length: nIn }, () => [next++, next++, next++, next++]);
  const val = Array.from({ length: nIn }, () => next++);
  const tmp = spec.prologue.eqns.map(() => next++);
  const [ACC, ACC2, V] = [next++, next++, next++];
  const locals: ValType[] = [...new Array<ValType>(4 + 5 * nIn).fill(I32), ...new Array<ValType>(nIn + tmp.length + 3).fill(V128)];
  const f = new Code();
  f.i32(0).set(G);
  f.block().loop(); // groups of four outputs
  f.get(G).get(O).geU().brIf(1);
  f.get(O).get(G).sub().set(VALID);
  f.get(VALID).i32(4).gtU().if().i32(4).set(VALID).end();
  // Lanes past the last output re-read the last row (in bounds) and are not stored.
  for (let i = 0; i < nIn; i++) {
    f.get(ptr(i)).get(G).get(ks(i)).mul().add().set(lane[i][0]);
    for (let l = 1; l < 4; l++) {
      f.get(lane[i][l - 1]).set(lane[i][l]);
      f.get(VALID).i32(l).gtU().if().get(lane[i][l]).get(ks(i)).add().set(lane[i][l]).end();
    }
    f.i32(0).set(off[i]);
  }
  if (spec.op === 'sum') f.v128Zero().set(ACC).v128Zero().set(ACC2);
  else f.f32x4Const(spec.op === 'max' ? -Infinity : Infinity).set(ACC);
  f.i32(0).set(IR);
  f.block().loop(); // r
  f.get(IR).get(R).geU().brIf(1);
  for (let i = 0; i < nIn; i++) {
    f.get(lane[i][0]).get(off[i]).add().v128Load32Splat();
    for (let l = 1; l < 4; l++) f.get(lane[i][l]).get(off[i]).add().f32Load().simdLaneOp(SIMD_OP.f32x4ReplaceLane, l);
    f.set(val[i]);
  }
  emitAccumulate(f, spec, val, tmp, { ACC, ACC2, V });
  for (let i = 0; i < nIn; i++) f.get(off[i]).get(rs(i)).add().set(off[i]);
  f.get(IR).i32(1).add().set(IR).br(0);
  f.end().end();
  f.get(OUT).get(G).i32(4).mul().add().set(Q);
  for (let l = 0; l < 4; l++) {
    f.get(VALID).i32(l).gtU().if();
    f.get(Q);
    if (spec.op === 'sum')
      f.get(l < 2 ? ACC : ACC2)
        .simdLaneOp(SIMD_OP.f64x2ExtractLane, l % 2)
        .f32DemoteF64();
    else f.get(ACC).simdLaneOp(SIMD_OP.f32x4ExtractLane, l);
    f.f32Store(4 * l);
    f.end();
  }
  f.get(G).i32(4).add().set(G).br(0);
  f.end().end();
  return encodeModule([{ name: 'run', params, results: [], locals, body: f }], 1, arenaImport());
}

/** What a reduction call needs that depends only on the shapes and strides (cached per spec). */
interface ReducePlan {
  shape: number[];
  axes: number[];
  strides: number[][];
  /** null: this layout is not one the kernel takes (the caller's JS loop runs). */
  ok: {
    /** 'vector': four adjacent kept outputs per vector; 'rows': four outputs' rows, one per lane. */
    form: 'vector' | 'rows';
    outShape: number[];
    outStrides: number[];
    outSize: number;
    O: number;
    Rn: number;
    /** The inner reduced axis's length (0: one reduced axis). */
    R2: number;
    K: number;
    spans: number[];
    keptStride: number[];
    redStride: number[];
    redStride2: number[];
    /**
     * Kept axes outside the two the kernel walks (an average pool's sum over the window axes of
     * [N, H, 2, W, 2, C] keeps [N * H, W, C]; a cropped map's, [N, H, W, C]): the kernel runs once
     * per index of them, from JS. Empty when there are none.
     */
    outerShape: number[];
    /** Per input, its strides along those axes (elements). */
    outerStrides: number[][];
    fn: KernelFn;
  } | null;
}
const reducePlans = new WeakMap<WasmReduceSpec, ReducePlan[]>();
/** Plans kept per spec: the plain reductions share one spec across a program's reduce steps. */
const PLANS_PER_SPEC = 16;

const sameNums = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function reducePlan(spec: WasmReduceSpec, inputs: readonly NDArray[], shape: readonly number[], axes: readonly number[]): ReducePlan {
  let list = reducePlans.get(spec);
  if (list === undefined) {
    list = [];
    reducePlans.set(spec, list);
  }
  for (const known of list) {
    if (
      sameNums(known.shape, shape) &&
      sameNums(known.axes, axes) &&
      known.strides.length === inputs.length &&
      inputs.every((x, i) => sameNums(x.strides, known.strides[i]))
    )
      return known;
  }
  const plan: ReducePlan = { shape: shape.slice(), axes: axes.slice(), strides: inputs.map((x) => x.strides.slice()), ok: null };
  if (list.length >= PLANS_PER_SPEC) list.shift();
  list.push(plan);
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const outShape = kept.map((i) => shape[i]);
  const outSize = outShape.reduce((a, c) => a * c, 1);
  const redSize = axes.reduce((a, ax) => a * shape[ax], 1);
  if (outSize === 0 || redSize === 0) return plan;
  if (inputs.some((x) => x.strides.some((st) => st < 0))) return plan;
  const keptPart = coalesce(
    kept.map((i) => shape[i]),
    inputs.map((x) => kept.map((i) => x.strides[i])),
  );
  const redPart = coalesce(
    axes.map((i) => shape[i]),
    inputs.map((x) => axes.map((i) => x.strides[i])),
  );
  // Kept axes past the inner two are looped over in runWasmReduce; the kernel sees the inner two.
  const extra = Math.max(0, keptPart.shape.length - 2);
  const outerShape = keptPart.shape.splice(0, extra);
  const outerStrides = keptPart.strides.map((st) => st.splice(0, extra));
  const kr = keptPart.shape.length;
  if (kr > 2 || redPart.shape.length > 2) return plan;
  const nested = redPart.shape.length === 2;
  const K = kr === 0 ? 1 : keptPart.shape[kr - 1];
  if (inputs.length === 0 && (kr < 1 || K < 4)) return plan;
  const layouts: Layout[] = [];
  for (let i = 0; i < inputs.length && kr >= 1 && K >= 4; i++) {
    const sk = keptPart.strides[i][kr - 1];
    if (sk !== 0 && sk !== 1) break;
    layouts.push(sk === 1 ? 'vector' : 'splat');
  }
  if (layouts.length < inputs.length) {
    // No contiguous kept axis: one kept axis outside the reduced one, lanes over rows. Fewer
    // than four outputs (a full reduction) stay in the JS loop, which is as fast for one row.
    if (kr !== 1 || outSize < 4 || nested || outerShape.length > 0) return plan;
    plan.ok = {
      form: 'rows',
      outShape,
      outStrides: contiguousStrides(outShape),
      outSize,
      O: outSize,
      Rn: redPart.shape[0],
      R2: 0,
      K: 1,
      spans: inputs.map((x) => x.shape.reduce((a, d, ax) => a + (d - 1) * x.strides[ax], 0) + 1),
      keptStride: inputs.map((_, i) => keptPart.strides[i][0]),
      redStride: inputs.map((_, i) => redPart.strides[i][0]),
      redStride2: inputs.map(() => 0),
      outerShape,
      outerStrides,
      fn: cachedKernel('reduce-rows', spec, [], () => rowsKernelBytes(spec)),
    };
    return plan;
  }
  // Looping from JS costs a call per outer index: worth it only when each call has some work.
  const innerOutputs = (kr === 2 ? keptPart.shape[0] : 1) * K;
  if (outerShape.length > 0 && innerOutputs * redSize < 256) return plan;
  plan.ok = {
    form: 'vector',
    outShape,
    outStrides: contiguousStrides(outShape),
    outSize,
    O: kr === 2 ? keptPart.shape[0] : 1,
    Rn: redPart.shape[0],
    R2: nested ? redPart.shape[1] : 0,
    K,
    spans: inputs.map((x) => x.shape.reduce((a, d, ax) => a + (d - 1) * x.strides[ax], 0) + 1),
    keptStride: inputs.map((_, i) => (kr === 2 ? keptPart.strides[i][0] : 0)),
    redStride: inputs.map((_, i) => redPart.strides[i][0]),
    redStride2: inputs.map((_, i) => (nested ? redPart.strides[i][1] : 0)),
    outerShape,
    outerStrides,
    fn: cachedKernel(nested ? 'reduce2' : 'reduce', spec, layouts, () => kernelBytes(spec, layouts, nested)),
  };
  return plan;
}

/**
 * Reduces `spec` over `axes` of inputs of logical `shape`; the output has the kept axes, as
 * contiguous float32 from the buffer pool. Null when WebAssembly SIMD is off or the layout is not
 * the one above.
 */
export function runWasmReduce(
  spec: WasmReduceSpec,
  inputs: readonly NDArray[],
  shape: readonly number[],
  axes: readonly number[],
): NDArray | null {
  if (elementwiseBackendName() !== 'wasm-simd') return null;
  const p = reducePlan(spec, inputs, shape, axes).ok;
  if (p === null) return null;
  const { O, K, spans, outSize } = p;
  // Each input is read in place when it lives in the arena, otherwise its whole span is copied
  // (views stay views: the kernel walks their strides).
  const inPlace = inputs.map((x) => residentOffset(x.data, x.offset));
  for (let i = 0; i < inputs.length; i++) if (inPlace[i] < 0 && spans[i] > 2 * inputs[i].size + 64) return null;
  const out = takeBuffer('float32', outSize) as Float32Array;
  const outInPlace = residentOffset(out);
  let used = 0;
  const at = spans.map((sp, i) => {
    if (inPlace[i] >= 0) return -1;
    const a = used;
    used += Math.ceil(sp / 4) * 4 + 4;
    return a;
  });
  const outAt = outInPlace >= 0 ? -1 : used;
  if (outAt >= 0) used += outSize + 4;
  const block = used > 0 ? arenaAlloc(used * 4) : 0;
  if (block < 0) return null;
  const h = arenaF32();
  const base = block >> 2;
  const outPtr = outAt < 0 ? outInPlace : block + outAt * 4;
  const args = p.form === 'rows' ? [O, p.Rn, outPtr] : [O, p.Rn, Math.ceil(K / 4), K * 4, outPtr];
  if (p.R2 > 0) args.push(p.R2);
  const ptrAt: number[] = [];
  for (let i = 0; i < inputs.length; i++) {
    const x = inputs[i];
    if (at[i] >= 0) h.set((x.data as Float32Array).subarray(x.offset, x.offset + spans[i]), base + at[i]);
    ptrAt.push(args.length);
    args.push(at[i] < 0 ? inPlace[i] : block + at[i] * 4, p.keptStride[i] * 4, p.redStride[i] * 4);
    if (p.R2 > 0) args.push(p.redStride2[i] * 4);
  }
  p.fn(...args);
  // The outer kept axes (an odometer over them): the same call moved along each.
  const outer = p.outerShape;
  if (outer.length > 0) {
    const idx = new Array<number>(outer.length).fill(0);
    const outAtArg = p.form === 'rows' ? 2 : 4;
    const outStep = O * K * 4;
    for (;;) {
      let d = outer.length - 1;
      while (d >= 0 && idx[d] === outer[d] - 1) {
        // Rewind axis d to 0 and carry into the axis outside it.
        for (let i = 0; i < inputs.length; i++) args[ptrAt[i]] -= idx[d] * p.outerStrides[i][d] * 4;
        idx[d] = 0;
        d--;
      }
      if (d < 0) break;
      idx[d]++;
      for (let i = 0; i < inputs.length; i++) args[ptrAt[i]] += p.outerStrides[i][d] * 4;
      args[outAtArg] += outStep;
      p.fn(...args);
    }
  }
  wasmReduceStats.calls++;
  if (outAt >= 0) out.set(h.subarray(base + outAt, base + outAt + outSize));
  if (used > 0) arenaFree(block, used * 4);
  return new NDArray(makeView(out, p.outShape.slice(), p.outStrides, 0), 'float32');
}
