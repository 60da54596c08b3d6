/**
 * `dispose(tree)` (issue 13): a disposed array is deleted (every use of it throws, naming the
 * function and saying it was disposed; disposing twice is allowed), its buffer goes back to the
 * CPU backend's pool and holds later results, but only once no array the caller may hold shares
 * it (views made by reshape / transpose / slice, in eager code or as a jitted call's results,
 * keep it alive). A fast-check property runs random sequences of jitted, eager, arena-kept and
 * view-making ops, disposals and donations, and checks after every step that each live array
 * still holds the values it was made with (computed here independently with Math.fround), and
 * that disposed memory really was reused along the way.
 */
import t from 'tap';
import fc from 'fast-check';
import { rng } from '../backend/fixtures/rng.js';
import { add, dispose, fromTyped, grad, jit, mul, reshape, slice, sum, transpose, type NDArray, type Tensor } from '../../core/index.js';
import { poolStats } from '../../core/backend/pool.js';

const fr = Math.fround;

function source(rows: number, cols: number, seed: number): NDArray {
  const next = rng(seed);
  return fromTyped(
    Float32Array.from({ length: rows * cols }, () => fr(next() * 4 - 2)),
    [rows, cols],
  );
}

const DISPOSED = /was disposed \(dispose\(\) gave its memory back for reuse, so it may already hold another array's values\)/;

t.test('every use of a disposed array throws, naming the function', async (t) => {
  const double = jit(function double(x: Tensor) {
    return x.mul(2);
  });
  const y = double(source(32, 32, 1)) as NDArray;
  const one = double(source(1, 1, 2)) as NDArray;
  dispose([y, one]);
  t.ok(y.isDeleted, 'marked deleted');
  t.throws(() => y.toTyped(), /^toTyped: this float32\[32, 32\] array was disposed/, 'toTyped');
  t.throws(() => y.toTyped(), DISPOSED, 'the message says why');
  t.throws(() => y.toNested(), /^toNested: this float32\[32, 32\] array was disposed/, 'toNested');
  t.throws(() => one.item(), DISPOSED, 'item');
  t.throws(() => y.data, /^NDArray \(reading its values: nd, data, strides\): this float32\[32, 32\] array was disposed/, 'data');
  t.throws(() => y.nd, DISPOSED, 'nd');
  await t.rejects(y.read(), /^NDArray\.read: .* was disposed/, 'read');
  t.throws(() => add(y, 1), /^add: this float32\[32, 32\] array was disposed/, 'an eager op');
  t.throws(() => reshape(y, [1024]), /^reshape: this float32\[32, 32\] array was disposed/, 'a view-making op');
  t.throws(() => double(y), /^jit\(double\) argument 0: this float32\[32, 32\] array was disposed/, 'a jitted call');
  t.throws(() => grad((x: Tensor) => sum(x.mul(x)))(y), DISPOSED, 'grad');
  t.throws(
    () => jit((x: Tensor) => x.add(y))(source(32, 32, 7)),
    /^jit\/scan\/makeJaxpr \(an array the traced function closed over\): .* was disposed/,
    'closed over',
  );
  t.match(String(y), /^NDArray\(float32\[32, 32\], deleted: disposed\)$/, 'printing says so instead of showing values');
  t.same(y.shape, [32, 32], 'its shape stays readable');

  // A constant of an already compiled program, disposed afterwards.
  const c = double(source(32, 32, 3)) as NDArray;
  const addC = jit(function addC(x: Tensor) {
    return x.add(c);
  });
  addC(source(32, 32, 4));
  dispose(c);
  t.throws(
    () => addC(source(32, 32, 4)),
    /^jit\(addC\) \(an array it closed over, now a constant of its compiled program\): .* was disposed/,
  );

  t.doesNotThrow(() => dispose(y), 'disposing twice is allowed');
  const z = double(source(32, 32, 5)) as NDArray;
  t.doesNotThrow(() => dispose({ a: z, b: [z, null, 3, 'static'] }), 'an array twice in one tree, static leaves');
  t.ok(z.isDeleted);
  t.throws(
    () => jit((x: Tensor) => (dispose(x), x))(source(2, 2, 6)),
    /^dispose: expected concrete arrays, got a traced float32\[2, 2\] value/,
    'inside a traced function',
  );
});

t.test('a disposed buffer holds the next result; a view keeps it alive until disposed too', async (t) => {
  const f = jit((x: Tensor) => x.mul(2).add(1));
  const a = source(32, 32, 10);
  const want = (x: NDArray): number[] => Array.from(x.toTyped(), (v) => fr(fr(v * 2) + 1));
  const y = f(a) as NDArray;
  const yBuf = y.data;
  dispose(y);
  const z = f(a) as NDArray;
  t.equal(z.data, yBuf, 'the next result of that size is written into the disposed buffer');
  t.same(Array.from(z.toTyped()), want(a), 'with the right values');

  const v = reshape(z, [1024]) as NDArray;
  const tv = transpose(z) as NDArray;
  const kept = Array.from(z.toTyped());
  dispose(z);
  const w = f(source(32, 32, 11)) as NDArray;
  t.not(w.data, yBuf, 'not reused while views of it are held');
  t.same(Array.from(v.toTyped()), kept, 'the reshape view is intact');
  dispose(v);
  const w2 = f(source(32, 32, 12)) as NDArray;
  t.not(w2.data, yBuf, 'not reused while one view (the transpose) is still held');
  t.equal(tv.toTyped()[1], kept[32], 'the transpose view is intact');
  dispose(tv);
  const w3 = f(a) as NDArray;
  t.equal(w3.data, yBuf, 'reused once the last view is disposed');
  t.same(Array.from(w3.toTyped()), want(a));

  // A jitted call returning a result and a view of it: two holders of one new buffer.
  const pair = jit((x: Tensor) => {
    const p = x.mul(3);
    return [p, reshape(p, [1024])];
  });
  const [p, pv] = pair(a) as NDArray[];
  t.equal(p.data, pv.data, 'the two results share a buffer');
  const pBuf = p.data;
  dispose(p);
  const q = f(a) as NDArray;
  t.not(q.data, pBuf, 'one of the two results disposed: not reused');
  t.same(
    Array.from(pv.toTyped()),
    Array.from(a.toTyped(), (v) => fr(v * 3)),
    'the other intact',
  );
  dispose(pv);
  t.equal((f(a) as NDArray).data, pBuf, 'both disposed: reused');

  // A jitted call returning a view of its argument: disposing the argument keeps the buffer.
  const flat = jit((x: Tensor) => reshape(x, [1024]));
  const m = f(a) as NDArray;
  const mBuf = m.data;
  const mv = flat(m) as NDArray;
  t.equal(mv.data, mBuf, 'the result views its argument');
  const mValues = Array.from(m.toTyped());
  dispose(m);
  f(a);
  t.same(Array.from(mv.toTyped()), mValues, 'the view is intact after its argument was disposed');

  // An array the caller makes over a result's buffer (fromTyped(x.data)) is a view like any other.
  const b1 = f(a) as NDArray;
  const b1Buf = b1.data;
  const alias = fromTyped(b1.data as Float32Array, [1024]);
  const aliasValues = Array.from(alias.toTyped());
  dispose(b1);
  const b2 = f(source(32, 32, 13)) as NDArray;
  t.not(b2.data, b1Buf, 'not reused while an array made over its buffer is held');
  t.same(Array.from(alias.toTyped()), aliasValues, 'that array is intact');

  // Arrays made from the caller's own memory: dispose deletes them, never reuses the memory.
  const mine = new Float32Array(1024).fill(7);
  const own = fromTyped(mine, [32, 32]);
  dispose(own);
  t.ok(own.isDeleted);
  const r = f(a) as NDArray;
  t.not(r.data, mine, "the caller's typed array is not taken by the pool");
  t.equal(mine[0], 7, 'and not written');

  // Results kept in the kernels' arena (keepInBackend) are reused the same way.
  const keep = jit((x: Tensor) => x.mul(5)).donating([], { keepInBackend: true });
  const k1 = keep(a) as NDArray;
  const kBuf = k1.data;
  dispose(k1);
  const k2 = keep(a) as NDArray;
  t.equal(k2.data, kBuf, 'an arena result reused');
  t.same(
    Array.from(k2.toTyped()),
    Array.from(a.toTyped(), (v) => fr(v * 5)),
  );

  // Eager results come from the pool too.
  const e1 = mul(a, 3) as NDArray;
  const eBuf = e1.data;
  dispose(e1);
  const e2 = add(a, 1) as NDArray;
  t.equal(e2.data, eBuf, 'an eager result reused');
  t.same(
    Array.from(e2.toTyped()),
    Array.from(a.toTyped(), (v) => fr(v + 1)),
  );
});

t.test('donating an array that a view shares leaves the buffer alone', async (t) => {
  const f = jit((x: Tensor) => x.mul(2));
  const neg = jit((x: Tensor) => x.mul(-1)).donating([0]);
  const y = f(source(32, 32, 20)) as NDArray;
  const v = transpose(y) as NDArray;
  const want = Array.from(v.toTyped());
  const out = neg(y) as NDArray;
  t.ok(y.isDeleted, 'the donated array is deleted');
  t.not(out.data, v.data, 'its buffer was not reused for the result');
  for (let i = 0; i < 4; i++) f(source(32, 32, 21 + i));
  t.same(Array.from(v.toTyped()), want, 'the view is intact');
});

// ---------------------------------------------------------------------------------------------
// The property: random programs of ops, disposals and donations never change a live array.

type Op =
  | { kind: 'fresh'; shape: 0 | 1 | 2; seed: number }
  | { kind: 'jit' | 'keep' | 'eager' | 'pair' | 'viewOfArg' | 'donate'; pick: number; scale: 0 | 1 | 2 }
  | { kind: 'view'; pick: number; how: 0 | 1 | 2 }
  | { kind: 'dispose'; pick: number; also: number | null };

const SHAPES: readonly (readonly [number, number])[] = [
  [16, 16],
  [32, 32],
  [8, 64],
];
const SCALES = [0.5, 2, -1.5];

interface Live {
  x: NDArray;
  /** The values it was made with (row-major), computed independently of the library. */
  values: Float32Array;
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('fresh' as const),
      shape: fc.constantFrom(0 as const, 1 as const, 2 as const),
      seed: fc.nat(1000),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constantFrom('jit' as const, 'keep' as const, 'eager' as const, 'pair' as const, 'viewOfArg' as const, 'donate' as const),
      pick: fc.nat(),
      scale: fc.constantFrom(0 as const, 1 as const, 2 as const),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('view' as const), pick: fc.nat(), how: fc.constantFrom(0 as const, 1 as const, 2 as const) }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('dispose' as const), pick: fc.nat(), also: fc.option(fc.nat(), { nil: null }) }) },
);

function transposed(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = values[i * cols + j];
  return out;
}

t.test('random ops, disposals and donations never change a live array, and disposed memory is reused', async (t) => {
  const scaleAdd = SCALES.map((s) => jit((x: Tensor) => x.mul(s).add(1)));
  const keepers = SCALES.map((s) => jit((x: Tensor) => x.mul(s).sub(0.5)).donating([], { keepInBackend: true }));
  const pairs = SCALES.map((s) =>
    jit((x: Tensor) => {
      const y = x.mul(s);
      return [y, transpose(y)];
    }),
  );
  const donors = SCALES.map((s) => jit((x: Tensor) => x.mul(s)).donating([0]));
  const flatten = jit((x: Tensor) => reshape(x, [x.size]));
  let reusedDisposed = 0;
  let givenBack = 0;
  let checks = 0;

  fc.assert(
    fc.property(fc.array(opArb, { minLength: 4, maxLength: 60, size: 'max' }), (ops) => {
      const live: Live[] = [];
      const deleted: NDArray[] = [];
      const disposedBuffers = new Set<unknown>();
      const track = (x: NDArray, values: Float32Array): void => {
        // A view of the same shape may be the array itself (one object, one entry).
        if (live.some((l) => l.x === x)) return;
        if (disposedBuffers.has(x.data)) reusedDisposed++;
        const got = x.toTyped() as Float32Array;
        if (got.length !== values.length || got.some((v, i) => !Object.is(v, values[i])))
          throw new Error(`a new ${x.shape.join('x')} result has wrong values`);
        live.push({ x, values });
      };
      const pick = (n: number): Live | undefined => (live.length === 0 ? undefined : live[n % live.length]);
      for (const op of ops) {
        if (op.kind === 'fresh') {
          const [r, c] = SHAPES[op.shape];
          const x = source(r, c, op.seed);
          live.push({ x, values: x.toTyped() as Float32Array });
        } else if (op.kind === 'view') {
          const src = pick(op.pick);
          if (src === undefined || src.x.ndim !== 2) continue;
          const [r, c] = src.x.shape;
          if (op.how === 0) track(reshape(src.x, [c, r]) as NDArray, src.values.slice());
          else if (op.how === 1) track(transpose(src.x) as NDArray, transposed(src.values, r, c));
          else track(slice(src.x, [0, 0], [r / 2, c]) as NDArray, src.values.slice(0, (r / 2) * c));
        } else if (op.kind === 'dispose') {
          const a = pick(op.pick);
          if (a === undefined) continue;
          const b = op.also === null ? null : pick(op.also);
          const tree = b === null || b === undefined ? a.x : { a: a.x, b: [b.x] };
          for (const l of b ? [a, b] : [a]) {
            disposedBuffers.add(l.x.data);
            const i = live.indexOf(l);
            if (i >= 0) live.splice(i, 1);
            deleted.push(l.x);
          }
          const returned = poolStats.returned;
          dispose(tree);
          givenBack += poolStats.returned - returned;
        } else {
          const src = pick(op.pick);
          if (src === undefined) continue;
          const s = SCALES[op.scale];
          const vals = src.values;
          if (op.kind === 'jit')
            track(
              scaleAdd[op.scale](src.x) as NDArray,
              vals.map((v) => fr(fr(v * s) + 1)),
            );
          else if (op.kind === 'keep')
            track(
              keepers[op.scale](src.x) as NDArray,
              vals.map((v) => fr(fr(v * s) - 0.5)),
            );
          else if (op.kind === 'eager')
            track(
              add(mul(src.x, s), 1) as NDArray,
              vals.map((v) => fr(fr(v * s) + 1)),
            );
          else if (op.kind === 'viewOfArg') track(flatten(src.x) as NDArray, vals.slice());
          else if (op.kind === 'pair') {
            if (src.x.ndim !== 2) continue;
            const [y, ty] = pairs[op.scale](src.x) as NDArray[];
            const scaled = vals.map((v) => fr(v * s));
            track(y, scaled);
            track(ty, transposed(scaled, y.shape[0], y.shape[1]));
          } else {
            // Donated: deleted afterwards; its memory is the program's to reuse unless a view holds it.
            const y = donors[op.scale](src.x) as NDArray;
            live.splice(live.indexOf(src), 1);
            deleted.push(src.x);
            track(
              y,
              vals.map((v) => fr(v * s)),
            );
          }
        }
        for (const l of live) {
          checks++;
          const got = l.x.toTyped();
          for (let i = 0; i < got.length; i++)
            if (!Object.is(got[i], l.values[i])) throw new Error(`after ${op.kind}: a live ${l.x.shape.join('x')} array changed at ${i}`);
        }
      }
      for (const x of deleted) {
        if (live.some((l) => l.x === x)) continue;
        let threw = false;
        try {
          x.toTyped();
        } catch (e) {
          threw = /was (disposed|donated)/.test((e as Error).message);
        }
        if (!threw) throw new Error('a deleted array was readable');
      }
    }),
    { numRuns: 60, seed: 13 },
  );
  t.ok(checks > 5000, `live arrays compared ${checks} times`);
  t.ok(givenBack > 100, `dispose gave ${givenBack} buffers back to the pool`);
  t.ok(reusedDisposed > 50, `results of the ops above written into disposed memory ${reusedDisposed} times`);
});
