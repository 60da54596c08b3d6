/** Surrogate spike functions: forward exactly H(u), backward each closed form (fast-check over u and the slope). */
import t from 'tap';
import fc from 'fast-check';
import { array, grad, jit, sum, type Tensor } from '../../core/index.js';
import { surrogate } from '../../spiking/index.js';

const closedForms: [string, (p: number) => ReturnType<typeof surrogate.fastSigmoid>, (u: number, p: number) => number, [number, number]][] =
  [
    ['straightThrough', () => surrogate.straightThrough(), () => 1, [1, 1]],
    ['fastSigmoid', (k) => surrogate.fastSigmoid(k), (u, k) => 1 / (k * Math.abs(u) + 1) ** 2, [0.5, 50]],
    ['atan', (a) => surrogate.atan(a), (u, a) => a / 2 / (1 + ((Math.PI / 2) * a * u) ** 2), [0.5, 10]],
    ['sigmoid', (k) => surrogate.sigmoid(k), (u, k) => (k * Math.exp(-k * u)) / (1 + Math.exp(-k * u)) ** 2, [0.5, 50]],
    ['triangular', (w) => surrogate.triangular(w), (u, w) => Math.max(0, 1 - Math.abs(u) / w) / w, [0.2, 3]],
    ['boxcar', (w) => surrogate.boxcar(w), (u, w) => (Math.abs(u) < w / 2 ? 1 / w : 0), [0.2, 3]],
  ];

for (const [name, make, g, [lo, hi]] of closedForms) {
  t.test(`${name}: forward is H(u), backward its closed form`, async (t) => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -3, max: 3, noNaN: true }), { minLength: 1, maxLength: 8 }),
        fc.double({ min: lo, max: hi, noNaN: true }),
        (us, p) => {
          const s = make(p);
          const u = array(us, { dtype: 'float64' });
          const fwd = Array.from(s.spike(u).toTyped() as Float64Array);
          const back = Array.from((grad((x: Tensor) => sum(s.spike(x)))(u) as Tensor).toTyped() as Float64Array);
          us.forEach((v, i) => {
            if (fwd[i] !== (v > 0 ? 1 : 0)) throw new Error(`forward at ${v}: ${fwd[i]}`);
            const want = g(v, p);
            if (!(Math.abs(back[i] - want) <= 1e-12 * (1 + Math.abs(want))))
              throw new Error(`${name}(${p}) at u=${v}: ${back[i]} vs ${want}`);
          });
        },
      ),
      { numRuns: 60 },
    );
    t.pass(`${name}: 60 random (u, parameter) sets`);
  });
}

t.test('H at the edges: 0 at u = 0 and -0, NaN stays NaN; compiled and eager agree', async (t) => {
  const s = surrogate.fastSigmoid();
  const u = array([0, -0, 1e-30, -1e-30, Infinity, -Infinity, NaN]);
  const want = [0, 0, 1, 0, 1, 0, NaN];
  t.same(Array.from(s.spike(u).toTyped() as Float32Array), want);
  t.same(Array.from((jit((x: Tensor) => s.spike(x))(u) as Tensor).toTyped() as Float32Array), want, 'jit');
  const gj = jit(grad((x: Tensor) => sum(s.spike(x))))(array([0.1, -0.2]));
  t.same(Array.from((gj as Tensor).toTyped() as Float32Array), [Math.fround(1 / 3.5 ** 2), Math.fround(1 / 6 ** 2)], 'jit of the gradient');
});

t.test('custom surrogates and bad parameters', async (t) => {
  const s = surrogate.custom((u) => u.mul(u), 'square');
  t.same(
    Array.from((grad((x: Tensor) => sum(s.spike(x)))(array([2, -3], { dtype: 'float64' })) as Tensor).toTyped() as Float64Array),
    [4, 9],
  );
  t.throws(() => surrogate.fastSigmoid(0), /fastSigmoid: slope must be a positive finite number, got 0/);
  t.throws(() => surrogate.boxcar(-1), /boxcar: width must be a positive/);
  t.throws(() => surrogate.resolveSurrogate('fast' as never, "leaky 'l'"), /leaky 'l': unknown surrogate 'fast'/);
});
