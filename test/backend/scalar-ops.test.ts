/**
 * The scalar-op table (core/backend/scalar-ops.ts): it covers exactly the elementwise primitives;
 * each op's JS expression (what the generated loops run) and its plain evaluator agree bit for
 * bit on special values for every dtype its shape rule accepts; each op that has a SIMD
 * rendering gives, through a compiled float32 group large enough for the WebAssembly path, the
 * evaluator's value stored as float32 (checked element by element here, and that the WebAssembly
 * path ran). A new elementwise primitive joins these loops by being in the table.
 */
import t from 'tap';
import { SCALAR_OPS, storeAs, storeValue, type ElementwisePrim } from '../../core/backend/scalar-ops.js';
import { ELEMENTWISE, ELEMENTWISE_PRIMS, shapeRules, type PrimParams } from '../../core/primitives.js';
import { cpuKernels } from '../../core/backend/cpu.js';
import { bind } from '../../core/trace.js';
import { fromTyped, jit, NDArray, type DType, type Tensor } from '../../core/index.js';
import { elementwiseBackendName, wasmElementwiseStats } from '../../core/backend/wasm/elementwise.js';

const DTYPES: DType[] = ['float32', 'float64', 'int32', 'uint32', 'bool'];
const SPECIAL: Record<DType, number[]> = {
  float32: [0, -0, 1, -1, 0.5, -2.5, 3, 1e-45, 3.4e38, -3.4e38, Infinity, -Infinity, NaN, Math.fround(0.1)],
  float64: [0, -0, 1, -1, 0.5, -2.5, 3, 5e-324, 1e308, -1e308, Infinity, -Infinity, NaN, 0.1],
  int32: [0, 1, -1, 7, -7, 2147483647, -2147483648, 65536],
  uint32: [0, 1, 7, 4294967295, 2147483648, 65536],
  bool: [0, 1],
};
const sameNumber = (a: number, b: number): boolean => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

/** Every operand-dtype combination (and cast target) the op's shape rule accepts, with its output dtype. */
function signatures(prim: ElementwisePrim): { inDtypes: DType[]; params: Record<string, unknown>; outDtype: DType }[] {
  const arity = SCALAR_OPS[prim].arity;
  const combos: DType[][] =
    arity === 1 ? DTYPES.map((d) => [d]) : arity === 2 ? DTYPES.map((d) => [d, d]) : DTYPES.map((d) => ['bool', d, d]);
  const paramSets: Record<string, unknown>[] = prim === 'cast' ? DTYPES.map((dtype) => ({ dtype })) : [{}];
  const out: { inDtypes: DType[]; params: Record<string, unknown>; outDtype: DType }[] = [];
  for (const inDtypes of combos)
    for (const params of paramSets) {
      try {
        const avals = inDtypes.map((dtype) => ({ shape: [], dtype }));
        const rule = shapeRules[prim] as unknown as (
          avals: { shape: number[]; dtype: DType }[],
          params: Record<string, unknown>,
        ) => { dtype: DType }[];
        const [o] = rule(avals, params);
        out.push({ inDtypes, params, outDtype: o.dtype });
      } catch {
        // The shape rule rejects this dtype combination (a float-only op on integers).
      }
    }
  return out;
}

function product(lists: number[][]): number[][] {
  return lists.reduce<number[][]>((acc, l) => acc.flatMap((p) => l.map((v) => [...p, v])), [[]]);
}

t.test('the table covers exactly the elementwise primitives, and cpuKernels has a kernel for each', async (t) => {
  t.same(Object.keys(SCALAR_OPS).sort(), [...ELEMENTWISE].sort());
  t.same([...ELEMENTWISE_PRIMS].sort(), [...ELEMENTWISE].sort());
  for (const prim of ELEMENTWISE_PRIMS) t.type(cpuKernels[prim], 'function', prim);
  const withSimd = ELEMENTWISE_PRIMS.filter((p) => SCALAR_OPS[p].simd !== null).sort();
  t.same(withSimd, [
    'abs',
    'add',
    'cast',
    'div',
    'eq',
    'floor',
    'ge',
    'gt',
    'le',
    'lt',
    'max',
    'min',
    'mul',
    'ne',
    'neg',
    'sign',
    'sqrt',
    'stop_gradient',
    'sub',
    'where',
  ]);
});

t.test('js expression and evaluator agree on special values for every accepted dtype', async (t) => {
  for (const prim of ELEMENTWISE_PRIMS) {
    const op = SCALAR_OPS[prim];
    const sigs = signatures(prim);
    t.ok(sigs.length > 0, `${prim}: some dtype is accepted`);
    for (const { inDtypes, params, outDtype } of sigs) {
      const args = inDtypes.map((_, i) => `v${i}`);
      const fn = new Function(...args, `return ${storeAs(op.js(args, params, outDtype), outDtype)};`) as (...xs: number[]) => number;
      let bad = '';
      for (const xs of product(inDtypes.map((d) => SPECIAL[d]))) {
        const viaJs = fn(...xs);
        const viaEval = storeValue(op.evaluate(xs, params, outDtype), outDtype);
        if (!sameNumber(viaJs, viaEval) && bad === '') bad = `(${xs.join(', ')}): js ${viaJs}, evaluate ${viaEval}`;
      }
      t.equal(bad, '', `${prim} ${inDtypes.join(',')} -> ${outDtype}`);
    }
  }
});

t.test(
  'each SIMD rendering matches the evaluator through a compiled float32 group',
  { skip: elementwiseBackendName() !== 'wasm-simd' && 'no WebAssembly SIMD' },
  async (t) => {
    const n = 512; // above the WebAssembly threshold, a multiple of neither the row nor the vector width
    const specials = SPECIAL.float32;
    const column = (k: number): Float32Array =>
      Float32Array.from({ length: n }, (_, i) => specials[(i * (k + 3) + k * 5) % specials.length] * (1 + ((i >> 4) % 7)));
    for (const prim of ELEMENTWISE_PRIMS) {
      const op = SCALAR_OPS[prim];
      if (op.simd === null) continue;
      const targets: DType[] = prim === 'cast' ? ['float32', 'bool'] : ['float32'];
      for (const target of targets) {
        const params = (prim === 'cast' ? { dtype: target } : {}) as PrimParams[typeof prim];
        const data = Array.from({ length: op.arity }, (_, k) => column(k));
        // where's mask comes from a compare in the same group, so the group stays float32 at its boundary.
        const f = jit((...xs: Tensor[]): Tensor => {
          const operands = prim === 'where' ? [bind('gt', [xs[0], xs[1]], {})[0], xs[1], xs[2]] : xs;
          const y = bind(prim, operands, params)[0];
          // A bool result leaves the group as float32 so both paths write the same dtype.
          return y.dtype === 'bool' ? bind('cast', [y], { dtype: 'float32' })[0] : bind('add', [y, xs[0]], {})[0];
        });
        const before = wasmElementwiseStats.calls;
        const got = (f(...data.map((d) => fromTyped(d, [n]))) as NDArray).toTyped() as Float32Array;
        t.ok(wasmElementwiseStats.calls > before, `${prim} -> ${target}: ran as WebAssembly`);
        let bad = '';
        for (let i = 0; i < n && bad === ''; i++) {
          const xs = data.map((d) => d[i]);
          const operands = prim === 'where' ? [xs[0] > xs[1] ? 1 : 0, xs[1], xs[2]] : xs;
          const outDtype: DType = prim === 'cast' ? target : ['lt', 'le', 'gt', 'ge', 'eq', 'ne'].includes(prim) ? 'bool' : 'float32';
          const y = storeValue(op.evaluate(operands, params, outDtype), outDtype);
          const want = outDtype === 'bool' ? y : Math.fround(y + xs[0]);
          if (!sameNumber(got[i], want)) bad = `element ${i} (${xs.join(', ')}): got ${got[i]}, want ${want}`;
        }
        t.equal(bad, '', `${prim} -> ${target}`);
      }
    }
  },
);
