/**
 * A tiny WebAssembly binary encoder: just the sections and instructions the matmul kernel needs
 * (i32 arithmetic, structured control flow, and a handful of 128-bit SIMD ops). Writing the bytes
 * here keeps the kernel generated at load time from TypeScript, with no assembler dependency and
 * no binary blob in the repository.
 *
 * Reference: the WebAssembly core specification, "Binary Format" (sections 5.x), and the SIMD
 * proposal's opcode table (all SIMD instructions are `0xfd` followed by a LEB128 sub-opcode).
 */

/** Value types. */
export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof V128;

/** Block type with no result. */
const EMPTY = 0x40;

export function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

export function sleb(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function str(s: string): number[] {
  const bytes = Array.from(new TextEncoder().encode(s));
  return [...uleb(bytes.length), ...bytes];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/**
 * Instruction emitter for one function body. Methods push opcodes and return `this`, so bodies
 * read like the WebAssembly text format: `f.get(x).i32(4).add().set(x)`.
 */
export class Code {
  readonly bytes: number[] = [];

  private op(...b: number[]): this {
    for (const x of b) this.bytes.push(x);
    return this;
  }
  private simd(sub: number, ...rest: number[]): this {
    return this.op(0xfd, ...uleb(sub), ...rest);
  }
  private memarg(alignLog2: number, offset: number): number[] {
    return [...uleb(alignLog2), ...uleb(offset)];
  }

  // Variables and constants.
  get(local: number): this {
    return this.op(0x20, ...uleb(local));
  }
  set(local: number): this {
    return this.op(0x21, ...uleb(local));
  }
  tee(local: number): this {
    return this.op(0x22, ...uleb(local));
  }
  i32(value: number): this {
    return this.op(0x41, ...sleb(value));
  }

  // i32 arithmetic and comparisons.
  add(): this {
    return this.op(0x6a);
  }
  sub(): this {
    return this.op(0x6b);
  }
  mul(): this {
    return this.op(0x6c);
  }
  shl(): this {
    return this.op(0x74);
  }
  eq(): this {
    return this.op(0x46);
  }
  ne(): this {
    return this.op(0x47);
  }
  and(): this {
    return this.op(0x71);
  }
  or(): this {
    return this.op(0x72);
  }
  eqz(): this {
    return this.op(0x45);
  }
  ltU(): this {
    return this.op(0x49);
  }
  geU(): this {
    return this.op(0x4f);
  }

  // Control flow. Labels are relative depths, as in the binary format.
  block(): this {
    return this.op(0x02, EMPTY);
  }
  loop(): this {
    return this.op(0x03, EMPTY);
  }
  if(): this {
    return this.op(0x04, EMPTY);
  }
  else(): this {
    return this.op(0x05);
  }
  end(): this {
    return this.op(0x0b);
  }
  br(depth: number): this {
    return this.op(0x0c, ...uleb(depth));
  }
  brIf(depth: number): this {
    return this.op(0x0d, ...uleb(depth));
  }
  call(funcIndex: number): this {
    return this.op(0x10, ...uleb(funcIndex));
  }

  // Scalar memory access (bit-exact copies: integer loads/stores never touch float payloads).
  i32Load(offset = 0): this {
    return this.op(0x28, ...this.memarg(2, offset));
  }
  i64Load(offset = 0): this {
    return this.op(0x29, ...this.memarg(3, offset));
  }
  i32Store(offset = 0): this {
    return this.op(0x36, ...this.memarg(2, offset));
  }
  i64Store(offset = 0): this {
    return this.op(0x37, ...this.memarg(3, offset));
  }

  // SIMD (opcodes from the fixed-width SIMD proposal, now part of WebAssembly 2.0).
  /** v128.load: 16 bytes at address + offset. */
  v128Load(offset = 0, alignLog2 = 4): this {
    return this.simd(0x00, ...this.memarg(alignLog2, offset));
  }
  /** v128.load32_splat: one f32/i32 at address + offset, copied to all four lanes. */
  v128Load32Splat(offset = 0): this {
    return this.simd(0x09, ...this.memarg(2, offset));
  }
  /** v128.store: [address, value] -> (). */
  v128Store(offset = 0, alignLog2 = 4): this {
    return this.simd(0x0b, ...this.memarg(alignLog2, offset));
  }
  /** v128.load8_splat: one byte at address + offset, in all 16 lanes. */
  v128Load8Splat(offset = 0): this {
    return this.simd(0x07, ...this.memarg(0, offset));
  }
  /** v128.load32_zero: 4 bytes at address + offset into the low lane, zeros elsewhere. */
  v128Load32Zero(offset = 0): this {
    return this.simd(0x5c, ...this.memarg(0, offset));
  }
  /** v128.store32_lane: [address, value] -> (), stores i32 lane `lane`. */
  v128Store32Lane(lane: number, offset = 0): this {
    return this.simd(0x5a, ...this.memarg(0, offset), lane);
  }
  /** v128.const with all bits zero (+0.0 in every f32 lane). */
  v128Zero(): this {
    return this.simd(0x0c, ...new Array<number>(16).fill(0));
  }
  f32x4Add(): this {
    return this.simd(0xe4);
  }
  f32x4Mul(): this {
    return this.simd(0xe6);
  }
  /** f32x4.relaxed_madd (relaxed SIMD): a * b + c, fused or not as the engine chooses. */
  f32x4RelaxedMadd(): this {
    return this.simd(0x105);
  }
  /** v128.const with four f32 lanes of `value` (rounded to float32). */
  f32x4Const(value: number): this {
    const lane = new Uint8Array(new Float32Array([value]).buffer);
    return this.simd(0x0c, ...lane, ...lane, ...lane, ...lane);
  }
  // Scalar f32 and the few other scalar instructions the sparse kernels use.
  f32Load(offset = 0): this {
    return this.op(0x2a, ...this.memarg(2, offset));
  }
  f32Store(offset = 0): this {
    return this.op(0x38, ...this.memarg(2, offset));
  }
  f32Const(value: number): this {
    return this.op(0x43, ...new Uint8Array(new Float32Array([value]).buffer));
  }
  f32Ne(): this {
    return this.op(0x5c);
  }
  gtU(): this {
    return this.op(0x4b);
  }
  /** i32x4.extract_lane */
  i32x4ExtractLane(lane: number): this {
    return this.simd(0x1b, lane);
  }
  xor(): this {
    return this.op(0x73);
  }
  /** v128.const with four i32 lanes. */
  i32x4Const(lanes: readonly [number, number, number, number]): this {
    const bytes = new Uint8Array(new Int32Array(lanes).buffer);
    return this.simd(0x0c, ...bytes);
  }
  f32DemoteF64(): this {
    return this.op(0xb6);
  }
  /** A SIMD instruction with one lane-index immediate (extract_lane, replace_lane). */
  simdLaneOp(sub: number, lane: number): this {
    return this.simd(sub, lane);
  }
  /** i8x16.shuffle with its 16 lane indices. */
  shuffle(lanes: readonly number[]): this {
    return this.simd(0x0d, ...lanes);
  }
  /** Any instruction of the SIMD table by its sub-opcode (see SIMD_OP). */
  simdOp(sub: number): this {
    return this.simd(sub);
  }
}

/** Sub-opcodes of the 0xfd-prefixed SIMD instructions used by the generated elementwise kernels. */
export const SIMD_OP = {
  f32x4Eq: 0x41,
  f32x4Ne: 0x42,
  f32x4Lt: 0x43,
  f32x4Gt: 0x44,
  f32x4Le: 0x45,
  f32x4Ge: 0x46,
  v128Not: 0x4d,
  v128And: 0x4e,
  v128Or: 0x50,
  v128Bitselect: 0x52,
  v128AnyTrue: 0x53,
  i8x16NarrowI16x8U: 0x66,
  i16x8NarrowI32x4U: 0x86,
  i16x8ExtendLowI8x16U: 0x89,
  i32x4ExtendLowI16x8U: 0xa9,
  i32x4Ne: 0x38,
  f64x2ExtractLane: 0x21,
  f32x4ExtractLane: 0x1f,
  f32x4ReplaceLane: 0x20,
  f64x2PromoteLowF32x4: 0x5f,
  f64x2Add: 0xf0,
  i32x4Sub: 0xb1,
  f32x4Floor: 0x68,
  f32x4Abs: 0xe0,
  f32x4Neg: 0xe1,
  f32x4Sqrt: 0xe3,
  f32x4Add: 0xe4,
  f32x4Sub: 0xe5,
  f32x4Mul: 0xe6,
  f32x4Div: 0xe7,
} as const;

export interface FuncDef {
  name?: string;
  params: ValType[];
  results: ValType[];
  /** Extra locals, numbered after the params. */
  locals: ValType[];
  body: Code;
}

/**
 * Encodes a module with the given functions and one growable memory: its own, exported as
 * "memory" (`memoryPages` initial pages), or, with `importMemory`, one imported as "env"."memory"
 * so that several generated modules can share one memory.
 */
export function encodeModule(
  funcs: FuncDef[],
  memoryPages = 1,
  importMemory: boolean | { readonly sharedMaxPages: number } = false,
): Uint8Array<ArrayBuffer> {
  const typeSec = vec(funcs.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec(f.results.map((t) => [t]))]));
  const funcSec = vec(funcs.map((_, i) => uleb(i)));
  const memSec = vec([[0x00, ...uleb(memoryPages)]]);
  // Limits: 0x00 min, or 0x03 min max for a shared memory (threads).
  const limits =
    typeof importMemory === 'object' ? [0x03, ...uleb(memoryPages), ...uleb(importMemory.sharedMaxPages)] : [0x00, ...uleb(memoryPages)];
  const importSec = vec([[...str('env'), ...str('memory'), 0x02, ...limits]]);
  const exports: number[][] = importMemory ? [] : [[...str('memory'), 0x02, 0x00]];
  funcs.forEach((f, i) => {
    if (f.name) exports.push([...str(f.name), 0x00, ...uleb(i)]);
  });
  const codeSec = vec(
    funcs.map((f) => {
      // Run-length encode the locals' types.
      const groups: number[][] = [];
      for (const t of f.locals) {
        const last = groups[groups.length - 1];
        if (last && last[1] === t) last[0]++;
        else groups.push([1, t]);
      }
      const body = [...vec(groups.map(([count, t]) => [...uleb(count), t])), ...f.body.bytes, 0x0b];
      return [...uleb(body.length), ...body];
    }),
  );
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, typeSec),
    ...(importMemory ? section(2, importSec) : []),
    ...section(3, funcSec),
    ...(importMemory ? [] : section(5, memSec)),
    ...section(7, vec(exports)),
    ...section(10, codeSec),
  ]);
}
