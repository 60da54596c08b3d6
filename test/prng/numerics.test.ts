/**
 * The numerical building blocks behind uniform/normal: erfinv (checked against
 * an independent erf), the emulated fused multiply-add (checked against exact
 * BigInt arithmetic) and the correctly rounded log.
 */
import fc from 'fast-check';
import t from 'tap';
import { erfinv32, erfinv64 } from '../../core/prng/index.js';
import { fma32, fma64 } from '../../core/prng/fma.js';
import { log64 } from '../../core/prng/log.js';
import { JAX_REFERENCE as R } from './fixtures/jax-reference.js';
import { erf, erfc, erfDerivative, exactFma } from './fixtures/stats.js';

/**
 * Relative error of x as erfinv(y), inferred from the independent erf: the
 * residual of erf (or erfc in the tails, where y is close to +-1 and 1 - |y|
 * is exact) divided by erf'(x) is the error in x to first order.
 */
function impliedRelError(x: number, y: number): number {
  const ax = Math.abs(x);
  const ay = Math.abs(y);
  const residual = ay > 0.5 ? -(erfc(ax) - (1 - ay)) : erf(ax) - ay;
  return Math.abs(residual / erfDerivative(ax)) / Math.max(ax, 1e-300);
}

t.test('erfinv64 accuracy', async (t) => {
  const ys: number[] = [];
  for (let i = 1; i < 2000; i++) ys.push(-1 + i / 1000); // uniform grid
  for (let k = 1; k <= 52; k++) ys.push(1 - 2 ** -k, -(1 - 2 ** -k)); // into the tails
  for (const k of [1, 3, 10, 30, 100, 300]) ys.push(10 ** -k); // near zero
  for (let k = 1; k < 200000; k += 7) ys.push(1 - k * 2 ** -40); // where x*x loses most
  let centre = 0;
  let tails = 0;
  for (const y of ys) {
    const e = impliedRelError(erfinv64(y), y);
    if (Math.abs(y) <= 0.99) centre = Math.max(centre, e);
    else tails = Math.max(tails, e);
  }
  t.ok(centre < 2e-14, `|y| <= 0.99: worst implied relative error ${centre.toExponential(2)}`);
  // XLA's 1 - x^2 = 1 + (-x*x) costs accuracy near +-1 (see erfinv.ts).
  t.ok(tails < 2e-10, `|y| > 0.99: worst implied relative error ${tails.toExponential(2)}`);
  t.equal(erfinv64(0), 0);
  t.equal(erfinv64(1), Infinity);
  t.equal(erfinv64(-1), -Infinity);
  t.ok(Number.isNaN(erfinv64(1.5)));
  t.ok(Number.isNaN(erfinv64(Number.NaN)));
  t.equal(erfinv64(0.5), 0.47693627620446977, 'doc example');
});

t.test('erfinv32 accuracy', async (t) => {
  const f = Math.fround;
  const ys: number[] = [];
  for (let i = 1; i < 4000; i++) ys.push(f(-1 + i / 2000));
  for (let k = 1; k <= 24; k++) ys.push(f(1 - 2 ** -k));
  for (let k = 1; k < 200000; k += 7) ys.push(f(1 - k * 2 ** -24)); // every few float32s near 1
  let centre = 0;
  let tails = 0;
  for (const y of ys) {
    const e = impliedRelError(erfinv32(y), y);
    if (Math.abs(y) <= 0.99) centre = Math.max(centre, e);
    else tails = Math.max(tails, e);
  }
  // float32 ulp is 2^-23 ~ 1.2e-7 relative.
  t.ok(centre < 5e-7, `|y| <= 0.99: worst implied relative error ${centre.toExponential(2)}`);
  t.ok(tails < 1e-5, `|y| > 0.99: worst implied relative error ${tails.toExponential(2)}`);
  t.equal(erfinv32(0), 0);
  t.equal(erfinv32(1), Infinity);
  t.equal(erfinv32(-1), -Infinity);
  t.equal(erfinv32(0.5), 0.4769362807273865, 'doc example');
  t.equal(erfinv32(0.3), Math.fround(erfinv32(0.3)), 'results are float32 values');
});

t.test('erfinv is odd', async (t) => {
  fc.assert(
    fc.property(fc.double({ min: -1, max: 1, noNaN: true }), (y) => erfinv64(-y) === -erfinv64(y) && erfinv32(-y) === -erfinv32(y)),
  );
  t.pass('checked');
});

t.test('fma64 equals the exactly rounded a * b + c', async (t) => {
  const moderate = fc.double({ min: -1e30, max: 1e30, noNaN: true, noDefaultInfinity: true }).filter((x) => x === 0 || Math.abs(x) > 1e-30);
  fc.assert(
    fc.property(moderate, moderate, moderate, (a, b, c) => Object.is(fma64(a, b, c) + 0, exactFma(a, b, c, 53) + 0)),
    { numRuns: 3000 },
  );
  // Cases where a plain a * b + c rounds twice.
  t.equal(fma64(0.1, 10, -1), 5.551115123125783e-17, 'doc example: the rounding error of 0.1 * 10');
  t.equal(fma64(1 + 2 ** -52, 1 - 2 ** -53, -1), exactFma(1 + 2 ** -52, 1 - 2 ** -53, -1, 53));
  t.equal(fma64(2 ** 27 + 1, 2 ** 27 + 1, -(2 ** 54)), exactFma(2 ** 27 + 1, 2 ** 27 + 1, -(2 ** 54), 53));
});

t.test('fma32 equals the exactly rounded a * b + c in float32', async (t) => {
  const f = Math.fround;
  const f32 = fc.float({ min: f(-1e15), max: f(1e15), noNaN: true, noDefaultInfinity: true }).filter((x) => x === 0 || Math.abs(x) > 1e-15);
  fc.assert(
    fc.property(f32, f32, f32, (a, b, c) => Object.is(fma32(a, b, c) + 0, exactFma(a, b, c, 24) + 0)),
    { numRuns: 3000 },
  );
  // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 is exactly a float32 midpoint; adding
  // +-2^-80 moves the exact sum off it, but the double sum rounds back onto
  // it, so plain rounding twice picks the even neighbour for both signs.
  const a = f(1 + 2 ** -12);
  for (const c of [2 ** -80, -(2 ** -80)]) {
    const exact = exactFma(a, a, c, 24);
    t.equal(fma32(a, a, c), exact, `midpoint case, c = ${c}`);
    t.equal(f(a * a + c), 1 + 2 ** -11, 'naive double-then-float32 rounding lands on the even side');
  }
  t.not(exactFma(a, a, 2 ** -80, 24), exactFma(a, a, -(2 ** -80), 24), 'the two cases round differently');
  t.equal(fma32(f(0.1), 10, -1), 1.4901161193847656e-8, 'doc example');
});

t.test('log64 is correctly rounded', async (t) => {
  for (const [x, expected] of R.logCorrectlyRounded) t.equal(log64(x), expected, `log(${x})`);
  t.equal(log64(1), 0);
  t.equal(log64(10), 2.302585092994046, 'doc example');
  t.ok(Number.isNaN(log64(-1)));
  t.equal(log64(0), -Infinity);
  t.equal(log64(Infinity), Infinity);
  fc.assert(
    fc.property(fc.double({ min: 1e-300, max: 1e300, noNaN: true }), (x) => {
      // Never further than Math.log's own error from Math.log.
      const a = log64(x);
      const b = Math.log(x);
      return a === b || Math.abs(a - b) <= Math.abs(b) * 2.3e-16;
    }),
    { numRuns: 2000 },
  );
});
