/**
 * The fused-loop interpreter (core/backend/fusion.ts interpretKernel over SCALAR_OPS' evaluate), used where
 * `new Function` is forbidden: bit-identical to the generated JS loops (compileKernel) on random
 * programs over every elementwise primitive and dtype, random strided layouts (broadcast, reversed,
 * offset views), special values, and sum/max/min reductions. End to end: training in a Node process
 * started with --disallow-code-generation-from-strings (what a strict CSP does to `new Function`)
 * gives the same losses and weights, bit for bit, as with code generation allowed.
 */
import fc from 'fast-check';
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { allocate, type DType, type TypedArray } from '../../core/dtype.js';
import {
  compileKernel,
  interpretKernel,
  opLine,
  type ElementwisePrim,
  type FusedArg,
  type FusedOp,
  type FusedProgram,
} from '../../core/backend/fusion.js';
import { SCALAR_OPS } from '../../core/backend/scalar-ops.js';
import { rng } from './fixtures/rng.js';

const FLOAT_UNARY: ElementwisePrim[] = ['neg', 'exp', 'log', 'log1p', 'sqrt', 'tanh', 'logistic', 'abs', 'sign', 'floor', 'stop_gradient'];
const INT_UNARY: ElementwisePrim[] = ['neg', 'abs', 'sign'];
const ARITH: ElementwisePrim[] = ['add', 'sub', 'mul', 'div', 'max', 'min'];
const COMPARE: ElementwisePrim[] = ['lt', 'le', 'gt', 'ge', 'eq', 'ne'];
const NUMERIC: DType[] = ['float32', 'float64', 'int32', 'uint32'];
const SPECIAL = [NaN, 0, -0, Infinity, -Infinity, 1, -1, 0.5, 3e38, -3e38, 1e-45, 1e-310, 2 ** 31, -(2 ** 31), 2 ** 32 - 1, 7, -7];

t.test('the random programs cover every elementwise primitive of the scalar-op table', async (t) => {
  const prims = Object.keys(SCALAR_OPS).sort();
  t.same(prims, [...new Set([...FLOAT_UNARY, ...ARITH, ...COMPARE, 'pow', 'where', 'cast'])].sort());
});

interface Case {
  prog: FusedProgram;
  inputs: TypedArray[];
  offsets: number[];
  strides: number[][];
  shape: number[];
  innerRank: number;
}

/** A random well-typed program, its inputs and their strided layouts, from one seed. */
function randomCase(seed: number): Case {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const numInputs = 1 + Math.floor(r() * 3);
  const inDtypes = Array.from({ length: numInputs }, () => pick<DType>([...NUMERIC, 'bool']));
  const regs: { arg: FusedArg; dtype: DType }[] = inDtypes.map((dtype, i) => ({ arg: { input: i }, dtype }));
  const ops: FusedOp[] = [];
  const literal = (dtype: DType): FusedArg => {
    const v = r() < 0.5 ? pick(SPECIAL) : (r() - 0.5) * 10;
    const stored = allocate(dtype, 1);
    stored[0] = dtype === 'bool' ? (v ? 1 : 0) : v;
    return { literal: stored[0] };
  };
  const operand = (dtype: DType): FusedArg => {
    const same = regs.filter((x) => x.dtype === dtype);
    if (same.length > 0 && r() < 0.8) return pick(same).arg;
    if (dtype !== 'bool' && r() < 0.5) return literal(dtype);
    // Convert some register to the dtype wanted.
    const from = pick(regs);
    ops.push({ prim: 'cast', params: { dtype }, dtype, args: [from.arg] });
    regs.push({ arg: { temp: ops.length - 1 }, dtype });
    return { temp: ops.length - 1 };
  };
  const numOps = 1 + Math.floor(r() * 8);
  for (let k = 0; k < numOps; k++) {
    const dtype = pick(NUMERIC);
    const isFloat = dtype === 'float32' || dtype === 'float64';
    const kind = r();
    let op: FusedOp;
    if (kind < 0.25) op = { prim: pick(isFloat ? FLOAT_UNARY : INT_UNARY), params: {}, dtype, args: [operand(dtype)] };
    else if (kind < 0.55)
      op = { prim: isFloat && r() < 0.15 ? 'pow' : pick(ARITH), params: {}, dtype, args: [operand(dtype), operand(dtype)] };
    else if (kind < 0.7) op = { prim: pick(COMPARE), params: {}, dtype: 'bool', args: [operand(dtype), operand(dtype)] };
    else if (kind < 0.85) op = { prim: 'where', params: {}, dtype, args: [operand('bool'), operand(dtype), operand(dtype)] };
    else op = { prim: 'cast', params: { dtype }, dtype, args: [pick(regs).arg] };
    ops.push(op);
    regs.push({ arg: { temp: ops.length - 1 }, dtype: op.dtype });
  }
  const temps = ops.map((_, k) => `t${k}`);
  const rank = 1 + Math.floor(r() * 3);
  const shape = Array.from({ length: rank }, () => 1 + Math.floor(r() * 5));
  const reduce = r() < 0.35 ? pick(['sum', 'max', 'min'] as const) : undefined;
  const innerRank = reduce ? 1 + Math.floor(r() * rank) : 0;
  const lastOp = ops[ops.length - 1];
  const outputs = reduce ? [temps[temps.length - 1]] : temps.filter(() => r() < 0.4).concat(temps[temps.length - 1]);
  const outDtypes = reduce ? [lastOp.dtype === 'bool' ? 'float32' : lastOp.dtype] : outputs.map((name) => ops[Number(name.slice(1))].dtype);
  const prog: FusedProgram = {
    numInputs,
    ops,
    lines: ops.map((op, k) => opLine(k, op)),
    outputs,
    outDtypes: outDtypes as DType[],
    ...(reduce ? { reduce: { op: reduce, axes: [] } } : {}),
  };
  // Each input: a buffer with room for any stride pattern; per axis a stride of 0 (broadcast),
  // the contiguous one, or the contiguous one reversed (starting from the far end).
  const inputs: TypedArray[] = [];
  const offsets: number[] = [];
  const strides: number[][] = [];
  for (const dtype of inDtypes) {
    let size = 1;
    const st = new Array<number>(rank);
    let offset = Math.floor(r() * 3);
    for (let d = rank - 1; d >= 0; d--) {
      const kind = r();
      st[d] = kind < 0.2 ? 0 : kind < 0.4 ? -size : size;
      if (st[d] < 0) offset += size * (shape[d] - 1);
      if (st[d] !== 0) size *= shape[d];
    }
    const data = allocate(dtype, size + offset + 2);
    for (let i = 0; i < data.length; i++) data[i] = dtype === 'bool' ? (r() < 0.5 ? 1 : 0) : r() < 0.3 ? pick(SPECIAL) : (r() - 0.5) * 20;
    inputs.push(data);
    offsets.push(offset);
    strides.push(st);
  }
  return { prog, inputs, offsets, strides, shape, innerRank };
}

/** The stored values (Object.is tells -0 from 0 and takes any NaN as NaN). */
const bits = (x: TypedArray): number[] => Array.from(x);

t.test('interpreted loops equal the generated loops bit for bit on random programs', async (t) => {
  let checked = 0;
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
      const c = randomCase(seed);
      const rank = c.shape.length;
      const outSize = c.shape.slice(0, rank - c.innerRank).reduce((a, b) => a * b, 1);
      const run = (kernel: ReturnType<typeof compileKernel>): TypedArray[] => {
        const outs = c.prog.outDtypes.map((dt) => allocate(dt, outSize));
        kernel(
          c.inputs.slice(),
          c.offsets.slice(),
          c.strides.map((s) => s.slice()),
          outs,
          c.shape.slice(),
        );
        return outs;
      };
      const compiled = run(compileKernel(c.prog, rank, c.innerRank));
      const interpreted = run(interpretKernel(c.prog, rank, c.innerRank));
      checked++;
      for (let j = 0; j < compiled.length; j++) {
        const a = bits(compiled[j]);
        const b = bits(interpreted[j]);
        for (let i = 0; i < a.length; i++) {
          if (!Object.is(a[i], b[i]))
            throw new Error(`seed ${seed}, output ${j}, element ${i}: compiled ${a[i]}, interpreted ${b[i]}\n${c.prog.lines.join('\n')}`);
        }
      }
    }),
    { numRuns: 400 },
  );
  t.equal(checked, 400);
});

t.test('float32 rounding happens after every op, as in the generated code', async (t) => {
  // (a*b)+c with a*b rounded to float32 first differs from the float64 fused value.
  const a = Math.fround(1 + 2 ** -20);
  const prog: FusedProgram = (() => {
    const ops: FusedOp[] = [
      { prim: 'mul', params: {}, dtype: 'float32', args: [{ input: 0 }, { input: 0 }] },
      { prim: 'sub', params: {}, dtype: 'float32', args: [{ temp: 0 }, { literal: 1 }] },
    ];
    return { numInputs: 1, ops, lines: ops.map((op, k) => opLine(k, op)), outputs: ['t1'], outDtypes: ['float32'] };
  })();
  const out = new Float32Array(1);
  interpretKernel(prog, 1, 0)([new Float32Array([a])], [0], [[1]], [out], [1]);
  t.equal(out[0], Math.fround(Math.fround(a * a) - 1));
  t.not(out[0], Math.fround(a * a - 1), 'not the unrounded product');
});

t.test('training without code generation from strings gives the same losses and weights', async (t) => {
  const run = (flags: string[]): string =>
    execFileSync(process.execPath, [...flags, '--import', 'tsx', 'test/backend/fixtures/train-steps.ts'], {
      encoding: 'utf8',
      timeout: 240_000,
    })
      .trim()
      .split('\n')
      .pop() ?? '';
  type Result = { codegen: boolean; losses: number[]; sum: number };
  const allowed = JSON.parse(run([])) as Result;
  const forbidden = JSON.parse(run(['--disallow-code-generation-from-strings'])) as Result;
  t.equal(allowed.codegen, true, 'the generated loops ran in the first process');
  t.equal(forbidden.codegen, false, 'the interpreter ran in the second');
  t.ok(allowed.losses.length > 10, `${allowed.losses.length} steps`);
  t.same(forbidden.losses, allowed.losses, 'losses bit for bit');
  t.equal(forbidden.sum, allowed.sum, 'final kernel checksum');
});
