/**
 * glorotUniform's range and moments on a 784x128 kernel, dense's zero bias, and key determinism; fanInUniform
 * (PyTorch's Linear/Conv default) against its closed form, with the layer's fan-in reaching the bias.
 */
import t from 'tap';
import { random, type Tensor } from '../../core/index.js';
import { conv2d, dense, fanInUniform, glorotUniform, heNormal, resetLayerNames, resolveInitializer, sequential } from '../../nn/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);
/** Element-wise identity of two long arrays (tap's deep `same` is slow on 1e5 elements). */
const identical = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function moments(v: readonly number[]): { mean: number; variance: number; min: number; max: number } {
  let s = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const x of v) {
    s += x;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const mean = s / v.length;
  let q = 0;
  for (const x of v) q += (x - mean) * (x - mean);
  return { mean, variance: q / v.length, min, max };
}

t.test('glorotUniform on a 784x128 kernel: range, mean and variance', async (t) => {
  const fanIn = 784;
  const fanOut = 128;
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const k = glorotUniform(random.key(42), [fanIn, fanOut]);
  t.same(k.shape, [784, 128]);
  t.equal(k.dtype, 'float32');
  const v = vals(k);
  const n = v.length;
  const m = moments(v);
  t.ok(m.min >= -limit && m.max <= limit, `all values within +-${limit} (min ${m.min}, max ${m.max})`);
  // The values should fill the range (a too-narrow initializer would also pass the bound above).
  t.ok(m.max > 0.99 * limit && m.min < -0.99 * limit, 'values reach both ends of the range');
  // U(-l, l): mean 0, sd l/sqrt(3) -> the sample mean's sd is l / sqrt(3 n). Allow 5 sigma.
  const meanSd = limit / Math.sqrt(3 * n);
  t.ok(Math.abs(m.mean) < 5 * meanSd, `mean ${m.mean} within 5 sd (${5 * meanSd}) of 0`);
  // Variance l^2/3; Var(X^2) = l^4/5 - l^4/9 = 4 l^4 / 45 -> the sample variance's sd.
  const varTarget = (limit * limit) / 3;
  const varSd = Math.sqrt((4 * limit ** 4) / 45 / n);
  t.ok(Math.abs(m.variance - varTarget) < 5 * varSd, `variance ${m.variance} within 5 sd (${5 * varSd}) of ${varTarget}`);
  // Rough uniformity: each of 10 equal bins holds ~n/10 (binomial sd sqrt(n * 0.1 * 0.9)).
  const bins = new Array<number>(10).fill(0);
  for (const x of v) bins[Math.min(9, Math.floor(((x + limit) / (2 * limit)) * 10))]++;
  const binSd = Math.sqrt(n * 0.1 * 0.9);
  t.ok(
    bins.every((c) => Math.abs(c - n / 10) < 5 * binSd),
    `10-bin histogram is flat: ${bins.join(', ')}`,
  );
  // float64 on request.
  t.equal(glorotUniform(random.key(1), [3, 4], 'float64').dtype, 'float64');
});

t.test('glorotUniform on a rank-4 (conv) kernel uses the receptive field in the fans', async (t) => {
  // [3, 3, 16, 32]: fanIn = 9*16 = 144, fanOut = 9*32 = 288 (Keras's fans).
  const limit = Math.sqrt(6 / (144 + 288));
  const v = vals(glorotUniform(random.key(3), [3, 3, 16, 32]));
  const m = moments(v);
  t.ok(m.min >= -limit && m.max <= limit && m.max > 0.95 * limit, `within and filling +-${limit} (min ${m.min}, max ${m.max})`);
});

t.test('heNormal has sd sqrt(2 / fanIn)', async (t) => {
  const v = vals(heNormal(random.key(5), [400, 300]));
  const m = moments(v);
  const target = 2 / 400;
  // Var of a normal sample variance: 2 sigma^4 / n.
  const sd = Math.sqrt((2 * target * target) / v.length);
  t.ok(Math.abs(m.variance - target) < 5 * sd, `variance ${m.variance} vs ${target}`);
  t.ok(Math.abs(m.mean) < 5 * Math.sqrt(target / v.length), `mean ${m.mean} ~ 0`);
});

t.test('dense: glorot kernel, zero bias, same key same weights, different key different', async (t) => {
  resetLayerNames();
  const layer = dense(128);
  const a = layer.init(random.key(0), [784]);
  const kernel = a.params.kernel;
  const bias = a.params.bias;
  t.same(kernel.shape, [784, 128]);
  t.same(bias.shape, [128]);
  t.ok(
    vals(bias).every((x) => x === 0),
    'bias starts at zero',
  );
  const limit = Math.sqrt(6 / (784 + 128));
  const kv = vals(kernel);
  t.ok(
    kv.every((x) => Math.abs(x) <= limit),
    'kernel within the glorot limit',
  );
  t.ok(new Set(kv).size > kv.length * 0.9, 'kernel values are not constant');
  t.same(a.outputShape, [128]);

  const again = layer.init(random.key(0), [784]);
  t.ok(identical(vals(again.params.kernel), kv), 'same key: identical kernel');
  const other = layer.init(random.key(1), [784]);
  const ov = vals(other.params.kernel);
  const differing = ov.filter((x, i) => x !== kv[i]).length;
  t.ok(differing > kv.length * 0.99, `different key: kernel differs (${differing}/${kv.length} elements)`);

  // A fresh layer object with the same config and key gives the same weights (init is pure).
  const twin = dense(128).init(random.key(0), [784]);
  t.ok(identical(vals(twin.params.kernel), kv), 'a second dense(128) with the same key: identical kernel');

  // useBias false: no bias parameter.
  t.same(Object.keys(dense(4, { useBias: false }).init(random.key(0), [3]).params), ['kernel']);
});

t.test('sequential init: layers get different keys; same model key -> same params', async (t) => {
  resetLayerNames();
  const model = sequential([dense(8, { name: 'a' }), dense(8, { name: 'b' })]);
  const p1 = model.init(random.key(7), [8]).params as Record<string, { kernel: Tensor }>;
  const p2 = model.init(random.key(7), [8]).params as Record<string, { kernel: Tensor }>;
  const p3 = model.init(random.key(8), [8]).params as Record<string, { kernel: Tensor }>;
  t.same(vals(p1.a.kernel), vals(p2.a.kernel));
  t.same(vals(p1.b.kernel), vals(p2.b.kernel));
  t.notSame(vals(p1.a.kernel), vals(p1.b.kernel), 'two layers of equal shape get different weights');
  t.notSame(vals(p1.a.kernel), vals(p3.a.kernel), 'different model key -> different weights');
});

t.test('fanInUniform: U(-1/sqrt(fanIn), 1/sqrt(fanIn)) for a kernel, moments of the closed form', async (t) => {
  const bound = 1 / Math.sqrt(784);
  const k = fanInUniform(random.key(11), [784, 300]);
  t.same(k.shape, [784, 300]);
  const v = vals(k);
  const n = v.length;
  const m = moments(v);
  t.ok(m.min >= -bound && m.max <= bound, `within +-${bound} (min ${m.min}, max ${m.max})`);
  t.ok(m.max > 0.99 * bound && m.min < -0.99 * bound, 'fills the range');
  t.ok(Math.abs(m.mean) < 5 * (bound / Math.sqrt(3 * n)), `mean ${m.mean} ~ 0`);
  const varTarget = (bound * bound) / 3;
  const varSd = Math.sqrt((4 * bound ** 4) / 45 / n);
  t.ok(Math.abs(m.variance - varTarget) < 5 * varSd, `variance ${m.variance} within 5 sd of ${varTarget}`);
  // A rank-4 kernel's fan-in includes the window: [3, 3, 16, 32] -> 144.
  const conv = moments(vals(fanInUniform(random.key(12), [3, 3, 16, 32])));
  t.ok(conv.max <= 1 / 12 && conv.min >= -1 / 12 && conv.max > 0.95 / 12, `conv kernel within and filling +-1/12 (max ${conv.max})`);
  // Given the layer's fans, a bias uses the layer's fan-in, not its own length.
  const bias = moments(vals(fanInUniform(random.key(13), [2000], 'float32', { fanIn: 100, fanOut: 2000 })));
  t.ok(bias.max <= 0.1 && bias.min >= -0.1 && bias.max > 0.095 && bias.min < -0.095, `bias within and filling +-0.1`);
  t.equal(fanInUniform(random.key(1), [3, 4], 'float64').dtype, 'float64');
  t.throws(() => fanInUniform(random.key(1), [0, 4]), /fanInUniform: the fan-in must be positive, got 0/);
});

t.test('fanInUniform: same key same values, different key different, by name too', async (t) => {
  const a = vals(fanInUniform(random.key(3), [50, 40]));
  t.ok(identical(a, vals(fanInUniform(random.key(3), [50, 40]))), 'same key: identical');
  t.ok(identical(a, vals(resolveInitializer('fanInUniform')(random.key(3), [50, 40]))), "resolveInitializer('fanInUniform') is it");
  const b = vals(fanInUniform(random.key(4), [50, 40]));
  t.ok(b.filter((x, i) => x !== a[i]).length > a.length * 0.99, 'different key: different values');
});

t.test("dense and conv2d pass their kernel's fans: a fanInUniform bias is bounded by 1/sqrt(the layer's fan-in)", async (t) => {
  resetLayerNames();
  const options = { kernelInitializer: 'fanInUniform', biasInitializer: 'fanInUniform' } as const;
  // torch.nn.Linear(784, 1000): weight and bias both in +-1/28.
  const { params } = dense(1000, options).init(random.key(0), [784]);
  for (const [name, p] of [
    ['kernel', params.kernel],
    ['bias', params.bias],
  ] as const) {
    const m = moments(vals(p));
    const bound = 1 / 28;
    t.ok(m.min >= -bound && m.max <= bound && m.max > 0.99 * bound && m.min < -0.99 * bound, `dense ${name} within and filling +-1/28`);
    const varSd = Math.sqrt((4 * bound ** 4) / 45 / p.size);
    t.ok(Math.abs(m.variance - bound ** 2 / 3) < 5 * varSd, `dense ${name} variance ${m.variance} vs ${bound ** 2 / 3}`);
  }
  const again = dense(1000, options).init(random.key(0), [784]).params;
  t.ok(identical(vals(again.bias), vals(params.bias)) && identical(vals(again.kernel), vals(params.kernel)), 'same key: same weights');
  // torch.nn.Conv2d(16, 512, 3): fan-in 3*3*16 = 144, bias in +-1/12.
  const convBias = vals(conv2d(512, 3, options).init(random.key(1), [10, 10, 16]).params.bias);
  const m = moments(convBias);
  t.ok(m.min >= -1 / 12 && m.max <= 1 / 12 && m.max > 0.9 / 12 && m.min < -0.9 / 12, `conv2d bias within and filling +-1/12`);
  // The defaults do not move: glorot kernel, zero bias.
  t.ok(
    vals(dense(8).init(random.key(0), [4]).params.bias).every((x) => x === 0),
    'default bias still zero',
  );
});
