/**
 * Surrogate gradients: a spike function is the exact Heaviside step forward, H(u) = 1 for u > 0
 * (else 0), and a chosen derivative g(u) backward, dS/du = g(u). Each is a `customVjp`, so it
 * compiles inside a jit-compiled scan like any other body (the primal is inlined; see
 * docs/architecture.md "Neurons: surrogate, cell, time loop").
 */
import {
  abs,
  add,
  cast,
  customVjp,
  div,
  greater,
  less,
  maximum,
  mul,
  notEqual,
  onesLike,
  sigmoid,
  square,
  sub,
  where,
  type Tensor,
} from '../core/index.js';

/** A spike function: `spike(u)` is H(u) forward and `derivative(u)` times the cotangent backward. */
export interface Surrogate {
  /** The surrogate's name ('fastSigmoid', 'atan', ...; a custom one's given name). */
  readonly name: string;
  /** Its parameters (slope, alpha, width), for summaries and export. */
  readonly config: Readonly<Record<string, number>>;
  /** g(u): the derivative used backward. */
  derivative(u: Tensor): Tensor;
  /** H(u) forward (NaN stays NaN), g(u) times the cotangent backward. */
  spike(u: Tensor): Tensor;
}

/** H(u) = 1 where u > 0, else 0, in u's dtype; NaN inputs give NaN (a diverged membrane stays visible). */
export function heaviside(u: Tensor): Tensor {
  const h = cast(greater(u, 0), u.dtype);
  return where(notEqual(u, u), u, h);
}

function checkPositive(where: string, name: string, value: number): void {
  if (!(typeof value === 'number' && Number.isFinite(value) && value > 0))
    throw new RangeError(`${where}: ${name} must be a positive finite number, got ${value}`);
}

/**
 * A surrogate from its derivative `g`: H forward, `ct * g(u)` backward.
 *
 * @example
 * const mine = custom((u) => exp(neg(abs(u))), 'laplace');
 * const s = mine.spike(sub(membrane, threshold));
 */
export function custom(derivative: (u: Tensor) => Tensor, name = 'custom', config: Readonly<Record<string, number>> = {}): Surrogate {
  if (typeof derivative !== 'function')
    throw new TypeError(`surrogate.custom: expected a derivative function g(u), got ${typeof derivative}`);
  const spike = customVjp(
    (u: Tensor) => heaviside(u),
    (u: Tensor) => [heaviside(u), u] as [Tensor, Tensor],
    (u: Tensor, ct: Tensor) => [mul(ct, derivative(u))],
  );
  return { name, config, derivative, spike };
}

/** g(u) = 1: the gradient passes the step unchanged. */
export function straightThrough(): Surrogate {
  return custom((u) => onesLike(u), 'straightThrough');
}

/** SuperSpike's fast sigmoid: g(u) = 1 / (slope |u| + 1)^2 (slope 25 as snnTorch). */
export function fastSigmoid(slope = 25): Surrogate {
  checkPositive('surrogate.fastSigmoid', 'slope', slope);
  return custom((u) => div(1, square(add(mul(abs(u), slope), 1))), 'fastSigmoid', { slope });
}

/** g(u) = (alpha / 2) / (1 + (pi/2 alpha u)^2) (alpha 2 as snnTorch). */
export function atan(alpha = 2): Surrogate {
  checkPositive('surrogate.atan', 'alpha', alpha);
  return custom((u) => div(alpha / 2, add(1, square(mul(u, (Math.PI / 2) * alpha)))), 'atan', { alpha });
}

/** The logistic's derivative: g(u) = slope s (1 - s), s = 1 / (1 + e^(-slope u)) (slope 25 as snnTorch). */
export function sigmoidSurrogate(slope = 25): Surrogate {
  checkPositive('surrogate.sigmoid', 'slope', slope);
  return custom(
    (u) => {
      const s = sigmoid(mul(u, slope));
      return mul(mul(s, sub(1, s)), slope);
    },
    'sigmoid',
    { slope },
  );
}

/**
 * A triangle: g(u) = max(0, 1 - |u| / width) / width (area 1). snnTorch's `triangular` is a
 * different function (+thr for u < 0, -thr for u >= 0); this is the common triangle.
 */
export function triangular(width = 1): Surrogate {
  checkPositive('surrogate.triangular', 'width', width);
  return custom((u) => div(maximum(sub(1, div(abs(u), width)), 0), width), 'triangular', { width });
}

/** A rectangle: g(u) = 1/width for |u| < width/2, else 0 (area 1). */
export function boxcar(width = 1): Surrogate {
  checkPositive('surrogate.boxcar', 'width', width);
  return custom((u) => div(cast(less(abs(u), width / 2), u.dtype), width), 'boxcar', { width });
}

export { sigmoidSurrogate as sigmoid };

/** The surrogates by name, for options that take a string. */
export type SurrogateName = 'straightThrough' | 'fastSigmoid' | 'atan' | 'sigmoid' | 'triangular' | 'boxcar';

/** A surrogate from a name (default parameters) or itself. */
export function resolveSurrogate(
  s: Surrogate | SurrogateName | undefined,
  where: string,
  fallback: SurrogateName = 'fastSigmoid',
): Surrogate {
  if (s !== undefined && typeof s === 'object') return s;
  const name = s ?? fallback;
  switch (name) {
    case 'straightThrough':
      return straightThrough();
    case 'fastSigmoid':
      return fastSigmoid();
    case 'atan':
      return atan();
    case 'sigmoid':
      return sigmoidSurrogate();
    case 'triangular':
      return triangular();
    case 'boxcar':
      return boxcar();
    default:
      throw new RangeError(
        `${where}: unknown surrogate '${String(name)}'; expected a Surrogate or one of straightThrough, fastSigmoid, atan, sigmoid, triangular, boxcar`,
      );
  }
}
