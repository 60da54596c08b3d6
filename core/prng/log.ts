/**
 * Natural logarithm of a double, correctly rounded (up to cases too close to
 * a rounding boundary to matter: the internal error is below 2^-100 relative).
 *
 * Why not `Math.log`: XLA's CPU backend evaluates float64 `log` with the C
 * library's `log` (glibc's is correctly rounded in practice), while V8's
 * `Math.log` is only faithful: on random inputs about 7% of its results are
 * one ulp away from the correctly rounded value, which would show up as
 * last-bit differences from `jax.random.normal(..., float64)`.
 *
 * Method: x = 2^k * m with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(s) with
 * s = (m - 1) / (m + 1), |s| < 0.172, summed as an odd series whose leading
 * terms are kept in double-double arithmetic; k * ln 2 is added in
 * double-double and the sum rounded once.
 */
import { twoProductErr, twoSumErr } from './fma.js';

const LN2_HI = 0.6931471805599453; // RN(ln 2)
const LN2_LO = 2.3190468138462996e-17; // RN(ln 2 - LN2_HI)
const SQRT2 = Math.SQRT2;
const TWO54 = 2 ** 54;

/** 1/(2n+1) for n = 0..21 as double-doubles: the atanh series coefficients. */
const TERMS = 22;
/** Number of leading series terms summed in double-double. */
const DD_TERMS = 5;
const COEF_HI = new Float64Array(TERMS);
const COEF_LO = new Float64Array(TERMS);
for (let n = 0; n < TERMS; n++) {
  const d = 2 * n + 1;
  const hi = 1 / d;
  // 1 - hi * d is exact via TwoProduct, so lo = (1 - hi * d) / d to double precision.
  const p = hi * d;
  const e = twoProductErr(hi, d, p);
  COEF_HI[n] = hi;
  COEF_LO[n] = (1 - p - e) / d;
}

const scratch = new Float64Array(1);
const words = new Uint32Array(scratch.buffer);
const HI_WORD = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1 ? 1 : 0;

/**
 * Correctly rounded natural logarithm.
 *
 * @example
 * log64(10); // 2.302585092994046
 */
export function log64(x: number): number {
  if (!(x > 0) || x === Infinity) return Math.log(x); // NaN, negative, 0, +inf
  let k = 0;
  if (x < 2 ** -1022) {
    x *= TWO54; // subnormal: normalise exactly
    k = -54;
  }
  scratch[0] = x;
  const hi = words[HI_WORD];
  k += ((hi >>> 20) & 0x7ff) - 1023;
  words[HI_WORD] = (hi & 0x800fffff) | 0x3ff00000; // mantissa m in [1, 2)
  let m = scratch[0];
  if (m > SQRT2) {
    m *= 0.5;
    k += 1;
  }
  const f = m - 1; // exact (Sterbenz)
  // s = f / (2 + f) as a double-double (sh, sl).
  const dh = 2 + f;
  const dl = twoSumErr(2, f, dh);
  const sh = f / dh;
  const ph = sh * dh;
  const pe = twoProductErr(sh, dh, ph);
  const sl = (f - ph - pe - sh * dl) / dh;
  // z = s^2 as a double-double.
  const zh = sh * sh;
  const zl = twoProductErr(sh, sh, zh) + 2 * sh * sl;
  // T = sum_n z^n / (2n + 1) by Horner. Terms from DD_TERMS on contribute
  // less than z^5 / 11 < 2^-28 of T, so plain double arithmetic keeps their
  // error below 2^-80 relative; the leading ones are done in double-double.
  let th = COEF_HI[TERMS - 1];
  for (let n = TERMS - 2; n >= DD_TERMS; n--) th = th * zh + COEF_HI[n];
  let tl = 0;
  for (let n = DD_TERMS - 1; n >= 0; n--) {
    // (th, tl) = (th, tl) * (zh, zl)
    const mh = th * zh;
    const ml = twoProductErr(th, zh, mh) + (th * zl + tl * zh);
    const mh2 = mh + ml;
    const ml2 = ml - (mh2 - mh);
    // (th, tl) = (mh2, ml2) + coef[n]
    const ah = mh2 + COEF_HI[n];
    const al = twoSumErr(mh2, COEF_HI[n], ah) + ml2 + COEF_LO[n];
    th = ah + al;
    tl = al - (th - ah);
  }
  // log(m) = 2 s T.
  const lh = sh * th;
  const ll = twoProductErr(sh, th, lh) + (sh * tl + sl * th);
  const logmH = 2 * lh;
  const logmL = 2 * ll;
  // k ln 2 as a double-double.
  const kh = k * LN2_HI;
  const kl = twoProductErr(k, LN2_HI, kh) + k * LN2_LO;
  // Sum and round once.
  const rh = kh + logmH;
  const rl = twoSumErr(kh, logmH, rh) + kl + logmL;
  return rh + rl;
}
