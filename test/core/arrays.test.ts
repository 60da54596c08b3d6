/**
 * Array basics: construction from nested arrays, typed arrays and scijs ndarrays; toNested
 * round trips; views that share data (reshape, transpose, slice, broadcastTo with stride 0);
 * dtype promotion and weak typing of JS numbers; gatherRows; pytrees. The second part of the
 * file checks bad input: every error names the op and both shapes (or structures).
 */
import fc from 'fast-check';
import ndarray from 'ndarray';
import t, { type Test } from 'tap';
import {
  add,
  arange,
  array,
  broadcastTo,
  cast,
  concatenate,
  ConcretizationError,
  div,
  expandDims,
  fromNdarray,
  fromTyped,
  full,
  gatherRows,
  grad,
  greater,
  jit,
  matmul,
  mul,
  NDArray,
  ones,
  reshape,
  scan,
  ShapeError,
  slice,
  squeeze,
  stack,
  sub,
  sum,
  take,
  tanh,
  transpose,
  treeDefString,
  treeFlatten,
  treeLeaves,
  treeMap,
  TreeStructureError,
  treeUnflatten,
  treeZipMap,
  valueAndGrad,
  vjp,
  where,
  zeros,
  type DType,
  type NestedArray,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import { prop, shapeArb, sizeOfShape, thrown } from './fixtures/helpers.js';

/** Nests a flat list into `shape` (row-major). */
function nest(flat: number[], shape: number[]): NestedArray {
  if (shape.length === 0) return flat[0];
  const [d, ...rest] = shape;
  const step = sizeOfShape(rest);
  return Array.from({ length: d }, (_, i) => nest(flat.slice(i * step, (i + 1) * step), rest));
}

/** An eager op result as a concrete NDArray (fails loudly otherwise). */
function concrete(x: unknown): NDArray {
  if (!(x instanceof NDArray)) throw new Error('expected an NDArray');
  return x;
}

t.test('array() from nested JS arrays', async (t) => {
  const x = array([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  t.same(x.shape, [2, 3]);
  t.equal(x.dtype, 'float32', 'float32 by default');
  t.ok(x.data instanceof Float32Array);
  t.same(Array.from(x.data), [1, 2, 3, 4, 5, 6], 'row-major');
  t.same(x.strides, [3, 1]);
  t.equal(x.nd.get(1, 0), 4, 'the scijs view indexes the same values');
  const s = array(2.5);
  t.same(s.shape, []);
  t.equal(s.item(), 2.5);
  const i = array([[1.9, -2.9]], { dtype: 'int32' });
  t.equal(i.dtype, 'int32');
  t.same(i.toNested(), [[1, -2]], 'int32 truncates toward zero');
  const b = array([true, false, true] as unknown as number[], { dtype: 'bool' });
  t.equal(b.dtype, 'bool');
  t.same(b.toNested(), [1, 0, 1]);
  t.equal(array([1, 2], { dtype: 'float64' }).data.constructor, Float64Array);
  t.equal(array(0.1, { dtype: 'float64' }).item(), 0.1, 'float64 keeps full precision');
  t.equal(array(0.1).item(), Math.fround(0.1), 'float32 rounds');
  t.same(
    array([1, 2, 3, 4, 5, 6], { shape: [3, 2] }).toNested(),
    [
      [1, 2],
      [3, 4],
      [5, 6],
    ],
    'shape option',
  );
  t.throws(() => array([[1, 2], [3]]), ShapeError, 'ragged nested arrays are rejected');
  t.same(array([[[]]] as unknown as number[]).shape, [1, 1, 0], 'empty innermost axis');
});

t.test('array() from typed arrays', async (t) => {
  const cases: [ArrayLike<number> & { constructor: unknown }, DType][] = [
    [new Float32Array([1, 2, 3, 4]), 'float32'],
    [new Float64Array([1, 2, 3, 4]), 'float64'],
    [new Int32Array([1, 2, 3, 4]), 'int32'],
    [new Uint32Array([1, 2, 3, 4]), 'uint32'],
    [new Uint8Array([1, 0, 1, 1]), 'bool'],
  ];
  for (const [typed, dtype] of cases) {
    const x = array(typed as Float32Array);
    t.equal(x.dtype, dtype, `${dtype}: dtype from the typed array`);
    t.same(x.shape, [4]);
    t.equal(x.data, typed, `${dtype}: wraps the typed array without copying`);
    const y = array(typed as Float32Array, { shape: [2, 2] });
    t.same(y.shape, [2, 2]);
    t.same(y.toNested(), [
      [typed[0], typed[1]],
      [typed[2], typed[3]],
    ]);
  }
  const converted = array(new Float64Array([1.5, -2.5]), { dtype: 'int32' });
  t.equal(converted.dtype, 'int32');
  t.same(converted.toNested(), [1, -2], 'explicit dtype converts');
  t.throws(() => array(new Float32Array(5), { shape: [2, 2] }), ShapeError, 'size mismatch with shape');
});

t.test('array() and fromNdarray() from a scijs ndarray', async (t) => {
  const data = new Float32Array([1, 2, 3, 4, 5, 6]);
  const nd = ndarray(data, [2, 3]);
  const x = array(nd);
  t.same(x.shape, [2, 3]);
  t.equal(x.dtype, 'float32');
  t.equal(x.data, data, 'shares the buffer');
  t.same(x.toNested(), [
    [1, 2, 3],
    [4, 5, 6],
  ]);
  // A strided scijs view: transposed, then a column picked out.
  const tv = fromNdarray(nd.transpose(1, 0));
  t.same(tv.shape, [3, 2]);
  t.same(tv.strides, [1, 3]);
  t.same(tv.toNested(), [
    [1, 4],
    [2, 5],
    [3, 6],
  ]);
  const stepped = array(ndarray(new Float64Array([0, 1, 2, 3, 4, 5, 6, 7]), [4], [2], 1));
  t.equal(stepped.dtype, 'float64');
  t.same(stepped.toNested(), [1, 3, 5, 7], 'stride 2, offset 1');
  t.same(add(stepped, 1).toNested(), [2, 4, 6, 8], 'ops read strided views');
  t.same(Array.from(stepped.toTyped()), [1, 3, 5, 7], 'toTyped is a contiguous copy');
});

t.test('toNested round trip', async (t) => {
  const dtypes: [DType, fc.Arbitrary<number>][] = [
    ['float64', fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }).map((v) => (Object.is(v, -0) ? 0 : v))],
    ['float32', fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }).map((v) => (Object.is(v, -0) ? 0 : v))],
    ['int32', fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })],
    ['uint32', fc.integer({ min: 0, max: 2 ** 32 - 1 })],
    ['bool', fc.integer({ min: 0, max: 1 })],
  ];
  for (const [dtype, values] of dtypes) {
    prop(
      t,
      `${dtype}: array(nested).toNested() returns the nested input`,
      [
        shapeArb(0, 4, 3).chain((s) =>
          fc.tuple(fc.constant(s), fc.array(values, { minLength: sizeOfShape(s), maxLength: sizeOfShape(s) })),
        ),
      ],
      ([shape, flat]) => {
        const nested = nest(flat, shape);
        const x = array(nested, { dtype });
        if (x.shape.join() !== shape.join()) throw new Error(`shape [${x.shape}] vs [${shape}]`);
        const back = JSON.stringify(x.toNested());
        if (back !== JSON.stringify(nested)) throw new Error(`round trip: ${back} vs ${JSON.stringify(nested)}`);
        const again = JSON.stringify(array(x.toNested(), { dtype }).toNested());
        if (again !== back) throw new Error('second round trip differs');
      },
      30,
    );
  }
});

t.test('views share data', async (t) => {
  const x = array([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  const r = concrete(reshape(x, [3, 2]));
  t.equal(r.data, x.data, 'reshape of contiguous data: same buffer');
  t.same(r.strides, [2, 1]);
  t.same(r.toNested(), [
    [1, 2],
    [3, 4],
    [5, 6],
  ]);
  const tr = concrete(transpose(x));
  t.equal(tr.data, x.data, 'transpose: same buffer');
  t.same(tr.shape, [3, 2]);
  t.same(tr.strides, [1, 3], 'transpose permutes the strides');
  t.same(tr.toNested(), [
    [1, 4],
    [2, 5],
    [3, 6],
  ]);
  t.notOk(tr.isContiguous());
  const sl = concrete(slice(x, [1, 1], [1, 2]));
  t.equal(sl.data, x.data, 'slice: same buffer');
  t.same(sl.shape, [1, 2]);
  t.same(sl.strides, [3, 1]);
  t.equal(sl.offset, 4, 'slice: offset of the first element');
  t.same(sl.toNested(), [[5, 6]]);
  const v = array([10, 20, 30]);
  const bc = concrete(broadcastTo(v, [4, 3]));
  t.equal(bc.data, v.data, 'broadcastTo: same buffer');
  t.same(bc.shape, [4, 3]);
  t.same(bc.strides, [0, 1], 'broadcast axis has stride 0');
  t.same(bc.toNested(), [
    [10, 20, 30],
    [10, 20, 30],
    [10, 20, 30],
    [10, 20, 30],
  ]);
  const col = concrete(broadcastTo(array([[1], [2]]), [2, 3]));
  t.same(col.strides, [1, 0], 'broadcast of a column: stride 0 on the last axis');
  t.same(col.toNested(), [
    [1, 1, 1],
    [2, 2, 2],
  ]);
  const ed = concrete(expandDims(x, 1));
  t.equal(ed.data, x.data, 'expandDims: same buffer');
  t.same(ed.shape, [2, 1, 3]);
  t.equal(concrete(squeeze(ed)).data, x.data, 'squeeze: same buffer');
  // Reshaping a non-contiguous view must copy, and still give row-major order of the view.
  const rt = concrete(reshape(tr, [6]));
  t.same(rt.toNested(), [1, 4, 2, 5, 3, 6], 'reshape of a transposed view reads it in row-major order');
  t.not(rt.data, x.data, 'reshape of a non-contiguous view copies');
  // Chained views over one buffer.
  const chain = concrete(slice(transpose(broadcastTo(v, [2, 3])), [1, 0], [2, 2]));
  t.equal(chain.data, v.data, 'slice of transpose of broadcast: still the same buffer');
  t.same(chain.toNested(), [
    [20, 20],
    [30, 30],
  ]);
  // Arrays are immutable: ops on a view never write into the shared buffer.
  mul(bc, 2);
  add(tr, 1);
  t.same(Array.from(x.data), [1, 2, 3, 4, 5, 6]);
  t.same(Array.from(v.data), [10, 20, 30]);
});

t.test('dtype promotion and weak typing of JS numbers', async (t) => {
  const i = array([1, 2], { dtype: 'int32' });
  const f = array([0.5, 0.25]);
  const d = array([0.1, 0.2], { dtype: 'float64' });
  const u = array([3, 4], { dtype: 'uint32' });
  const b = greater(f, 0.3);
  t.equal(add(i, f).dtype, 'float32', 'int32 + float32 -> float32');
  t.same(add(i, f).toNested(), [1.5, 2.25]);
  t.equal(add(f, i).dtype, 'float32', 'float32 + int32 -> float32');
  t.equal(mul(f, d).dtype, 'float64', 'float32 * float64 -> float64');
  t.same(mul(f, d).toNested(), [0.5 * 0.1, 0.25 * 0.2]);
  t.equal(add(i, u).dtype, 'int32', 'int32 + uint32 -> int32');
  t.equal(add(b, i).dtype, 'int32', 'bool + int32 -> int32');
  t.same(add(b, i).toNested(), [2, 2]);
  t.equal(b.dtype, 'bool');
  // JS numbers take the tensor's dtype.
  t.equal(add(i, 1).dtype, 'int32', 'int32 + 1 stays int32');
  t.same(add(i, 1.5).toNested(), [2, 3], 'the number is converted to int32 (1.5 -> 1)');
  t.equal(sub(10, i).dtype, 'int32', 'number on the left');
  t.same(sub(10, i).toNested(), [9, 8]);
  t.equal(mul(f, 3).dtype, 'float32');
  t.equal(add(d, 0.1).dtype, 'float64', 'float64 + number stays float64');
  t.same(add(d, 0.1).toNested(), [0.1 + 0.1, 0.2 + 0.1], 'in full float64 precision');
  t.same(add(array([1]), 0.1).toNested(), [Math.fround(1 + Math.fround(0.1))], 'float32 + number rounds the number to float32');
  t.equal(div(u, 2).dtype, 'float32', 'division of integers is true division (numpy)');
  t.equal(cast(i, 'float64').dtype, 'float64');
  t.equal(add(1, 2).dtype, 'float32', 'two numbers: float32');
});

t.test('creation helpers', async (t) => {
  t.same(zeros([2, 2]).toNested(), [
    [0, 0],
    [0, 0],
  ]);
  t.same(ones([3], 'int32').toNested(), [1, 1, 1]);
  t.equal(ones([3], 'int32').dtype, 'int32');
  t.same(full([2], 7.5, 'float64').toNested(), [7.5, 7.5]);
  t.same(arange(4).toNested(), [0, 1, 2, 3]);
  t.equal(arange(4).dtype, 'int32');
  t.same(arange(1, 2, 0.25, 'float32').toNested(), [1, 1.25, 1.5, 1.75]);
});

t.test('gatherRows: rows along axis 0, broadcast axes stay broadcast', async (t) => {
  const arb = shapeArb(1, 3, 4).chain((s) =>
    fc.tuple(
      fc.constant(s),
      fc.array(fc.integer({ min: -50, max: 50 }), {
        minLength: sizeOfShape(s.map((d) => d + 1)),
        maxLength: sizeOfShape(s.map((d) => d + 1)),
      }),
      fc.array(fc.integer({ min: 0, max: s[0] - 1 }), { minLength: 0, maxLength: 6 }),
      fc.constantFrom('contiguous', 'tiled', 'transposed', 'sliced'),
    ),
  );
  prop(
    t,
    'equals take(x, indices, 0) on contiguous, broadcast, transposed and sliced inputs',
    [arb],
    ([shape, pool, rows, layout]) => {
      let x: NDArray;
      if (layout === 'tiled' && shape.length >= 2) {
        // A time-tiled dataset: axis 1 broadcast from size 1.
        const compact = shape.map((d, i) => (i === 1 ? 1 : d));
        x = concrete(broadcastTo(array(pool.slice(0, sizeOfShape(compact)), { shape: compact }), shape));
      } else if (layout === 'transposed' && shape.length >= 2) {
        const rev = shape.slice().reverse();
        x = concrete(transpose(array(pool.slice(0, sizeOfShape(shape)), { shape: rev })));
      } else if (layout === 'sliced') {
        const big = shape.map((d) => d + 1);
        x = concrete(
          slice(
            array(pool.slice(0, sizeOfShape(big)), { shape: big }),
            shape.map(() => 1),
            shape,
          ),
        );
      } else {
        x = array(pool.slice(0, sizeOfShape(shape)), { shape });
      }
      const g = gatherRows(x, rows);
      const expected = take(x, array(rows, { dtype: 'int32' }), 0);
      if (g.shape.join() !== [rows.length, ...shape.slice(1)].join()) throw new Error(`shape [${g.shape}]`);
      if (JSON.stringify(g.toNested()) !== JSON.stringify(expected.toNested()))
        throw new Error(`values ${JSON.stringify(g.toNested())} vs ${JSON.stringify(expected.toNested())}`);
      if (g.dtype !== x.dtype) throw new Error('dtype');
      if (layout === 'tiled' && shape.length >= 2 && shape[1] > 1 && rows.length > 0 && g.strides[1] !== 0)
        throw new Error(`tiled axis lost its stride 0: [${g.strides}]`);
    },
    40,
  );
  t.throws(() => gatherRows(array([1, 2, 3]), [3]), RangeError, 'index out of range');
  t.throws(() => gatherRows(array([1, 2, 3]), [-1]), RangeError, 'negative index');
});

t.test('pytrees', async (t) => {
  const a = array([1]);
  const b = array([2, 3]);
  const c = array([[4]]);
  const tree = { z: [a, null, 'tag'], a: { y: b, x: 7 }, m: c };
  const [leaves, def] = treeFlatten(tree);
  t.same(leaves, [b, c, a], 'object keys are visited in sorted order: a, m, z');
  t.equal(treeDefString(def), '{"a":{"x":7,"y":*},"m":*,"z":[*,null,"tag"]}');
  t.same(treeLeaves(tree), leaves);
  const rebuilt = treeUnflatten(def, leaves) as typeof tree;
  t.equal(rebuilt.z[0], a);
  t.equal(rebuilt.z[2], 'tag', 'static leaves come back');
  t.equal(rebuilt.a.x, 7);
  t.equal(rebuilt.z[1], null);
  const doubled = treeMap((l: Tensor) => mul(l, 2), tree);
  t.same(doubled.a.y.toNested(), [4, 6]);
  t.equal(doubled.a.x, 7);
  const summed = treeZipMap((p: Tensor, q: Tensor) => add(p, q), { u: a, v: [b] }, { u: a, v: [b] });
  t.same(summed.v[0].toNested(), [4, 6]);
  const e = (() => {
    try {
      treeZipMap((p: Tensor, q: Tensor) => add(p, q), { u: a, v: [b] }, { u: a, w: [b] });
    } catch (err) {
      return err as Error;
    }
  })();
  t.ok(e instanceof TreeStructureError, 'treeZipMap over different structures throws');
  t.match(e?.message, /\{"u":\*,"w":\[\*\]\}/, 'names the offending structure');
  t.match(e?.message, /\{"u":\*,"v":\[\*\]\}/, 'names the expected structure');
  t.throws(() => treeUnflatten(def, [a, b]), TreeStructureError, 'too few leaves');
  t.throws(() => treeUnflatten(def, [a, b, c, a]), TreeStructureError, 'too many leaves');
  t.throws(() => treeFlatten({ m: new Map() }), TreeStructureError, 'a Map is not a pytree node');
});

// =============================================================================================
// Bad input

t.test('bad input', async (t) => {
  /*
   * Bad input: every error names the op and both shapes (or both structures), eagerly and under
   * jit; traced values cannot be read or escape.
   */
  /** Asserts fn throws an error of `type` whose message contains every fragment. */
  function throwsNaming(
    t: Test,
    fn: () => unknown,
    type: new (...a: never[]) => Error,
    fragments: (string | RegExp)[],
    what: string,
  ): void {
    const e = thrown(fn);
    t.ok(e instanceof type, `${what}: throws ${type.name} (got ${e === undefined ? 'no error' : `${e.name}: ${e.message}`})`);
    for (const f of fragments) {
      if (typeof f === 'string') t.ok(e?.message.includes(f), `${what}: message names ${JSON.stringify(f)} (message: ${e?.message})`);
      else t.match(e?.message ?? '', f, `${what}: message matches ${f}`);
    }
  }

  t.test('binary op shape mismatch names the op and both shapes', async (t) => {
    const a = zeros([2, 3]);
    const b = zeros([4]);
    throwsNaming(t, () => add(a, b), ShapeError, ['add', '[2, 3]', '[4]'], 'add eager');
    throwsNaming(t, () => jit(add)(a, b), ShapeError, ['add', '[2, 3]', '[4]'], 'add under jit');
    throwsNaming(t, () => grad((x: Tensor) => sum(add(x, b)))(a), ShapeError, ['add', '[2, 3]', '[4]'], 'add under grad');
    throwsNaming(t, () => sub(zeros([3, 1, 2]), zeros([4, 3])), ShapeError, ['sub', '[3, 1, 2]', '[4, 3]'], 'sub');
    throwsNaming(t, () => mul(zeros([5]), zeros([2, 4])), ShapeError, ['mul', '[5]', '[2, 4]'], 'mul');
    throwsNaming(t, () => div(zeros([2, 2]), zeros([3, 2])), ShapeError, ['div', '[2, 2]', '[3, 2]'], 'div');
    throwsNaming(t, () => where(greater(zeros([2]), 0), zeros([3]), 0), ShapeError, ['where', '[2]', '[3]'], 'where');
    throwsNaming(t, () => broadcastTo(zeros([2, 3]), [3, 3]), ShapeError, ['broadcastTo', '[2, 3]', '[3, 3]'], 'broadcastTo');
    throwsNaming(t, () => concatenate([zeros([2, 3]), zeros([2, 4])], 0), ShapeError, ['concatenate', '[2, 3]', '[2, 4]'], 'concatenate');
    throwsNaming(t, () => stack([zeros([2]), zeros([3])]), ShapeError, ['stack', '[2]', '[3]'], 'stack');
  });

  t.test('matmul dimension mismatch names matmul and both shapes', async (t) => {
    throwsNaming(t, () => matmul(zeros([2, 3]), zeros([4, 5])), ShapeError, ['matmul', '[2, 3]', '[4, 5]'], '2-D inner dims');
    throwsNaming(
      t,
      () => jit(matmul)(zeros([2, 3]), zeros([4, 5])),
      ShapeError,
      ['matmul', '[2, 3]', '[4, 5]'],
      '2-D inner dims under jit',
    );
    throwsNaming(t, () => matmul(zeros([3]), zeros([4])), ShapeError, ['matmul', '[3]', '[4]'], '1-D operands');
    throwsNaming(
      t,
      () => matmul(zeros([2, 5, 3]), zeros([2, 4])),
      ShapeError,
      ['matmul', '[2, 5, 3]', '[2, 4]'],
      'batched @ 2-D inner dims',
    );
    throwsNaming(
      t,
      () => matmul(zeros([2, 2, 3]), zeros([3, 3, 4])),
      ShapeError,
      ['matmul', '[2, 2, 3]', '[3, 3, 4]'],
      'batch dims that do not broadcast',
    );
    throwsNaming(t, () => matmul(zeros([]), zeros([3])), ShapeError, ['matmul', '[]', '[3]'], 'scalar operand');
  });

  t.test('grad of a non-scalar output names grad and the shape', async (t) => {
    throwsNaming(t, () => grad((x: Tensor) => mul(x, 2))(zeros([3])), ShapeError, ['grad', '[3]'], 'grad');
    throwsNaming(t, () => grad((x: Tensor) => tanh(x))(zeros([2, 2])), ShapeError, ['grad', '[2, 2]'], 'grad of a matrix');
    throwsNaming(t, () => valueAndGrad((x: Tensor) => mul(x, 2))(zeros([4, 1])), ShapeError, ['valueAndGrad', '[4, 1]'], 'valueAndGrad');
    const e = thrown(() => grad((x: Tensor) => sum(x))(array([1, 2], { dtype: 'int32' })));
    t.ok(e instanceof TypeError && /grad/.test(e.message) && /int32/.test(e.message), `grad wrt an int32 argument: ${e}`);
  });

  t.test('wrong pytree structures', async (t) => {
    const xs = zeros([3, 2]);
    throwsNaming(
      t,
      () => scan((c: { a: Tensor }, x: Tensor) => [{ b: add(c.a, x) } as unknown as { a: Tensor }, null], { a: zeros([2]) }, xs),
      TreeStructureError,
      ['scan', '{"b":*}', '{"a":*}'],
      'scan body returns a carry of a different structure',
    );
    throwsNaming(
      t,
      () => scan((c: Tensor[], x: Tensor) => [[add(c[0], x)], null], [zeros([2]), zeros([2])], xs),
      TreeStructureError,
      ['scan', '[*]', '[*,*]'],
      'scan body drops a carry leaf',
    );
    throwsNaming(
      t,
      () => scan((c: Tensor, x: Tensor) => [broadcastTo(add(c, x), [2, 2]), null], zeros([2]), xs),
      ShapeError,
      ['scan', '[2, 2]', '[2]'],
      'scan body changes the carry shape',
    );
    throwsNaming(
      t,
      () => scan((c: Tensor, x: Tensor[]) => [add(c, x[0]), null], zeros([2]), [zeros([3, 2]), zeros([4, 2])]),
      ShapeError,
      ['scan', '[4, 2]'],
      'xs leaves of different lengths',
    );
    const [, back] = vjp(((x: Tensor) => ({ y: mul(x, x), z: x })) as (...a: Tree[]) => Tree, zeros([2]));
    throwsNaming(
      t,
      () => back({ y: zeros([2]) }),
      TreeStructureError,
      ['vjp', '{"y":*}', '{"y":*,"z":*}'],
      'vjp cotangent with a missing key',
    );
    throwsNaming(
      t,
      () => back([zeros([2]), zeros([2])]),
      TreeStructureError,
      ['vjp', '[*,*]', '{"y":*,"z":*}'],
      'vjp cotangent list for an object output',
    );
    throwsNaming(t, () => back({ y: zeros([3]), z: zeros([2]) }), ShapeError, ['vjp', '[3]', '[2]'], 'vjp cotangent of the wrong shape');
    const e = thrown(() => valueAndGrad((x: Tensor) => sum(x), { hasAux: true })(zeros([2])));
    t.ok(e instanceof TypeError && /valueAndGrad/.test(e.message) && /aux/.test(e.message), `hasAux without [value, aux]: ${e}`);
  });

  t.test('reshape that does not fit names reshape and both shapes', async (t) => {
    throwsNaming(t, () => reshape(zeros([2, 3]), [4]), ShapeError, ['reshape', '[2, 3]', '[4]'], 'eager');
    throwsNaming(t, () => reshape(zeros([2, 3]), [4, -1]), ShapeError, ['reshape', '[2, 3]', '[4, -1]'], 'with -1');
    throwsNaming(t, () => jit((x: Tensor) => reshape(x, [5, 1]))(zeros([2, 3])), ShapeError, ['reshape', '[2, 3]', '[5, 1]'], 'under jit');
    throwsNaming(t, () => grad((x: Tensor) => sum(reshape(x, [7])))(zeros([2, 3])), ShapeError, ['reshape', '[2, 3]', '[7]'], 'under grad');
    throwsNaming(
      t,
      () => array([1, 2, 3, 4, 5, 6], { shape: [4, 2] }),
      ShapeError,
      ['[6]', '[4, 2]'],
      'array() with a shape that does not fit',
    );
  });

  t.test('traced values cannot be read inside jit or escape it', async (t) => {
    const e = thrown(() => jit((x: Tensor) => (x.item() > 0 ? x : mul(x, -1)))(array(2)));
    t.ok(e instanceof ConcretizationError, `item() inside jit throws ConcretizationError (${e})`);
    let leaked: Tensor | undefined;
    jit((x: Tensor) => {
      leaked = mul(x, 2);
      return leaked;
    })(array([1, 2]));
    const e2 = thrown(() => add(leaked!, 1));
    t.ok(e2 instanceof ConcretizationError, `using a leaked tracer later throws ConcretizationError (${e2})`);
  });
});

t.test('toTyped of views with contiguous rows (row copies) equals an element-by-element gather', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 16, max: 40 }),
      fc.boolean(),
      fc.nat(3),
      (a, b, c, swap, cut) => {
        const base = fromTyped(
          Float32Array.from({ length: a * b * c }, (_, i) => i),
          [a, b, c],
        );
        // Outer axes swapped (a transposed batch) and the last axis sliced: rows stay contiguous.
        let view = swap ? (transpose(base, [1, 0, 2]) as NDArray) : base;
        const lo = Math.min(cut, c - 16);
        view = new NDArray(view.nd.lo(0, 0, lo), 'float32');
        const got = Array.from(view.toTyped());
        const want: number[] = [];
        const [d0, d1, d2] = view.shape;
        for (let i = 0; i < d0; i++)
          for (let j = 0; j < d1; j++)
            for (let k = 0; k < d2; k++)
              want.push(view.data[view.offset + i * view.strides[0] + j * view.strides[1] + k * view.strides[2]]);
        return got.length === want.length && got.every((v, i) => v === want[i]);
      },
    ),
    { numRuns: 100 },
  );
  t.pass('row-copy path agrees with the gather');
});

t.test('gatherRows: runs of consecutive rows, repeats, sliced sources and pooled memory match picking rows one by one', async (t) => {
  const rows = 50;
  const data = Float32Array.from({ length: rows * 6 }, (_, i) => i * 0.5 - 3);
  const full = fromTyped(data, [rows, 2, 3]);
  // A view whose rows are not back to back (every other row, from row 1).
  const strided = fromTyped(data, [rows, 6]).nd.lo(1, 0).step(2, 1);
  const sources: [string, NDArray][] = [
    ['contiguous', full],
    ['every other row', new NDArray(strided)],
  ];
  const orders = [[0, 1, 2, 3, 4], [7, 8, 9, 3, 4, 20, 21, 21, 22, 0], [24, 23, 22], [5]];
  for (const [name, x] of sources) {
    const n = x.shape[0];
    for (const order of orders) {
      const idx = order.map((i) => i % n);
      const want = idx.flatMap((i) => rowValues(x, i));
      for (const pooled of [false, true]) {
        const got = gatherRows(x, idx, { donate: pooled });
        t.same(got.shape, [idx.length, ...x.shape.slice(1)]);
        t.same(Array.from(got.toTyped()), want, `${name}, rows ${idx}${pooled ? ', pooled' : ''}`);
      }
    }
    t.throws(() => gatherRows(x, [0, n]), /gatherRows: index \d+ out of range/);
  }
});

/** Row i of x as a flat list, read element by element through the view's strides. */
function rowValues(x: NDArray, i: number): number[] {
  const inner = x.shape.slice(1);
  const size = inner.reduce((a, c) => a * c, 1);
  const out: number[] = [];
  for (let q = 0; q < size; q++) {
    let rem = q;
    let o = x.offset + i * x.strides[0];
    for (let d = inner.length - 1; d >= 0; d--) {
      o += (rem % inner[d]) * x.strides[d + 1];
      rem = Math.floor(rem / inner[d]);
    }
    out.push(x.data[o]);
  }
  return out;
}
