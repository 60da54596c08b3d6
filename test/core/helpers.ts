/**
 * Shared helpers for the core tests: fast-check arbitraries for shapes and float64 arrays, a
 * central finite-difference gradient, closeness checks that report the first bad element, and a
 * bridge from fast-check properties to tap assertions.
 *
 * Run directly (tap runs every file under test/), it self-checks the finite-difference helper
 * against closed-form derivatives, so a broken reference cannot make the other tests vacuous.
 */
import fc from 'fast-check';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { fromTyped, grad, mul, sum, type NDArray, type Tensor } from '../../core/index.js';

export type Shape = number[];

export const sizeOfShape = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

// ----------------------------------------------------------------------------- arbitraries

/** A shape of rank in [minRank, maxRank], each dimension in [1, maxDim]. */
export function shapeArb(minRank: number, maxRank: number, maxDim = 3): fc.Arbitrary<Shape> {
  return fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: minRank, maxLength: maxRank });
}

/** Plain doubles in [lo, hi]. */
export function valuesArb(n: number, lo: number, hi: number): fc.Arbitrary<number[]> {
  return fc.array(fc.double({ min: lo, max: hi, noNaN: true, noDefaultInfinity: true }), { minLength: n, maxLength: n });
}

/** Doubles whose magnitude lies in [lo, hi], with random sign (keeps away from kinks at 0). */
export function awayFromZeroArb(n: number, lo: number, hi: number): fc.Arbitrary<number[]> {
  return fc.array(
    fc.tuple(fc.double({ min: lo, max: hi, noNaN: true }), fc.boolean()).map(([m, s]) => (s ? m : -m)),
    { minLength: n, maxLength: n },
  );
}

/** n pairwise distinct values, at least `gap` apart (no ties for max/min/sort, even after +-h). */
export function distinctArb(n: number, gap = 0.01): fc.Arbitrary<number[]> {
  return fc.uniqueArray(fc.integer({ min: -300, max: 300 }), { minLength: n, maxLength: n }).map((v) => v.map((k) => k * gap));
}

/** A float64 array of `shape` from plain values. */
export function f64(values: readonly number[], shape: readonly number[]): NDArray {
  return fromTyped(Float64Array.from(values), shape, 'float64');
}

/** Arbitrary float64 array of a given shape with values in [lo, hi]. */
export function arrArb(shape: readonly number[], lo = -2, hi = 2): fc.Arbitrary<NDArray> {
  return valuesArb(sizeOfShape(shape), lo, hi).map((v) => f64(v, shape));
}

/** Shape and an array of that shape. */
export function shapedArb(minRank: number, maxRank: number, maxDim = 3, lo = -2, hi = 2): fc.Arbitrary<NDArray> {
  return shapeArb(minRank, maxRank, maxDim).chain((s) => arrArb(s, lo, hi));
}

/** A random subset of the axes of a rank-r array (possibly empty), or undefined (= all axes). */
export function axesArb(rank: number): fc.Arbitrary<number[] | undefined> {
  if (rank === 0) return fc.constant(undefined);
  return fc.option(fc.subarray(Array.from({ length: rank }, (_, i) => i)), { nil: undefined, freq: 4 });
}

// ----------------------------------------------------------------------------- numerics

/**
 * Central finite differences of a scalar function of several float64 arrays:
 * dF/dx_k[i] ~ (F(x + h e_i) - F(x - h e_i)) / 2h for every element of every argument.
 */
export function fdGrad(F: (...xs: NDArray[]) => number, xs: readonly NDArray[], h = 1e-6): Float64Array[] {
  return xs.map((x, k) => {
    const base = Float64Array.from(x.toTyped() as Float64Array);
    const out = new Float64Array(base.length);
    for (let i = 0; i < base.length; i++) {
      const at = (delta: number): number => {
        const v = Float64Array.from(base);
        v[i] += delta;
        const args = xs.slice();
        args[k] = fromTyped(v, x.shape, 'float64');
        return F(...args);
      };
      out[i] = (at(h) - at(-h)) / (2 * h);
    }
    return out;
  });
}

/** Index and values of the first element where |a - b| > atol + rtol * max(|a|, |b|); null if all close. */
export function firstMismatch(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): string | null {
  if (actual.length !== expected.length) return `length ${actual.length} vs expected ${expected.length}`;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(a) !== Number.isNaN(e)) return `element ${i}: ${a} vs expected ${e}`;
    if (Number.isNaN(a)) continue;
    if (a === e) continue;
    if (!(Math.abs(a - e) <= atol + rtol * Math.max(Math.abs(a), Math.abs(e)))) return `element ${i}: ${a} vs expected ${e} (diff ${Math.abs(a - e)})`;
  }
  return null;
}

/** Throws (for use inside fast-check properties) unless the arrays are close. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  const m = firstMismatch(actual, expected, rtol, atol);
  if (m !== null) throw new Error(`${what}: ${m}\n  actual   ${fmt(actual)}\n  expected ${fmt(expected)}`);
}

/** Throws unless the arrays are elementwise identical (Object.is except +-0 equal). */
export function expectExact(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expectClose(actual, expected, 0, 0, what);
}

export function expectShape(x: Tensor, shape: readonly number[], what: string): void {
  if (x.shape.length !== shape.length || x.shape.some((d, i) => d !== shape[i])) throw new Error(`${what}: shape [${x.shape.join(', ')}], expected [${shape.join(', ')}]`);
}

function fmt(a: ArrayLike<number>): string {
  const xs = Array.from(a).slice(0, 16);
  return `[${xs.map((v) => (Number.isInteger(v) ? String(v) : v.toPrecision(8))).join(', ')}${a.length > 16 ? ', ...' : ''}]`;
}

/**
 * The gradient check of the issue: grad of sum(w * f(xs)) (w random, of f's output shape) against
 * central differences of the same function, for every argument. Throws on mismatch.
 */
export function checkVjp(name: string, f: (...xs: Tensor[]) => Tensor, xs: NDArray[], wValues: readonly number[], opts: { rtol?: number; atol?: number } = {}): void {
  const rtol = opts.rtol ?? 1e-5;
  const atol = opts.atol ?? 1e-6;
  const y = f(...xs);
  if (y.dtype !== 'float64') throw new Error(`${name}: expected a float64 output, got ${y.dtype}`);
  const n = sizeOfShape(y.shape);
  const w = f64(
    Array.from({ length: n }, (_, i) => wValues[i % wValues.length]),
    y.shape,
  );
  const F = (...a: Tensor[]): Tensor => sum(mul(w, f(...a)));
  const argnums = xs.map((_, i) => i);
  const analytic = grad(F, { argnums }) (...xs) as Tensor[];
  const numeric = fdGrad((...a) => F(...a).item(), xs);
  analytic.forEach((g, k) => {
    expectShape(g, xs[k].shape, `${name}: gradient ${k}`);
    if (g.dtype !== 'float64') throw new Error(`${name}: gradient ${k} has dtype ${g.dtype}, expected float64`);
    expectClose(g.toTyped(), numeric[k], rtol, atol, `${name}: d/dx${k} (input shape [${xs[k].shape.join(', ')}], output shape [${y.shape.join(', ')}])`);
  });
}

/** Random weights for checkVjp. */
export const weightsArb = valuesArb(64, -1.5, 1.5);

// ----------------------------------------------------------------------------- fast-check <-> tap

/** Runs a property and turns its outcome into one tap assertion carrying fast-check's report. */
export function prop<Ts extends [unknown, ...unknown[]]>(t: Test, name: string, arbs: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> }, predicate: (...args: Ts) => void, numRuns = 30): void {
  const details = fc.check(fc.property(...arbs, predicate), { numRuns });
  const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  t.ok(!details.failed, name, details.failed ? { diagnostic: true, error, report: fc.defaultReportMessage(details) } : {});
}

/** Runs fn and returns the thrown error (or undefined). */
export function thrown(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  return undefined;
}

// ----------------------------------------------------------------------------- self-check

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { default: t } = await import('tap');
  t.test('fdGrad matches closed-form derivatives', async (t) => {
    // F(x, y) = sum(x^3 * y) + sum(sin(x)): dF/dx = 3x^2 y + cos x, dF/dy = x^3.
    const xv = [0.3, -1.2, 2.0];
    const yv = [1.5, -0.5, 0.25];
    const F = (x: NDArray, y: NDArray): number => {
      const a = x.toTyped();
      const b = y.toTyped();
      let s = 0;
      for (let i = 0; i < a.length; i++) s += a[i] ** 3 * b[i] + Math.sin(a[i]);
      return s;
    };
    const [gx, gy] = fdGrad(F as (...xs: NDArray[]) => number, [f64(xv, [3]), f64(yv, [3])]);
    t.equal(firstMismatch(gx, xv.map((x, i) => 3 * x * x * yv[i] + Math.cos(x)), 1e-7, 1e-8), null);
    t.equal(firstMismatch(gy, xv.map((x) => x ** 3), 1e-7, 1e-8), null);
  });
  t.test('firstMismatch detects differences and NaN', async (t) => {
    t.equal(firstMismatch([1, 2], [1, 2 + 1e-9], 1e-6, 0), null);
    t.match(firstMismatch([1, 2], [1, 2.1], 1e-6, 0), /element 1/);
    t.match(firstMismatch([NaN], [0], 1, 1), /element 0/);
    t.match(firstMismatch([1], [1, 2], 1, 1), /length/);
  });
  t.test('checkVjp rejects a wrong gradient', async (t) => {
    // grad of sum(w * x) is w, so checkVjp must pass on identity-like f and flag a broken reference.
    const x = f64([0.5, -0.25], [2]);
    t.doesNotThrow(() => checkVjp('mul', (a) => mul(a, a), [x], [1, -2]));
    t.throws(() => checkVjp('broken', (a) => mul(a, a), [x], [1, -2], { rtol: 0, atol: -1 }));
  });
}
