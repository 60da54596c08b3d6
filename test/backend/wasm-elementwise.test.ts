/**
 * Fused float32 elementwise groups as WebAssembly SIMD kernels (core/backend/wasm/elementwise.ts):
 * bit-identical to the JS loop path (core/backend/fusion.ts) and to eager evaluation on random
 * expression programs over random layouts (broadcasts, stride-0 inputs, transposed and sliced
 * views, odd row lengths) and special values (NaN, +-0, +-Inf, subnormals, huge and tiny);
 * hand-computed NaN / signed-zero rules of maximum, minimum, sign, floor, where-on-cast; an Adam
 * update checked against a per-operation float32 reference; groups that WebAssembly cannot run
 * (exp, float64, below the size threshold) stay correct and make no WebAssembly call; -0 literals
 * keep their sign on every path and in every cache.
 */
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { rng } from './fixtures/rng.js';
import { firstBitDifference } from './fixtures/compare.js';
import {
  abs,
  add,
  broadcastTo,
  cast,
  div,
  equal,
  exp,
  floor,
  fromTyped,
  greater,
  greaterEqual,
  jit,
  less,
  lessEqual,
  maximum,
  minimum,
  mul,
  neg,
  notEqual,
  sign,
  slice,
  sqrt,
  sub,
  transpose,
  where,
  NDArray,
  type Tensor,
} from '../../core/index.js';
import { setElementwiseBackend, wasmElementwiseStats, elementwiseBackendName } from '../../core/backend/wasm/elementwise.js';
import { wasmSimdAvailable } from '../../core/backend/wasm/index.js';
import { residentArray } from '../../core/backend/wasm/kernel-cache.js';
import ndarray from 'ndarray';

const simd = wasmSimdAvailable();
t.teardown(() => setElementwiseBackend('auto'));

// ----------------------------------------------------------------------------- comparing bits

const show = (v: number): string => (Object.is(v, -0) ? '-0' : String(v));

function f32(x: Tensor): Float32Array {
  if (x.dtype !== 'float32') throw new Error(`expected float32, got ${x.dtype}`);
  return x.toTyped() as Float32Array;
}

/** The same view (shape, strides, offset) over a copy of its buffer that lives in the kernels' arena. */
function toArena(x: NDArray): NDArray {
  const copy = residentArray(x.dtype, x.data.length);
  if (copy === null) return x;
  copy.set(x.data as never);
  return new NDArray(ndarray(copy, x.shape.slice(), x.strides.slice(), x.offset), x.dtype);
}

/** Runs `f(...args)` with the given elementwise backend; returns the outputs and the WASM calls made. */
function runWith(
  backend: 'js' | 'wasm-simd' | 'auto',
  f: (...a: NDArray[]) => Tensor[],
  args: NDArray[],
): { outs: Tensor[]; calls: number } {
  setElementwiseBackend(backend);
  const c0 = wasmElementwiseStats.calls;
  const outs = f(...args);
  return { outs, calls: wasmElementwiseStats.calls - c0 };
}

// ----------------------------------------------------------------------------- random programs

type UnOp = 'neg' | 'abs' | 'sqrt' | 'floor' | 'sign';
type BinOp = 'add' | 'sub' | 'mul' | 'div' | 'maximum' | 'minimum';
type CmpOp = 'lt' | 'le' | 'gt' | 'ge' | 'eq' | 'ne';

/** An expression producing float32; literals (numbers) only ever sit beside a non-literal operand. */
type Expr =
  | { k: 'in'; i: number }
  | { k: 'un'; op: UnOp; a: Expr }
  | { k: 'bin'; op: BinOp; a: Expr; b: Expr | number; swap: boolean }
  | { k: 'where'; c: Cond; a: Expr | number; b: Expr | number }
  | { k: 'toF32'; c: Cond };
/** A bool-valued condition: a comparison, or cast(float32 -> bool). */
type Cond = { k: 'cmp'; op: CmpOp; a: Expr; b: Expr | number; swap: boolean } | { k: 'truthy'; a: Expr };

/** Literals that float32 holds exactly (so the WebAssembly generator accepts them), -0 included. */
const LITERALS = [
  0,
  -0,
  1,
  -1,
  0.5,
  2,
  -3,
  0.25,
  1.5,
  Math.fround(0.1),
  Math.fround(1 / 3),
  Math.fround(1e-3),
  65504,
  Math.fround(1e30),
  Math.fround(3e38),
  Math.fround(1e-40),
  1.401298464324817e-45,
  Math.fround(1.1754943508222875e-38),
  Infinity,
  -Infinity,
];

const UN: UnOp[] = ['neg', 'abs', 'sqrt', 'floor', 'sign'];
const BIN: BinOp[] = ['add', 'sub', 'mul', 'div', 'maximum', 'minimum'];
const CMP: CmpOp[] = ['lt', 'le', 'gt', 'ge', 'eq', 'ne'];

const { expr: exprArb } = fc.letrec<{ expr: Expr; operand: Expr | number; cond: Cond }>((tie) => ({
  expr: fc.oneof(
    { maxDepth: 6, depthIdentifier: 'expr' },
    fc.record({ k: fc.constant('in' as const), i: fc.nat({ max: 3 }) }),
    fc.record({ k: fc.constant('un' as const), op: fc.constantFrom(...UN), a: tie('expr') }),
    fc.record({ k: fc.constant('bin' as const), op: fc.constantFrom(...BIN), a: tie('expr'), b: tie('operand'), swap: fc.boolean() }),
    fc.record({ k: fc.constant('bin' as const), op: fc.constantFrom(...BIN), a: tie('expr'), b: tie('expr'), swap: fc.boolean() }),
    fc.record({ k: fc.constant('where' as const), c: tie('cond'), a: tie('operand'), b: tie('operand') }),
    fc.record({ k: fc.constant('toF32' as const), c: tie('cond') }),
  ),
  operand: fc.oneof({ depthIdentifier: 'expr' }, fc.constantFrom(...LITERALS), tie('expr')),
  cond: fc.oneof(
    { depthIdentifier: 'expr' },
    fc.record({ k: fc.constant('cmp' as const), op: fc.constantFrom(...CMP), a: tie('expr'), b: tie('operand'), swap: fc.boolean() }),
    fc.record({ k: fc.constant('truthy' as const), a: tie('expr') }),
  ),
}));

function evalExpr(e: Expr, xs: Tensor[]): Tensor {
  const ev = (o: Expr | number): Tensor | number => (typeof o === 'number' ? o : evalExpr(o, xs));
  switch (e.k) {
    case 'in':
      return xs[e.i % xs.length];
    case 'un':
      return { neg, abs, sqrt, floor, sign }[e.op](evalExpr(e.a, xs));
    case 'bin': {
      const [a, b] = e.swap ? [ev(e.b), evalExpr(e.a, xs)] : [evalExpr(e.a, xs), ev(e.b)];
      return { add, sub, mul, div, maximum, minimum }[e.op](a, b);
    }
    case 'where':
      return where(evalCond(e.c, xs), ev(e.a), ev(e.b));
    case 'toF32':
      return cast(evalCond(e.c, xs), 'float32');
  }
}

function evalCond(c: Cond, xs: Tensor[]): Tensor {
  if (c.k === 'truthy') return cast(evalExpr(c.a, xs), 'bool');
  const a = evalExpr(c.a, xs);
  const b = typeof c.b === 'number' ? c.b : evalExpr(c.b, xs);
  const [l, r] = c.swap ? [b, a] : [a, b];
  return { lt: less, le: lessEqual, gt: greater, ge: greaterEqual, eq: equal, ne: notEqual }[c.op](l, r);
}

function inputsUsed(e: Expr | number | Cond, used: Set<number>, n: number): void {
  if (typeof e === 'number') return;
  switch (e.k) {
    case 'in':
      used.add(e.i % n);
      return;
    case 'un':
    case 'truthy':
      inputsUsed(e.a, used, n);
      return;
    case 'bin':
    case 'cmp':
      inputsUsed(e.a, used, n);
      inputsUsed(e.b, used, n);
      return;
    case 'where':
      inputsUsed(e.c, used, n);
      inputsUsed(e.a, used, n);
      inputsUsed(e.b, used, n);
      return;
    case 'toF32':
      inputsUsed(e.c, used, n);
  }
}

const showExpr = (e: Expr | number | Cond): string => {
  if (typeof e === 'number') return show(e);
  switch (e.k) {
    case 'in':
      return `x${e.i}`;
    case 'un':
      return `${e.op}(${showExpr(e.a)})`;
    case 'bin':
      return e.swap ? `${e.op}(${showExpr(e.b)}, ${showExpr(e.a)})` : `${e.op}(${showExpr(e.a)}, ${showExpr(e.b)})`;
    case 'where':
      return `where(${showExpr(e.c)}, ${showExpr(e.a)}, ${showExpr(e.b)})`;
    case 'toF32':
      return `f32(${showExpr(e.c)})`;
    case 'cmp':
      return e.swap ? `${e.op}(${showExpr(e.b)}, ${showExpr(e.a)})` : `${e.op}(${showExpr(e.a)}, ${showExpr(e.b)})`;
    case 'truthy':
      return `bool(${showExpr(e.a)})`;
  }
};

/**
 * How an input reaches the program (all have the output's logical shape unless broadcast):
 * full: contiguous; bcast: size-1 axes and/or missing leading axes, broadcast by the ops;
 * scalar: shape []; stride0: a full-shape view with stride-0 axes (as data's tileTime makes);
 * transposed / sliced: such a view made outside; inTransposed / inSliced: the same made inside jit.
 */
type Kind = 'full' | 'bcast' | 'scalar' | 'stride0' | 'transposed' | 'sliced' | 'inTransposed' | 'inSliced';
const KINDS: Kind[] = ['full', 'bcast', 'scalar', 'stride0', 'transposed', 'sliced', 'inTransposed', 'inSliced'];
const BROADCASTING = new Set<Kind>(['bcast', 'scalar', 'stride0']);

interface InputSpec {
  kind: Kind;
  /** Per axis: bcast/stride0 make the axis size 1 when set; transposed: a sort key for the permutation; sliced: extra length. */
  axisBits: number[];
  drop: number;
  seed: number;
}

/**
 * Groups with fewer elements than core/backend/cpu-compile.ts WASM_ELEMENTWISE_MIN stay in JS; the
 * tests count on WebAssembly only from this size on (the constant has been 64 and 256).
 */
const WASM_SURE = 256;

/** Shapes of rank 1-3 whose dims are and are not multiples of 4 (rows with odd column counts included). */
const shapeArb: fc.Arbitrary<number[]> = fc.oneof(
  fc.array(fc.constantFrom(1, 3, 4, 7, 63, 64, 65, 255, 256, 257, 300, 1001), { minLength: 1, maxLength: 1 }),
  fc.array(fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33, 40, 65), { minLength: 2, maxLength: 2 }),
  fc.array(fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 33), { minLength: 3, maxLength: 3 }),
);

const caseArb = fc.record({
  shape: shapeArb,
  inputs: fc.array(
    fc.record({
      kind: fc.constantFrom(...KINDS),
      axisBits: fc.array(fc.nat({ max: 3 }), { minLength: 3, maxLength: 3 }),
      drop: fc.nat({ max: 2 }),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    }),
    { minLength: 1, maxLength: 4 },
  ),
  outputs: fc.array(exprArb, { minLength: 1, maxLength: 2 }),
  special: fc.constantFrom(0.1, 0.3, 0.6),
});
type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

/** Special float32 values: NaN, signed zeros and infinities, subnormals, extremes, exact halves (floor). */
const SPECIALS = [
  NaN,
  0,
  -0,
  Infinity,
  -Infinity,
  1.401298464324817e-45,
  -1.401298464324817e-45,
  Math.fround(1e-40),
  -Math.fround(3e-39),
  Math.fround(1.1754943508222875e-38),
  -Math.fround(1.1754943508222875e-38),
  Math.fround(3.4028234663852886e38),
  -Math.fround(3.4028234663852886e38),
  Math.fround(1e-30),
  -Math.fround(1e30),
  1,
  -1,
  0.5,
  -0.5,
  1.5,
  -2.5,
  2,
  3,
  0.1,
  -0.1,
];

function fill(n: number, seed: number, special: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (next() < special) out[i] = SPECIALS[Math.floor(next() * SPECIALS.length)];
    else {
      // Magnitudes from 1e-12 to 1e12, random sign; sometimes small integers (ties for eq/ne, floor).
      const u = next();
      out[i] = u < 0.15 ? Math.floor(next() * 7) - 3 : (next() < 0.5 ? -1 : 1) * 10 ** (next() * 24 - 12);
    }
  }
  return out;
}

/** The array passed to jit for input `s`, and what the jitted function does to it first. */
function makeInput(s: InputSpec, shape: number[], special: number): { arg: NDArray; prep: (x: Tensor) => Tensor; broadcasts: boolean } {
  const r = shape.length;
  const size = (sh: number[]) => sh.reduce((a, b) => a * b, 1);
  const id = (x: Tensor) => x;
  switch (s.kind) {
    case 'full':
      return { arg: fromTyped(fill(size(shape), s.seed, special), shape), prep: id, broadcasts: false };
    case 'scalar':
      return { arg: fromTyped(fill(1, s.seed, special), []), prep: id, broadcasts: true };
    case 'bcast': {
      const sh = shape.map((d, i) => (s.axisBits[i] & 1 ? 1 : d)).slice(Math.min(s.drop, r));
      return { arg: fromTyped(fill(size(sh), s.seed, special), sh), prep: id, broadcasts: true };
    }
    case 'stride0': {
      // As tileTime: a compact array viewed with stride-0 axes at the full shape.
      const sh = shape.map((d, i) => (s.axisBits[i] & 1 || i === 0 ? 1 : d));
      const arg = broadcastTo(fromTyped(fill(size(sh), s.seed, special), sh), shape) as NDArray;
      return { arg, prep: id, broadcasts: true };
    }
    case 'transposed':
    case 'inTransposed': {
      const perm = shape.map((_, i) => i).sort((a, b) => s.axisBits[a] - s.axisBits[b] || b - a);
      const baseShape = new Array<number>(r);
      perm.forEach((p, i) => (baseShape[p] = shape[i]));
      const base = fromTyped(fill(size(baseShape), s.seed, special), baseShape);
      if (s.kind === 'inTransposed') return { arg: base, prep: (x) => transpose(x, perm), broadcasts: false };
      return { arg: transpose(base, perm) as NDArray, prep: id, broadcasts: false };
    }
    case 'sliced':
    case 'inSliced': {
      const extra = shape.map((_, i) => s.axisBits[i]);
      const baseShape = shape.map((d, i) => d + extra[i]);
      const starts = extra.map((e, i) => (s.seed >> i) % (e + 1));
      const base = fromTyped(fill(size(baseShape), s.seed, special), baseShape);
      if (s.kind === 'inSliced') return { arg: base, prep: (x) => slice(x, starts, shape), broadcasts: false };
      return { arg: slice(base, starts, shape) as NDArray, prep: id, broadcasts: false };
    }
  }
}

t.test('random programs, layouts and special values: wasm-simd == js == eager, bit for bit', async (t) => {
  let cases = 0;
  let wasmCases = 0;
  let guaranteed = 0;
  fc.assert(
    fc.property(caseArb, (c: Case) => {
      const made = c.inputs.map((s) => makeInput(s, c.shape, c.special));
      const n = made.length;
      // Roots are never bare inputs, so every output is computed by some group.
      const roots: Expr[] = c.outputs.map((e) => (e.k === 'in' ? { k: 'un', op: 'neg', a: e } : e));
      const program = (...xs: Tensor[]): Tensor[] => {
        const ins = xs.map((x, i) => made[i].prep(x));
        return roots.map((e) => evalExpr(e, ins));
      };
      const args = made.map((m) => m.arg);
      const f = jit(program);
      const js = runWith('js', f, args);
      if (js.calls !== 0) throw new Error(`the js backend made ${js.calls} WebAssembly calls`);
      const wasm = runWith('wasm-simd', f, args);
      const auto = runWith('auto', f, args);
      // The same views over memory in the kernels' arena, results kept there: operands are read
      // and results written in place (core/backend/wasm/kernel-cache.ts).
      const inArena = runWith('wasm-simd', f.donating([], { keepInBackend: true }) as (...a: NDArray[]) => Tensor[], args.map(toArena));
      const eager = program(...args);
      const what = () => `shape [${c.shape}], inputs ${c.inputs.map((s) => s.kind).join(',')}: ${roots.map(showExpr).join(' ; ')}`;
      roots.forEach((_, j) => {
        const ref = f32(eager[j]);
        for (const [name, r] of [
          ['js', js],
          ['wasm-simd', wasm],
          ['auto', auto],
          ['wasm-simd in the arena', inArena],
        ] as const) {
          const got = r.outs[j];
          if (got.shape.join() !== eager[j].shape.join())
            throw new Error(`${name} output ${j}: shape [${got.shape}] vs eager [${eager[j].shape}] (${what()})`);
          const v = f32(got);
          const d = firstBitDifference(v, ref);
          if (d >= 0) throw new Error(`${name} output ${j}[${d}]: ${show(v[d])} vs eager ${show(ref[d])} (${what()})`);
        }
      });
      // Rank <= 2, no broadcasting, enough elements: everything runs in one full-shape group whose
      // layout WebAssembly takes, so at least one WebAssembly call must have happened.
      const used = new Set<number>();
      roots.forEach((e) => inputsUsed(e, used, n));
      const size = c.shape.reduce((a, b) => a * b, 1);
      if (simd && size >= WASM_SURE && c.shape.length <= 2 && [...used].every((i) => !BROADCASTING.has(c.inputs[i].kind))) {
        guaranteed++;
        if (wasm.calls === 0) throw new Error(`no WebAssembly call for an eligible program (${what()})`);
        if (auto.calls === 0) throw new Error(`'auto' made no WebAssembly call for an eligible program (${what()})`);
      }
      if (wasm.calls > 0) wasmCases++;
      cases++;
    }),
    { numRuns: 2000, seed: 5150 },
  );
  t.equal(cases, 2000);
  t.ok(guaranteed >= 150, `programs where a WebAssembly call is certain: ${guaranteed}`);
  t.ok(wasmCases >= 300, `programs that made WebAssembly calls: ${wasmCases} of ${cases}`);
  setElementwiseBackend('auto');
});

// ----------------------------------------------------------------------------- hand-computed cases

/** `pattern` repeated to `n` elements, as a float32 [n] array. */
function tiled(pattern: number[], n: number): NDArray {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = pattern[i % pattern.length];
  return fromTyped(a, [n]);
}

/** Checks both backends give `expected` (tiled) bit for bit, and that the WASM run made a call. */
function expectBoth(t: Test, name: string, f: (...a: NDArray[]) => Tensor[], args: NDArray[], expected: number[][]): void {
  for (const backend of ['js', 'wasm-simd'] as const) {
    const r = runWith(backend, f, args);
    if (backend === 'wasm-simd' && simd) t.ok(r.calls > 0, `${name}: WebAssembly ran`);
    if (backend === 'js') t.equal(r.calls, 0, `${name}: js made no WebAssembly call`);
    r.outs.forEach((o, j) => {
      const v = f32(o);
      const want = Float32Array.from({ length: v.length }, (_, i) => expected[j][i % expected[j].length]);
      const d = firstBitDifference(v, want);
      t.equal(d, -1, `${name} output ${j} on ${backend}` + (d >= 0 ? `: [${d}] ${show(v[d])}, expected ${show(want[d])}` : ''));
    });
  }
  setElementwiseBackend('auto');
}

t.test('maximum / minimum: NaN propagates, ties return the second operand (signed zeros as the JS path)', async (t) => {
  const n = 261;
  const a = tiled([-0, 0, NaN, 1, NaN, -Infinity, 2, -0], n);
  const b = tiled([0, -0, 1, NaN, NaN, Infinity, 2, -0], n);
  // (a > b || a != a) ? a : b
  expectBoth(
    t,
    'maximum',
    jit((x, y) => [maximum(x, y)]),
    [a, b],
    [[0, -0, NaN, NaN, NaN, Infinity, 2, -0]],
  );
  expectBoth(
    t,
    'minimum',
    jit((x, y) => [minimum(x, y)]),
    [a, b],
    [[0, -0, NaN, NaN, NaN, -Infinity, 2, -0]],
  );
  // Against a broadcast row and a literal, too.
  expectBoth(
    t,
    'maximum(x, 0)',
    jit((x) => [maximum(x, 0), minimum(0, x)]),
    [a],
    [
      [0, 0, NaN, 1, NaN, 0, 2, 0],
      [-0, 0, NaN, 0, NaN, -Infinity, 0, -0],
    ],
  );
});

t.test('sign, floor, abs, neg, sqrt on special values', async (t) => {
  const tiny = 1.401298464324817e-45;
  const x = tiled(
    [-0, 0, -3, 5, NaN, -Infinity, Infinity, -tiny, tiny, -0.5, 0.5, -2.5, 2.5, Math.fround(3e38), -Math.fround(1e-40), 7],
    261,
  );
  expectBoth(
    t,
    'sign',
    jit((v) => [sign(v)]),
    [x],
    [[-0, 0, -1, 1, NaN, -1, 1, -1, 1, -1, 1, -1, 1, 1, -1, 1]],
  );
  expectBoth(
    t,
    'floor',
    jit((v) => [floor(v)]),
    [x],
    [[-0, 0, -3, 5, NaN, -Infinity, Infinity, -1, 0, -1, 0, -3, 2, Math.fround(3e38), -1, 7]],
  );
  expectBoth(
    t,
    'abs',
    jit((v) => [abs(v)]),
    [x],
    [[0, 0, 3, 5, NaN, Infinity, Infinity, tiny, tiny, 0.5, 0.5, 2.5, 2.5, Math.fround(3e38), Math.fround(1e-40), 7]],
  );
  expectBoth(
    t,
    'neg',
    jit((v) => [neg(v)]),
    [x],
    [[0, -0, 3, -5, NaN, Infinity, -Infinity, tiny, -tiny, 0.5, -0.5, 2.5, -2.5, -Math.fround(3e38), Math.fround(1e-40), -7]],
  );
  const s7 = Math.fround(Math.sqrt(7));
  expectBoth(
    t,
    'sqrt',
    jit((v) => [sqrt(v)]),
    [x],
    [
      [
        -0,
        0,
        NaN,
        Math.fround(Math.sqrt(5)),
        NaN,
        NaN,
        Infinity,
        NaN,
        Math.fround(Math.sqrt(tiny)),
        NaN,
        Math.fround(Math.sqrt(0.5)),
        NaN,
        Math.fround(Math.sqrt(2.5)),
        Math.fround(Math.sqrt(Math.fround(3e38))),
        NaN,
        s7,
      ],
    ],
  );
  // Subnormal arithmetic is not flushed to zero.
  expectBoth(
    t,
    'subnormal sum',
    jit((v) => [add(v, v), mul(v, 0.5)]),
    [tiled([tiny, Math.fround(1e-40)], 256)],
    [
      [2 * tiny, Math.fround(2 * Math.fround(1e-40))],
      [0, Math.fround(Math.fround(1e-40) * 0.5)],
    ],
  );
});

t.test('where on cast(x, bool): NaN is true, +-0 false; comparisons with NaN are false', async (t) => {
  const x = tiled([NaN, 0, -0, 1.401298464324817e-45, -Infinity, 2], 258);
  const a = tiled([10], 258);
  const b = tiled([20], 258);
  expectBoth(
    t,
    'where(bool(x))',
    jit((c, p, q) => [where(cast(c, 'bool'), p, q), cast(cast(c, 'bool'), 'float32')]),
    [x, a, b],
    [
      [10, 20, 20, 10, 10, 10],
      [1, 0, 0, 1, 1, 1],
    ],
  );
  expectBoth(
    t,
    'compare with NaN',
    jit((c) => [
      cast(greater(c, c), 'float32'),
      cast(notEqual(c, c), 'float32'),
      cast(equal(c, 0), 'float32'),
      where(lessEqual(c, 0), c, -1),
    ]),
    [x],
    [
      [0, 0, 0, 0, 0, 0],
      [1, 0, 0, 0, 0, 0],
      [0, 1, 1, 0, 0, 0],
      [-1, 0, -0, -1, -Infinity, -1],
    ],
  );
});

t.test('an Adam update over [784, 128] equals a float32-per-operation reference on both backends', async (t) => {
  const shape = [784, 128];
  const n = 784 * 128;
  const next = rng(99);
  const mk = (scale: number, positive = false) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = positive ? next() * scale : (next() * 2 - 1) * scale;
    return a;
  };
  const p = mk(0.1);
  const g = mk(1);
  const m = mk(0.01);
  const v = mk(1e-4, true);
  g[0] = 0;
  g[1] = -0;
  v[2] = 0;
  const fr = Math.fround;
  const [B1, OMB1, B2, OMB2, LR, EPS, C1, C2] = [0.9, 0.1, 0.999, 0.001, 1e-3, 1e-8, 1 - 0.9 ** 3, 1 - 0.999 ** 3].map(fr);
  const adam = jit((p: Tensor, g: Tensor, m: Tensor, v: Tensor) => {
    const m1 = add(mul(B1, m), mul(OMB1, g));
    const v1 = add(mul(B2, v), mul(mul(OMB2, g), g));
    const mh = div(m1, C1);
    const vh = div(v1, C2);
    const p1 = sub(p, div(mul(LR, mh), add(sqrt(vh), EPS)));
    return [p1, m1, v1];
  });
  const want = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
  for (let i = 0; i < n; i++) {
    const m1 = fr(fr(B1 * m[i]) + fr(OMB1 * g[i]));
    const v1 = fr(fr(B2 * v[i]) + fr(fr(OMB2 * g[i]) * g[i]));
    const mh = fr(m1 / C1);
    const vh = fr(v1 / C2);
    want[0][i] = fr(p[i] - fr(fr(LR * mh) / fr(fr(Math.sqrt(vh)) + EPS)));
    want[1][i] = m1;
    want[2][i] = v1;
  }
  const args = [p, g, m, v].map((a) => fromTyped(a, shape));
  for (const backend of ['js', 'wasm-simd'] as const) {
    const r = runWith(backend, adam, args);
    if (backend === 'wasm-simd' && simd) t.ok(r.calls >= 1, 'the update ran as WebAssembly');
    ['p', 'm', 'v'].forEach((name, j) => {
      const got = f32(r.outs[j]);
      const d = firstBitDifference(got, want[j]);
      t.equal(d, -1, `${name} on ${backend}` + (d >= 0 ? `: [${d}] ${got[d]} vs ${want[j][d]}` : ''));
    });
  }
  // Inputs untouched.
  t.equal(firstBitDifference(args[0].toTyped() as Float32Array, p), -1, 'p not modified');
  setElementwiseBackend('auto');
});

t.test('groups WebAssembly cannot run stay on the JS path, correct and without a WebAssembly call', async (t) => {
  const n = 256;
  const next = rng(3);
  const xs = Float32Array.from({ length: n }, () => next() * 4 - 2);
  xs[0] = NaN;
  xs[1] = -0;
  const x = fromTyped(xs, [n]);
  const fr = Math.fround;
  const cases: [string, (...a: NDArray[]) => Tensor[], NDArray[], (i: number) => number, 'float32' | 'float64'][] = [
    ['exp in the group', jit((a) => [add(mul(exp(a), 2), a)]), [x], (i) => fr(fr(fr(Math.exp(xs[i])) * 2) + xs[i]), 'float32'],
    [
      'a float64 input',
      jit((a, b) => [add(mul(a, b), 1)]),
      [
        x,
        fromTyped(
          Float64Array.from(xs, (v) => v / 3),
          [n],
          'float64',
        ),
      ],
      (i) => xs[i] * (xs[i] / 3) + 1,
      'float64',
    ],
    [
      'fewer than 64 elements',
      jit((a) => [maximum(mul(a, 3), 0)]),
      [fromTyped(xs.slice(0, 63), [63])],
      (i) => {
        const y = fr(xs[i] * 3);
        return y > 0 || y !== y ? y : 0;
      },
      'float32',
    ],
  ];
  for (const [name, f, args, ref, dtype] of cases) {
    const r = runWith('wasm-simd', f, args);
    t.equal(r.calls, 0, `${name}: no WebAssembly call`);
    const out = r.outs[0];
    t.equal(out.dtype, dtype, `${name}: dtype`);
    const got = out.toTyped();
    let bad = -1;
    for (let i = 0; i < got.length; i++)
      if (!Object.is(got[i], ref(i)) && !(Number.isNaN(got[i]) && Number.isNaN(ref(i)))) {
        bad = i;
        break;
      }
    t.equal(bad, -1, `${name}: values` + (bad >= 0 ? `: [${bad}] ${show(got[bad])} vs ${show(ref(bad))}` : ''));
  }
  // The same program on WASM_SURE elements runs as one WebAssembly call.
  const big = runWith(
    'wasm-simd',
    jit((a) => [maximum(mul(a, 3), 0)]),
    [fromTyped(xs.slice(0, WASM_SURE), [WASM_SURE])],
  );
  if (simd) t.equal(big.calls, 1, `${WASM_SURE} elements: one WebAssembly call`);
  setElementwiseBackend('auto');
  t.equal(elementwiseBackendName(), simd ? 'wasm-simd' : 'js', "'auto' picks WebAssembly where available");
});

// A literal -0 once lost its sign in generated JS (String(-0) is "0") and shared kernel-cache
// and literal-cache entries with +0 (JSON writes -0 as 0): both paths and both caches keep it now.
t.test('-0 and +0 literals keep their signs (eager, JS loops, WebAssembly, caches)', async (t) => {
  const n = WASM_SURE + 5;
  const x = fromTyped(new Float32Array(n).fill(-0), [n]);
  const one = fromTyped(new Float32Array(n).fill(1), [n]);
  const z = (v: number) => (Object.is(v, -0) ? '-0' : String(v));
  t.equal(z(f32(add(x, -0))[0]), '-0', 'eager add(-0, -0)');
  t.equal(z(f32(mul(one, -0))[0]), '-0', 'eager mul(1, -0)');
  t.equal(z(f32(add(x, 0))[0]), '0', 'eager add(-0, +0)');
  t.equal(z(f32(mul(one, 0))[0]), '0', 'eager mul(1, +0)');
  // This program shape is compiled to WebAssembly here first with -0, then with +0.
  const negZero = jit((a: Tensor, b: Tensor) => [add(a, -0), mul(b, -0)]);
  const posZero = jit((a: Tensor, b: Tensor) => [add(a, 0), mul(b, 0)]);
  for (const backend of ['js', 'wasm-simd'] as const) {
    const r = runWith(backend, negZero, [x, one]);
    if (backend === 'wasm-simd' && simd) t.ok(r.calls > 0, 'WebAssembly ran');
    t.equal(z(f32(r.outs[0])[n - 1]), '-0', `${backend}: add(-0, -0)`);
    t.equal(z(f32(r.outs[1])[n - 1]), '-0', `${backend}: mul(1, -0)`);
  }
  const r = runWith('wasm-simd', posZero, [x, one]);
  t.equal(z(f32(r.outs[0])[n - 1]), '0', 'wasm-simd after the -0 program: add(-0, +0)');
  t.equal(z(f32(r.outs[1])[n - 1]), '0', 'wasm-simd after the -0 program: mul(1, +0)');
  // The literal cache: a -0 constant output after a +0 one keeps its sign.
  const y = fromTyped(new Float32Array([1, 2, 3, 4]), [4]);
  jit((a: Tensor) => [a, broadcastTo(0, [4])])(y);
  const neg = jit((a: Tensor) => [a, broadcastTo(-0, [4])])(y) as unknown as NDArray[];
  t.equal(z(f32(neg[1])[0]), '-0', 'broadcast -0 literal after a +0 one');
  setElementwiseBackend('auto');
});

t.test(
  'bool masks at group boundaries (relu forward saves its mask, backward reads it) are bit-identical',
  { skip: !simd && 'no WebAssembly SIMD' },
  async (t) => {
    const next = rng(21);
    const vals = (n: number): Float32Array => Float32Array.from({ length: n }, () => (next() < 0.1 ? 0 : next() - 0.5));
    const same = (a: Tensor, b: Tensor): boolean => {
      const x = (a as NDArray).toTyped();
      const y = (b as NDArray).toTyped();
      return a.dtype === b.dtype && x.length === y.length && Array.prototype.every.call(x, (v: number, i: number) => Object.is(v, y[i]));
    };
    for (const [r, c] of [
      [32, 128],
      [33, 10],
      [1, 301],
      [9, 67],
    ] as const) {
      const x = fromTyped(vals(r * c), [r, c]);
      const b = fromTyped(vals(c), [c]);
      const g = fromTyped(vals(r * c), [r, c]);
      const mask = greater(fromTyped(vals(r * c), [r, c]), 0) as NDArray;
      const rowMask = greater(fromTyped(vals(c), [1, c]), 0) as NDArray;
      const colMask = greater(fromTyped(vals(r), [r, 1]), 0) as NDArray;
      const programs: [string, (...a: Tensor[]) => Tensor | Tensor[], Tensor[]][] = [
        [
          'relu forward with its mask',
          (xx, bb) => {
            const z = add(xx, bb);
            const m = greater(z, 0);
            return [where(m, z, 0), m];
          },
          [x, b],
        ],
        ['relu backward from a mask', (m, gg) => where(m, gg, 0), [mask, g]],
        ['broadcast row mask', (m, gg) => where(broadcastTo(m, [r, c]), gg, mul(gg, 2)), [rowMask, g]],
        ['broadcast column mask', (m, gg) => where(broadcastTo(m, [r, c]), gg, 0), [colMask, g]],
        ['transposed mask', (m, gg) => where(transpose(m, [1, 0]), gg, 1), [transpose(mask, [1, 0]), g]],
        ['a mask as the only output', (gg) => greater(mul(gg, gg), 0.0625), [g]],
      ];
      for (const [name, f, args] of programs) {
        const jf = jit((...a: NDArray[]) => [f(...a)].flat()) as unknown as (...a: NDArray[]) => Tensor[];
        const js = runWith('js', jf, args as NDArray[]);
        const wasm = runWith('wasm-simd', jf, args as NDArray[]);
        t.equal(wasm.calls, 1, `${name} ${r}x${c}: one WebAssembly call`);
        t.ok(
          js.outs.every((o, i) => same(o, wasm.outs[i])),
          `${name} ${r}x${c}: bit-identical`,
        );
      }
    }
    setElementwiseBackend('auto');
  },
);
