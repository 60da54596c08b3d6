/**
 * Fused multiply-add (a * b + c with a single rounding) in float32 and
 * float64, emulated exactly with error-free transformations.
 *
 * Why: XLA's CPU backend contracts `x * y + z` into hardware FMA, so JAX's
 * `uniform` (`floats * (maxval - minval) + minval`) and the Horner loops of
 * `erf_inv` round once per multiply-add. Reproducing JAX's values bit for bit
 * needs the same single rounding, which JS has no operator for.
 *
 * Method: the exact product is split into a double-double with Dekker's
 * TwoProduct (Veltkamp splitting), added to c with Knuth's TwoSum, and the low
 * part is combined with round-to-odd before the final round-to-nearest
 * (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved
 * algorithms using rounding to odd", IEEE TC 2008), which makes the result the
 * correctly rounded a * b + c. For float32, a * b is already exact in a double,
 * so only the double rounding of the final sum needs care (see fma32).
 */

const f32 = Math.fround;

// Little-endian views of one double: index 0 is the low 32 bits of the mantissa.
const scratch = new Float64Array(1);
const words = new Uint32Array(scratch.buffer);
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
const LO = LITTLE_ENDIAN ? 0 : 1;
const HI = LITTLE_ENDIAN ? 1 : 0;

/**
 * Round-to-odd of the exact sum v + w, where v = RN(v + w) and w is the
 * rounding error (as produced by TwoSum): if inexact and v's last mantissa bit
 * is even, step one ulp towards w.
 */
function roundToOdd(v: number, w: number): number {
  if (w === 0 || !Number.isFinite(v)) return v;
  if (v === 0) return w > 0 ? Number.MIN_VALUE : -Number.MIN_VALUE;
  scratch[0] = v;
  const lo = words[LO];
  if ((lo & 1) === 1) return v;
  if (w > 0 === v > 0) {
    // Away from zero: magnitude + 1 ulp; lo is even, so no carry.
    words[LO] = lo + 1;
  } else if (lo !== 0) {
    words[LO] = lo - 1;
  } else {
    // Towards zero with a borrow from the high word.
    words[LO] = 0xffffffff;
    words[HI] = words[HI] - 1;
  }
  return scratch[0];
}

/** Knuth's TwoSum: given s = RN(a + b), returns err with a + b = s + err exactly. */
export function twoSumErr(a: number, b: number, s: number): number {
  const bb = s - a;
  return a - (s - bb) + (b - bb);
}

const SPLITTER = 134217729; // 2^27 + 1
/** Beyond these magnitudes Veltkamp splitting overflows or the error term underflows. */
const SPLIT_MAX = 2 ** 995;
const PRODUCT_MIN = 2 ** -900;

/**
 * Dekker's TwoProduct: given p = RN(a * b), returns e with a * b = p + e
 * exactly (when |a|, |b| <= 2^995 and the product does not underflow).
 */
export function twoProductErr(a: number, b: number, p: number): number {
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  return ah * bh - p + ah * bl + al * bh + al * bl;
}

/**
 * Correctly rounded float64 a * b + c (as C's `fma`).
 *
 * Exact whenever |a|, |b| <= 2^995 and |a * b| is 0 or >= 2^-900 (far beyond
 * any sampler's use); outside that it falls back to `a * b + c`.
 *
 * @example
 * fma64(0.1, 10, -1); // 5.551115123125783e-17, the rounding error of 0.1 * 10
 */
export function fma64(a: number, b: number, c: number): number {
  const p = a * b;
  const ap = Math.abs(p);
  if (!Number.isFinite(p) || !Number.isFinite(c) || Math.abs(a) > SPLIT_MAX || Math.abs(b) > SPLIT_MAX || (ap !== 0 && ap < PRODUCT_MIN)) {
    return p + c;
  }
  const e = twoProductErr(a, b, p);
  // c + p = th + tl exactly; then RN(th + RO(tl + e)) is the correctly
  // rounded c + p + e (Boldo-Melquiond).
  const th = c + p;
  const tl = twoSumErr(c, p, th);
  const vh = tl + e;
  const vl = twoSumErr(tl, e, vh);
  return th + roundToOdd(vh, vl);
}

/**
 * Correctly rounded float32 a * b + c for float32 inputs (as C's `fmaf`).
 *
 * a * b is exact in a double, so s = RN64(a * b + c) has a single rounding
 * error `err`; rounding s to float32 is then correct unless s sits exactly on
 * a midpoint between two float32s while the exact sum does not, in which case
 * the sign of `err` picks the side.
 *
 * @example
 * fma32(Math.fround(0.1), 10, -1); // 1.4901161193847656e-8
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b; // exact: two 24-bit significands fit in 53 bits
  const s = p + c;
  const r = f32(s);
  const d = s - r; // exact
  // s is a float32 midpoint iff the float32 on the other side of s, r + 2d,
  // exists (for any other s, r + 2d falls strictly between two float32s).
  // Checked first because it is cheap and almost always false.
  const other = r + 2 * d;
  if (d === 0 || f32(other) !== other) return r;
  const err = twoSumErr(p, c, s);
  if (err === 0) return r;
  return err > 0 === d > 0 ? other : r;
}
