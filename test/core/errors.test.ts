/**
 * Bad input: every error names the op and both shapes (or both structures), eagerly and under
 * jit; traced values cannot be read or escape.
 */
import t, { type Test } from 'tap';
import {
  add,
  array,
  broadcastTo,
  concatenate,
  ConcretizationError,
  div,
  grad,
  jit,
  matmul,
  mul,
  reshape,
  scan,
  ShapeError,
  stack,
  sub,
  sum,
  tanh,
  TreeStructureError,
  valueAndGrad,
  vjp,
  where,
  zeros,
  greater,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import { thrown } from './helpers.js';

/** Asserts fn throws an error of `type` whose message contains every fragment. */
function throwsNaming(t: Test, fn: () => unknown, type: new (...a: never[]) => Error, fragments: (string | RegExp)[], what: string): void {
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
  throwsNaming(t, () => jit(matmul)(zeros([2, 3]), zeros([4, 5])), ShapeError, ['matmul', '[2, 3]', '[4, 5]'], '2-D inner dims under jit');
  throwsNaming(t, () => matmul(zeros([3]), zeros([4])), ShapeError, ['matmul', '[3]', '[4]'], '1-D operands');
  throwsNaming(t, () => matmul(zeros([2, 5, 3]), zeros([2, 4])), ShapeError, ['matmul', '[2, 5, 3]', '[2, 4]'], 'batched @ 2-D inner dims');
  throwsNaming(t, () => matmul(zeros([2, 2, 3]), zeros([3, 3, 4])), ShapeError, ['matmul', '[2, 2, 3]', '[3, 3, 4]'], 'batch dims that do not broadcast');
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
  throwsNaming(t, () => scan((c: Tensor, x: Tensor[]) => [add(c, x[0]), null], zeros([2]), [zeros([3, 2]), zeros([4, 2])]), ShapeError, ['scan', '[4, 2]'], 'xs leaves of different lengths');
  const [, back] = vjp(((x: Tensor) => ({ y: mul(x, x), z: x })) as (...a: Tree[]) => Tree, zeros([2]));
  throwsNaming(t, () => back({ y: zeros([2]) }), TreeStructureError, ['vjp', '{"y":*}', '{"y":*,"z":*}'], 'vjp cotangent with a missing key');
  throwsNaming(t, () => back([zeros([2]), zeros([2])]), TreeStructureError, ['vjp', '[*,*]', '{"y":*,"z":*}'], 'vjp cotangent list for an object output');
  throwsNaming(t, () => back({ y: zeros([3]), z: zeros([2]) }), ShapeError, ['vjp', '[3]', '[2]'], 'vjp cotangent of the wrong shape');
  const e = thrown(() => valueAndGrad((x: Tensor) => sum(x), { hasAux: true })(zeros([2])));
  t.ok(e instanceof TypeError && /valueAndGrad/.test(e.message) && /aux/.test(e.message), `hasAux without [value, aux]: ${e}`);
});

t.test('reshape that does not fit names reshape and both shapes', async (t) => {
  throwsNaming(t, () => reshape(zeros([2, 3]), [4]), ShapeError, ['reshape', '[2, 3]', '[4]'], 'eager');
  throwsNaming(t, () => reshape(zeros([2, 3]), [4, -1]), ShapeError, ['reshape', '[2, 3]', '[4, -1]'], 'with -1');
  throwsNaming(t, () => jit((x: Tensor) => reshape(x, [5, 1]))(zeros([2, 3])), ShapeError, ['reshape', '[2, 3]', '[5, 1]'], 'under jit');
  throwsNaming(t, () => grad((x: Tensor) => sum(reshape(x, [7])))(zeros([2, 3])), ShapeError, ['reshape', '[2, 3]', '[7]'], 'under grad');
  throwsNaming(t, () => array([1, 2, 3, 4, 5, 6], { shape: [4, 2] }), ShapeError, ['[6]', '[4, 2]'], 'array() with a shape that does not fit');
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
