/**
 * The primitive set, each primitive's parameter record, and the shape rules (abstract evaluation
 * plus the argument checks). Everything else in core is composed from these.
 */
import { isFloat, type DType } from './dtype.js';
import type { Aval, Jaxpr } from './ir.js';
import { fmtShape, shapesEqual, ShapeError, sizeOf } from './shape.js';

type NoParams = Record<string, never>;

export interface PrimParams {
  neg: NoParams;
  exp: NoParams;
  log: NoParams;
  log1p: NoParams;
  sqrt: NoParams;
  tanh: NoParams;
  logistic: NoParams;
  abs: NoParams;
  sign: NoParams;
  floor: NoParams;
  add: NoParams;
  sub: NoParams;
  mul: NoParams;
  div: NoParams;
  max: NoParams;
  min: NoParams;
  pow: NoParams;
  lt: NoParams;
  le: NoParams;
  gt: NoParams;
  ge: NoParams;
  eq: NoParams;
  ne: NoParams;
  where: NoParams;
  cast: { dtype: DType };
  stop_gradient: NoParams;
  reduce_sum: { axes: number[] };
  reduce_max: { axes: number[] };
  reduce_min: { axes: number[] };
  argmax: { axis: number };
  reshape: { shape: number[] };
  transpose: { perm: number[] };
  broadcast_to: { shape: number[] };
  slice: { starts: number[]; limits: number[] };
  pad: { low: number[]; high: number[] };
  concatenate: { axis: number };
  matmul: NoParams;
  /**
   * N-D convolution (XLA's ConvGeneralDilated in one fixed layout): lhs [batch, ...spatial, C],
   * rhs [...window, C / featureGroupCount, O], out [batch, ...outSpatial, O]. Per spatial axis:
   * the input is dilated by `lhsDilation` (zeros between elements), padded by `padLow`/`padHigh`
   * (negative values crop), and read by the window, dilated by `rhsDilation`, at steps of
   * `strides`. Output channel o uses the input channels of group floor(o / (O / groups)).
   */
  conv: ConvParams;
  take_along_axis: { axis: number };
  scatter_add_along_axis: { axis: number; shape: number[] };
  argsort: { axis: number };
  random_bits: { shape: number[] };
  random_split: { n: number };
  random_fold_in: { data: number };
  random_uniform: { shape: number[]; dtype: DType; minval: number; maxval: number };
  random_normal: { shape: number[]; dtype: DType };
  random_randint: { shape: number[]; minval: number; maxval: number };
  random_permutation: { n: number };
  scan: { body: Jaxpr; numConsts: number; numCarry: number; length: number; reverse: boolean };
  /**
   * Inputs: [...funConsts, ...fwdConsts, ...bwdConsts, ...args]. `fun` and `fwd` take
   * [...theirConsts, ...args]; fwd returns [...outs, ...residuals]; `bwd` takes
   * [...bwdConsts, ...residuals, ...outCts] and returns one cotangent per arg. All three are
   * jaxprs, so the call can be re-evaluated anywhere (inside scan bodies, under jit).
   */
  custom_vjp_call: { fun: Jaxpr; fwd: Jaxpr; bwd: Jaxpr; numFunConsts: number; numFwdConsts: number; numBwdConsts: number; name: string };
  /**
   * Inputs: [pred, ...trueConsts, ...falseConsts, ...operands]; `whenTrue` takes
   * [...trueConsts, ...operands], `whenFalse` [...falseConsts, ...operands]; both return the same avals.
   */
  cond: { whenTrue: Jaxpr; whenFalse: Jaxpr; numTrueConsts: number; numFalseConsts: number };
  /**
   * Inputs: [...condConsts, ...bodyConsts, ...carry]; `cond` takes [...condConsts, ...carry] and
   * returns a bool scalar, `body` takes [...bodyConsts, ...carry] and returns the next carry.
   */
  while_loop: { cond: Jaxpr; body: Jaxpr; numCondConsts: number; numBodyConsts: number };
}

export type Primitive = keyof PrimParams;

export type ConvParams = {
  strides: number[];
  padLow: number[];
  padHigh: number[];
  lhsDilation: number[];
  rhsDilation: number[];
  featureGroupCount: number;
};

/** Output spatial sizes of a conv, or a message saying why there are none. */
export function convOutputSpatial(inSpatial: readonly number[], window: readonly number[], p: ConvParams): number[] | string {
  const inputs = inSpatial.map((d, i) => (d - 1) * p.lhsDilation[i] + 1 + p.padLow[i] + p.padHigh[i]);
  const windows = window.map((k, i) => (k - 1) * p.rhsDilation[i] + 1);
  if (inSpatial.some((d, i) => d === 0 || window[i] === 0 || inputs[i] < windows[i])) {
    return `the (dilated) window ${fmtShape(windows)} does not fit the (dilated, padded) input ${fmtShape(inputs)}`;
  }
  return inputs.map((d, i) => Math.floor((d - windows[i]) / p.strides[i]) + 1);
}

export const UNARY = ['neg', 'exp', 'log', 'log1p', 'sqrt', 'tanh', 'logistic', 'abs', 'sign', 'floor'] as const;
export const BINARY = ['add', 'sub', 'mul', 'div', 'max', 'min', 'pow'] as const;
export const COMPARE = ['lt', 'le', 'gt', 'ge', 'eq', 'ne'] as const;
export type UnaryPrim = (typeof UNARY)[number];
export type BinaryPrim = (typeof BINARY)[number];
export type ComparePrim = (typeof COMPARE)[number];

/** Primitives computed one element at a time: the fusing compilers group these. */
export type ElementwisePrim = UnaryPrim | BinaryPrim | ComparePrim | 'where' | 'cast' | 'stop_gradient';
export const ELEMENTWISE_PRIMS: readonly ElementwisePrim[] = [...UNARY, ...BINARY, ...COMPARE, 'where', 'cast', 'stop_gradient'];
export const ELEMENTWISE: ReadonlySet<Primitive> = new Set<Primitive>(ELEMENTWISE_PRIMS);

export type ShapeRule<P extends Primitive> = (avals: Aval[], params: PrimParams[P]) => Aval[];

function fail(op: string, msg: string): never {
  throw new ShapeError(`${op}: ${msg}`);
}

function expectArity(op: string, avals: Aval[], n: number): void {
  if (avals.length !== n) fail(op, `expected ${n} operand(s), got ${avals.length}`);
}

const unary =
  (op: string, floatOnly: boolean) =>
  (avals: Aval[]): Aval[] => {
    expectArity(op, avals, 1);
    if (floatOnly && !isFloat(avals[0].dtype)) fail(op, `expected a float array, got ${avals[0].dtype}`);
    return [avals[0]];
  };

const binary =
  (op: string, outDtype?: DType) =>
  (avals: Aval[]): Aval[] => {
    expectArity(op, avals, 2);
    const [a, b] = avals;
    if (!shapesEqual(a.shape, b.shape)) fail(op, `operand shapes differ: ${fmtShape(a.shape)} vs ${fmtShape(b.shape)}`);
    if (a.dtype !== b.dtype) fail(op, `operand dtypes differ: ${a.dtype} vs ${b.dtype}`);
    return [{ shape: a.shape, dtype: outDtype ?? a.dtype }];
  };

const reduction =
  (op: string) =>
  ([x]: Aval[], { axes }: { axes: number[] }): Aval[] => {
    for (const a of axes) if (a < 0 || a >= x.shape.length) fail(op, `axis ${a} out of range for shape ${fmtShape(x.shape)}`);
    return [{ shape: x.shape.filter((_, i) => !axes.includes(i)), dtype: x.dtype }];
  };

const randomKey = (op: string, key: Aval): void => {
  if (key.dtype !== 'uint32' || !shapesEqual(key.shape, [2]))
    fail(op, `expected a PRNG key (uint32[2]), got ${key.dtype}${fmtShape(key.shape)}`);
};

/** Abstract evaluation: output avals from input avals, with every argument check. */
export const shapeRules: { [P in Primitive]: ShapeRule<P> } = {
  neg: unary('neg', false),
  exp: unary('exp', true),
  log: unary('log', true),
  log1p: unary('log1p', true),
  sqrt: unary('sqrt', true),
  tanh: unary('tanh', true),
  logistic: unary('logistic', true),
  abs: unary('abs', false),
  sign: unary('sign', false),
  floor: unary('floor', false),
  add: binary('add'),
  sub: binary('sub'),
  mul: binary('mul'),
  div: binary('div'),
  max: binary('max'),
  min: binary('min'),
  pow: binary('pow'),
  lt: binary('lt', 'bool'),
  le: binary('le', 'bool'),
  gt: binary('gt', 'bool'),
  ge: binary('ge', 'bool'),
  eq: binary('eq', 'bool'),
  ne: binary('ne', 'bool'),
  where: (avals) => {
    expectArity('where', avals, 3);
    const [c, a, b] = avals;
    if (c.dtype !== 'bool') fail('where', `condition must be bool, got ${c.dtype}`);
    if (!shapesEqual(c.shape, a.shape) || !shapesEqual(a.shape, b.shape))
      fail('where', `shapes differ: condition ${fmtShape(c.shape)}, x ${fmtShape(a.shape)}, y ${fmtShape(b.shape)}`);
    if (a.dtype !== b.dtype) fail('where', `branch dtypes differ: ${a.dtype} vs ${b.dtype}`);
    return [a];
  },
  cast: ([x], { dtype }) => [{ shape: x.shape, dtype }],
  stop_gradient: (avals) => [avals[0]],
  reduce_sum: reduction('reduce_sum'),
  reduce_max: reduction('reduce_max'),
  reduce_min: reduction('reduce_min'),
  argmax: ([x], { axis }) => {
    if (axis < 0 || axis >= x.shape.length) fail('argmax', `axis ${axis} out of range for shape ${fmtShape(x.shape)}`);
    if (x.shape[axis] === 0) fail('argmax', `empty axis ${axis} in shape ${fmtShape(x.shape)}`);
    return [{ shape: x.shape.filter((_, i) => i !== axis), dtype: 'int32' }];
  },
  reshape: ([x], { shape }) => {
    if (sizeOf(shape) !== sizeOf(x.shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
      fail(
        'reshape',
        `cannot reshape ${fmtShape(x.shape)} (${sizeOf(x.shape)} elements) to ${fmtShape(shape)} (${sizeOf(shape)} elements)`,
      );
    }
    return [{ shape, dtype: x.dtype }];
  },
  transpose: ([x], { perm }) => {
    const sorted = [...perm].sort((a, b) => a - b);
    if (perm.length !== x.shape.length || sorted.some((p, i) => p !== i))
      fail('transpose', `perm ${JSON.stringify(perm)} is not a permutation of the axes of ${fmtShape(x.shape)}`);
    return [{ shape: perm.map((p) => x.shape[p]), dtype: x.dtype }];
  },
  broadcast_to: ([x], { shape }) => {
    // Same rank (sizes 1 -> n), or a rank-0 scalar to any shape.
    if (x.shape.length === 0) return [{ shape, dtype: x.dtype }];
    if (shape.length !== x.shape.length || x.shape.some((d, i) => d !== 1 && d !== shape[i])) {
      fail('broadcast_to', `cannot broadcast ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
    }
    return [{ shape, dtype: x.dtype }];
  },
  slice: ([x], { starts, limits }) => {
    if (starts.length !== x.shape.length || limits.length !== x.shape.length)
      fail('slice', `starts/limits of rank ${starts.length}/${limits.length} for shape ${fmtShape(x.shape)}`);
    x.shape.forEach((d, i) => {
      if (starts[i] < 0 || limits[i] > d || starts[i] > limits[i])
        fail('slice', `range [${starts[i]}, ${limits[i]}) out of bounds for axis ${i} of shape ${fmtShape(x.shape)}`);
    });
    return [{ shape: starts.map((s, i) => limits[i] - s), dtype: x.dtype }];
  },
  pad: ([x], { low, high }) => {
    if (low.length !== x.shape.length || high.length !== x.shape.length)
      fail('pad', `padding of rank ${low.length} for shape ${fmtShape(x.shape)}`);
    if (low.some((v) => v < 0) || high.some((v) => v < 0)) fail('pad', `negative padding ${JSON.stringify({ low, high })}`);
    return [{ shape: x.shape.map((d, i) => d + low[i] + high[i]), dtype: x.dtype }];
  },
  concatenate: (avals, { axis }) => {
    if (avals.length === 0) fail('concatenate', 'needs at least one operand');
    const first = avals[0];
    if (axis < 0 || axis >= first.shape.length) fail('concatenate', `axis ${axis} out of range for shape ${fmtShape(first.shape)}`);
    let total = 0;
    for (const a of avals) {
      if (a.dtype !== first.dtype) fail('concatenate', `dtypes differ: ${first.dtype} vs ${a.dtype}`);
      if (a.shape.length !== first.shape.length || a.shape.some((d, i) => i !== axis && d !== first.shape[i])) {
        fail('concatenate', `shapes ${fmtShape(first.shape)} and ${fmtShape(a.shape)} differ outside axis ${axis}`);
      }
      total += a.shape[axis];
    }
    return [{ shape: first.shape.map((d, i) => (i === axis ? total : d)), dtype: first.dtype }];
  },
  matmul: (avals) => {
    expectArity('matmul', avals, 2);
    const [a, b] = avals;
    if (a.shape.length < 2 || b.shape.length < 2)
      fail('matmul', `operands must have rank >= 2, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
    if (a.shape.length !== b.shape.length) fail('matmul', `operand ranks differ: ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
    const r = a.shape.length;
    if (a.shape[r - 1] !== b.shape[r - 2])
      fail('matmul', `inner dimensions differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)} (${a.shape[r - 1]} vs ${b.shape[r - 2]})`);
    if (!shapesEqual(a.shape.slice(0, r - 2), b.shape.slice(0, r - 2)))
      fail('matmul', `batch dimensions differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`);
    if (a.dtype !== b.dtype) fail('matmul', `dtypes differ: ${a.dtype} vs ${b.dtype}`);
    return [{ shape: [...a.shape.slice(0, r - 1), b.shape[r - 1]], dtype: a.dtype }];
  },
  conv: (avals, p) => {
    expectArity('conv', avals, 2);
    const [x, w] = avals;
    const r = p.strides.length;
    const lists = { strides: p.strides, padLow: p.padLow, padHigh: p.padHigh, lhsDilation: p.lhsDilation, rhsDilation: p.rhsDilation };
    for (const [k, v] of Object.entries(lists)) {
      if (v.length !== r) fail('conv', `${k} has ${v.length} entries for ${r} spatial axes`);
      if (v.some((e) => !Number.isInteger(e) || (k !== 'padLow' && k !== 'padHigh' && e < 1)))
        fail('conv', `${k} must be ${k.startsWith('pad') ? 'integers' : 'positive integers'}, got ${JSON.stringify(v)}`);
    }
    if (r < 1) fail('conv', 'needs at least one spatial axis');
    if (x.shape.length !== r + 2 || w.shape.length !== r + 2) {
      fail(
        'conv',
        `for ${r} spatial axes expected input [batch, ...${r} spatial, channels] and kernel [...${r} window, in, out], got input ${fmtShape(x.shape)} and kernel ${fmtShape(w.shape)}`,
      );
    }
    if (x.dtype !== w.dtype) fail('conv', `dtypes differ: input ${x.dtype} vs kernel ${w.dtype}`);
    if (!isFloat(x.dtype)) fail('conv', `expected float arrays, got ${x.dtype}`);
    const g = p.featureGroupCount;
    const c = x.shape[r + 1];
    const o = w.shape[r + 1];
    if (!Number.isInteger(g) || g < 1 || c % g !== 0 || o % g !== 0)
      fail('conv', `featureGroupCount ${g} must divide the input channels (${c}) and the output channels (${o})`);
    if (w.shape[r] * g !== c)
      fail(
        'conv',
        `kernel ${fmtShape(w.shape)} takes ${w.shape[r]} input channels per group, but input ${fmtShape(x.shape)} has ${c} channels in ${g} group(s) (${c / g} each)`,
      );
    const spatial = convOutputSpatial(x.shape.slice(1, r + 1), w.shape.slice(0, r), p);
    if (typeof spatial === 'string') fail('conv', `input ${fmtShape(x.shape)}, kernel ${fmtShape(w.shape)}: ${spatial}`);
    return [{ shape: [x.shape[0], ...spatial, o], dtype: x.dtype }];
  },
  take_along_axis: ([x, idx], { axis }) => {
    if (idx.dtype !== 'int32') fail('take_along_axis', `indices must be int32, got ${idx.dtype}`);
    if (idx.shape.length !== x.shape.length || idx.shape.some((d, i) => i !== axis && d !== x.shape[i])) {
      fail('take_along_axis', `indices ${fmtShape(idx.shape)} must match ${fmtShape(x.shape)} outside axis ${axis}`);
    }
    return [{ shape: idx.shape, dtype: x.dtype }];
  },
  scatter_add_along_axis: ([upd, idx], { axis, shape }) => {
    if (!shapesEqual(upd.shape, idx.shape))
      fail('scatter_add_along_axis', `updates ${fmtShape(upd.shape)} and indices ${fmtShape(idx.shape)} differ`);
    if (shape.length !== upd.shape.length || shape.some((d, i) => i !== axis && d !== upd.shape[i]))
      fail('scatter_add_along_axis', `target ${fmtShape(shape)} does not match updates ${fmtShape(upd.shape)} outside axis ${axis}`);
    return [{ shape, dtype: upd.dtype }];
  },
  argsort: ([x], { axis }) => {
    if (axis < 0 || axis >= x.shape.length) fail('argsort', `axis ${axis} out of range for shape ${fmtShape(x.shape)}`);
    return [{ shape: x.shape, dtype: 'int32' }];
  },
  random_bits: ([key], { shape }) => (randomKey('random_bits', key), [{ shape, dtype: 'uint32' }]),
  random_split: ([key], { n }) => (randomKey('random_split', key), [{ shape: [n, 2], dtype: 'uint32' }]),
  random_fold_in: ([key]) => (randomKey('random_fold_in', key), [{ shape: [2], dtype: 'uint32' }]),
  random_uniform: ([key], { shape, dtype }) => (randomKey('random_uniform', key), [{ shape, dtype }]),
  random_normal: ([key], { shape, dtype }) => (randomKey('random_normal', key), [{ shape, dtype }]),
  random_randint: ([key], { shape }) => (randomKey('random_randint', key), [{ shape, dtype: 'int32' }]),
  random_permutation: ([key], { n }) => (randomKey('random_permutation', key), [{ shape: [n], dtype: 'int32' }]),
  scan: (avals, { body, numConsts, numCarry, length }) => {
    const carry = avals.slice(numConsts, numConsts + numCarry);
    const xs = avals.slice(numConsts + numCarry);
    xs.forEach((x, i) => {
      if (x.shape[0] !== length) fail('scan', `xs leaf ${i} has leading axis ${x.shape[0]}, expected the scan length ${length}`);
    });
    body.outvars.slice(0, numCarry).forEach((v, i) => {
      if (!shapesEqual(v.aval.shape, carry[i].shape) || v.aval.dtype !== carry[i].dtype) {
        fail(
          'scan',
          `the body returns carry leaf ${i} as ${v.aval.dtype}${fmtShape(v.aval.shape)} but it came in as ${carry[i].dtype}${fmtShape(carry[i].shape)}; the carry must keep its shape and dtype`,
        );
      }
    });
    return [...carry, ...body.outvars.slice(numCarry).map((v) => ({ shape: [length, ...v.aval.shape], dtype: v.aval.dtype }))];
  },
  custom_vjp_call: (_avals, { fun }) => fun.outvars.map((v) => v.aval),
  cond: (avals, { whenTrue, whenFalse, numTrueConsts, numFalseConsts }) => {
    const pred = avals[0];
    if (pred.dtype !== 'bool' || pred.shape.length !== 0)
      fail('cond', `the predicate must be a bool scalar, got ${pred.dtype}${fmtShape(pred.shape)}`);
    const operands = avals.slice(1 + numTrueConsts + numFalseConsts);
    const t = whenTrue.outvars.map((v) => v.aval);
    const f = whenFalse.outvars.map((v) => v.aval);
    if (whenTrue.invars.length !== numTrueConsts + operands.length || whenFalse.invars.length !== numFalseConsts + operands.length)
      fail('cond', 'branch arities do not match the operands');
    if (t.length !== f.length || t.some((a, i) => a.dtype !== f[i].dtype || !shapesEqual(a.shape, f[i].shape))) {
      fail(
        'cond',
        `the branches return different avals: ${t.map((a) => a.dtype + fmtShape(a.shape)).join(', ')} vs ${f.map((a) => a.dtype + fmtShape(a.shape)).join(', ')}`,
      );
    }
    return t;
  },
  while_loop: (avals, { cond, body, numCondConsts, numBodyConsts }) => {
    const carry = avals.slice(numCondConsts + numBodyConsts);
    const c = cond.outvars[0]?.aval;
    if (cond.outvars.length !== 1 || c.dtype !== 'bool' || c.shape.length !== 0)
      fail(
        'while_loop',
        `the condition must return one bool scalar, got ${cond.outvars.map((v) => v.aval.dtype + fmtShape(v.aval.shape)).join(', ')}`,
      );
    body.outvars.forEach((v, i) => {
      if (i >= carry.length || v.aval.dtype !== carry[i].dtype || !shapesEqual(v.aval.shape, carry[i].shape)) {
        fail(
          'while_loop',
          `the body returns carry leaf ${i} as ${v.aval.dtype}${fmtShape(v.aval.shape)} but it came in as ${carry[i] ? carry[i].dtype + fmtShape(carry[i].shape) : 'nothing'}`,
        );
      }
    });
    if (body.outvars.length !== carry.length)
      fail('while_loop', `the body returns ${body.outvars.length} carry leaves for ${carry.length}`);
    return carry;
  },
};
