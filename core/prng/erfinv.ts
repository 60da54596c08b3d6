/**
 * Inverse error function in float32 and float64, evaluated the way XLA's CPU
 * backend evaluates `erf_inv` for JAX (`xla/hlo/builder/lib/math.cc`
 * `ErfInv32`/`ErfInv64`, equivalently StableHLO's `chlo.erf_inv`
 * decomposition), so that `normal` agrees with `jax.random.normal` bit for bit
 * in the large majority of cases.
 *
 * Both use M. Giles, "Approximating the erfinv function", GPU Computing Gems
 * Jade Edition (2011): with w = -log(1 - x^2), a polynomial in w (centre) or
 * in sqrt(w) (tails), times x. Details taken from XLA because they change the
 * last bit:
 * - w is computed as -log1p(-x*x), with XLA's log1p: a Cephes rational
 *   approximation for |arg| < sqrt(2) - 1 and log(1 + arg) otherwise;
 * - XLA's CPU compiler fuses each Horner step `p * t + c` into one FMA, which
 *   is emulated exactly with ./fma.ts.
 * - the log(1 + arg) branch (|x| > 0.64) uses a correctly rounded log
 *   (./log.ts), as the C library's `log` that XLA calls for float64 is in
 *   practice; `Math.log` is off by an ulp in ~7% of cases.
 * What remains different: for float32 XLA uses its own vectorised `log`
 * approximation, which is not reproduced, so about 0.5% of float32 values are
 * 1-3 ulp away from JAX's (CPU); for float64 only the rare inputs on which the C
 * library's log is not correctly rounded differ (measured: ~0.03% of draws, 1
 * ulp). JAX's GPU backend uses yet other log/log1p code, so JAX itself is not
 * bit-reproducible across backends here.
 *
 * Accuracy, measured against an independent erf (test/prng/numerics.test.ts):
 * relative error below 6e-15 (float64) and 3.2e-7 (float32, under 3 ulp) for
 * |x| <= 0.99. Closer to +-1 it degrades to at most ~1.1e-10 (float64) and
 * ~6e-6 (float32), because XLA forms 1 - x^2 as 1 + (-x*x), and x*x loses the
 * low bits of 1 - x^2; Giles' own (1 - x)(1 + x) would not. This is kept on
 * purpose, to produce JAX's samples; it only affects normal draws beyond
 * about 3.4 sigma, by amounts far below sampling noise.
 */
import { fma32, fma64 } from './fma.js';
import { log64 } from './log.js';

// Giles' single-precision coefficients, rounded to float32 as XLA stores them.
const F32_CENTRE = Float32Array.of(
  2.81022636e-8,
  3.43273939e-7,
  -3.5233877e-6,
  -4.39150654e-6,
  0.00021858087,
  -0.00125372503,
  -0.00417768164,
  0.246640727,
  1.50140941,
);
const F32_TAIL = Float32Array.of(
  -0.000200214257,
  0.000100950558,
  0.00134934322,
  -0.00367342844,
  0.00573950773,
  -0.0076224613,
  0.00943887047,
  1.00167406,
  2.83297682,
);

// Giles' double-precision coefficients (highest degree first).
const F64_CENTRE = [
  -3.6444120640178196996e-21, -1.685059138182016589e-19, 1.2858480715256400167e-18, 1.115787767802518096e-17, -1.333171662854620906e-16,
  2.0972767875968561637e-17, 6.6376381343583238325e-15, -4.0545662729752068639e-14, -8.1519341976054721522e-14, 2.6335093153082322977e-12,
  -1.2975133253453532498e-11, -5.4154120542946279317e-11, 1.051212273321532285e-9, -4.1126339803469836976e-9, -2.9070369957882005086e-8,
  4.2347877827932403518e-7, -1.3654692000834678645e-6, -1.3882523362786468719e-5, 0.0001867342080340571352, -0.00074070253416626697512,
  -0.0060336708714301490533, 0.24015818242558961693, 1.6536545626831027356,
];
const F64_MID = [
  2.2137376921775787049e-9, 9.0756561938885390979e-8, -2.7517406297064545428e-7, 1.8239629214389227755e-8, 1.5027403968909827627e-6,
  -4.013867526981545969e-6, 2.9234449089955446044e-6, 1.2475304481671778723e-5, -4.7318229009055733981e-5, 6.8284851459573175448e-5,
  2.4031110387097893999e-5, -0.0003550375203628474796, 0.00095328937973738049703, -0.0016882755560235047313, 0.0024914420961078508066,
  -0.0037512085075692412107, 0.005370914553590063617, 1.0052589676941592334, 3.0838856104922207635,
];
const F64_TAIL = [
  -2.7109920616438573243e-11, -2.5556418169965252055e-10, 1.5076572693500548083e-9, -3.7894654401267369937e-9, 7.6157012080783393804e-9,
  -1.4960026627149240478e-8, 2.9147953450901080826e-8, -6.7711997758452339498e-8, 2.2900482228026654717e-7, -9.9298272942317002539e-7,
  4.5260625972231537039e-6, -1.9681778105531670567e-5, 7.5995277030017761139e-5, -0.00021503011930044477347, -0.00013871931833623122026,
  1.0103004648645343977, 4.8499064014085844221,
];

const f32 = Math.fround;

// XLA's log1p for |x| < sqrt(2) - 1 is x - x^2/2 + x^3 * P(x)/Q(x) (Cephes);
// coefficients highest degree first, as XLA's EvaluatePolynomial consumes them.
const LOG1P_SMALL = 0.4142135623730950488;
const LOG1P_DEN = [
  1, 1.5062909083469192043167e1, 8.3047565967967209469434e1, 2.2176239823732856465394e2, 3.0909872225312059774938e2,
  2.1642788614495947685003e2, 6.0118660497603843919306e1,
];
const LOG1P_NUM = [
  4.5270000862445199635215e-5, 4.9854102823193375972212e-1, 6.5787325942061044846969, 2.9911919328553073277375e1,
  6.0949667980987787057556e1, 5.7112963590585538103336e1, 2.0039553499201281259648e1,
];
const LOG1P_DEN_F32 = Float32Array.from(LOG1P_DEN);
const LOG1P_NUM_F32 = Float32Array.from(LOG1P_NUM);

/** XLA's log1p in float32 arithmetic, multiply-adds fused. */
function log1pXla32(x: number): number {
  if (!(Math.abs(x) < LOG1P_SMALL)) return f32(log64(f32(x + 1)));
  const x2 = f32(x * x);
  let den = 0;
  let num = 0;
  for (let i = 0; i < 7; i++) {
    den = fma32(den, x, LOG1P_DEN_F32[i]);
    num = fma32(num, x, LOG1P_NUM_F32[i]);
  }
  let r = f32(num / den);
  r = f32(f32(x * x2) * r);
  r = fma32(-0.5, x2, r);
  return f32(x + r);
}

/** XLA's log1p in float64 arithmetic, multiply-adds fused. */
function log1pXla64(x: number): number {
  if (!(Math.abs(x) < LOG1P_SMALL)) return log64(x + 1);
  const x2 = x * x;
  let den = 0;
  let num = 0;
  for (let i = 0; i < 7; i++) {
    den = fma64(den, x, LOG1P_DEN[i]);
    num = fma64(num, x, LOG1P_NUM[i]);
  }
  let r = num / den;
  r = x * x2 * r;
  r = fma64(-0.5, x2, r);
  return x + r;
}

/**
 * erfinv(x) evaluated in float32 arithmetic (every operation rounded to
 * float32), as XLA's `ErfInv32`.
 *
 * @param x a value in [-1, 1] (rounded to float32 first)
 * @returns erfinv(x) as a float32 value; +-Infinity at +-1, NaN outside [-1, 1]
 *
 * @example
 * erfinv32(0.5); // 0.4769362807273865 (the float32 nearest 0.4769362762...)
 */
export function erfinv32(x: number): number {
  x = f32(x);
  if (Math.abs(x) === 1) return x * Infinity;
  const w = -log1pXla32(f32(x * -x));
  let c: Float32Array;
  let t: number;
  if (w < 5) {
    c = F32_CENTRE;
    t = f32(w - 2.5);
  } else {
    c = F32_TAIL;
    t = f32(f32(Math.sqrt(w)) - 3);
  }
  let p = c[0];
  for (let i = 1; i < 9; i++) p = fma32(p, t, c[i]);
  return f32(p * x);
}

/**
 * erfinv(x) in float64, as XLA's `ErfInv64` (Giles' double-precision
 * three-branch approximation).
 *
 * @param x a value in [-1, 1]
 * @returns erfinv(x); +-Infinity at +-1, NaN outside [-1, 1]
 *
 * @example
 * erfinv64(0.5); // 0.47693627620446977 (true value 0.476936276204469873...)
 */
export function erfinv64(x: number): number {
  if (Math.abs(x) === 1) return x * Infinity;
  const w = -log1pXla64(x * -x);
  let c: readonly number[];
  let t: number;
  if (w < 6.25) {
    c = F64_CENTRE;
    t = w - 3.125;
  } else if (w < 16) {
    c = F64_MID;
    t = Math.sqrt(w) - 3.25;
  } else {
    c = F64_TAIL;
    t = Math.sqrt(w) - 5;
  }
  let p = c[0];
  for (let i = 1; i < c.length; i++) p = fma64(p, t, c[i]);
  return p * x;
}
