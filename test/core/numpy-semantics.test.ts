// Edge cases where spiketrace follows numpy/JAX semantics.
import t from 'tap';
import {
  array,
  cast,
  div,
  equal,
  full,
  greater,
  lessEqual,
  logsumexp,
  maximum,
  minimum,
  notEqual,
  scalar,
  vjp,
  mul,
  type Tensor,
} from '../../core/index.js';

t.test('logsumexp of an all -Infinity row is -Infinity, not NaN (as JAX)', async (t) => {
  const r = logsumexp(
    array(
      [
        [-Infinity, -Infinity],
        [0, Math.log(3)],
      ],
      { dtype: 'float64' },
    ),
    -1,
  ).toNested() as number[];
  t.equal(r[0], -Infinity);
  t.ok(Math.abs(r[1] - Math.log(4)) < 1e-12, `log(1 + 3) = ${r[1]}`);
});

t.test('cast of NaN to bool is true (numpy)', async (t) => {
  t.same(cast(array([NaN, 0, -0, 2]), 'bool').toNested(), [1, 0, 0, 1]);
});

t.test('integer division is true division (numpy /, jnp.divide)', async (t) => {
  const q = div(array([7, -7], { dtype: 'int32' }), array([2, 2], { dtype: 'int32' }));
  t.equal(q.dtype, 'float32');
  t.same(q.toNested(), [3.5, -3.5]);
});

t.test('full keeps the sign of -0', async (t) => {
  t.ok(Object.is(full([2], -0, 'float64').toNested()[0 as never] as unknown as number, -0));
  t.ok(Object.is(scalar(-0, 'float64').item(), -0));
});

t.test('vjp is typed by its function', async (t) => {
  const [y, back] = vjp((x: Tensor) => mul(x, x), array([3], { dtype: 'float64' }));
  t.same(y.toNested(), [9]);
  t.same((back(array([1], { dtype: 'float64' }))[0] as Tensor).toNested(), [6]);
});

t.test('broadcast scalar constants enter jit as literals and give the eager values', async (t) => {
  const { jit, add, mul, zeros, scalar, broadcastTo, grad, sum } = await import('../../core/index.js');
  const f = (x: Tensor): Tensor => add(mul(x, broadcastTo(scalar(0.5), x.shape)), 2);
  const x = array([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  const jf = jit(f);
  t.same(jf(x).toNested(), f(x).toNested());
  t.match(jf.lower(x), /broadcast_to\[shape=\[2,3\]\] 0\.5:f32/, 'the constant is a literal in the jaxpr');
  t.same((jit(grad((y: Tensor) => sum(f(y))))(zeros([2, 3])) as Tensor).toNested(), [
    [0.5, 0.5, 0.5],
    [0.5, 0.5, 0.5],
  ]);
});

t.test('jit caches per backend', async (t) => {
  const { jit, mul, setBackend } = await import('../../core/index.js');
  const { registerBackend, cpuBackend } = await import('../../core/internal.js');
  let runs = 0;
  registerBackend({
    name: 'counting-cpu',
    run: (p, i, q) => cpuBackend.run(p, i, q),
    compile: (j) => {
      runs++;
      return cpuBackend.compile(j);
    },
  });
  const f = jit((x: Tensor) => mul(x, 2));
  const x = array([1, 2]);
  f(x);
  setBackend('counting-cpu');
  try {
    t.same(f(x).toNested(), [2, 4]);
    t.equal(runs, 1, 'the function was compiled again for the new backend');
    t.equal(f.cacheSize, 2);
  } finally {
    setBackend('cpu');
  }
});

t.test('broadcast errors name the public function, not the primitive', async (t) => {
  const a = array([1, 2, 3]);
  const b = array([1, 2]);
  const cases: [string, () => unknown][] = [
    ['maximum', () => maximum(a, b)],
    ['minimum', () => minimum(a, b)],
    ['greater', () => greater(a, b)],
    ['lessEqual', () => lessEqual(a, b)],
    ['equal', () => equal(a, b)],
    ['notEqual', () => notEqual(a, b)],
  ];
  for (const [name, f] of cases) t.throws(f, new RegExp(`^${name}: shapes \\[3\\] and \\[2\\] cannot be broadcast together`), name);
});
