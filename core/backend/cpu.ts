/** The CPU backend: one eager kernel per primitive over strided views, and the fusing compiler. */
import { allocate, type DType, type TypedArray } from '../dtype.js';
import { makeView, NDArray, reshapeView, type NdView } from '../ndarray.js';
import { assignStrided } from '../strided-view.js';
import { ELEMENTWISE, ELEMENTWISE_PRIMS, type PrimParams, type Primitive } from '../primitives.js';
import { contiguousStrides, reshapeStrides, stridedOffsets } from '../shape.js';
import { evalJaxpr, avalOf } from '../trace.js';
import { registerBackend, type Backend } from '../backends.js';
import { shapeRules } from '../primitives.js';
import { runFused, singleOpProgram, type FusedProgram } from './fusion.js';
import { SCALAR_OPS, type ElementwisePrim } from './scalar-ops.js';
import { runWasmReduce, type WasmReduceSpec } from './wasm/reduce.js';
import { runWasmScan } from './wasm/scan.js';
import { compileJaxpr, detachResident } from './cpu-compile.js';
import { giveBuffer, recyclable, residentScope, takeBuffer } from './pool.js';
import { randomKernels } from './cpu-random.js';
import { matmulKernel } from './matmul.js';
import { convKernel } from './conv.js';

export type Kernel<P extends Primitive> = (inputs: NDArray[], params: PrimParams[P]) => NDArray[];

function contiguous(data: TypedArray, shape: readonly number[], dtype: DType): NDArray {
  return new NDArray(makeView(data, shape.slice(), contiguousStrides(shape), 0), dtype);
}

const elementwise =
  <P extends ElementwisePrim>(prim: P): Kernel<P> =>
  (inputs, params) => {
    const outDtype = shapeRules[prim](inputs.map(avalOf), params)[0].dtype;
    return runFused(
      singleOpProgram(
        prim,
        params,
        inputs.map((x) => x.dtype),
        outDtype,
      ),
      inputs,
      inputs[0].shape,
    );
  };

/** A plain reduction of one float32 input, for the WebAssembly path. */
const REDUCE_SPECS: Record<'sum' | 'max' | 'min', WasmReduceSpec> = {
  sum: { prologue: { numInputs: 1, eqns: [], outputs: [], inputTypes: ['f32'], outputTypes: [] }, reduced: { input: 0 }, op: 'sum' },
  max: { prologue: { numInputs: 1, eqns: [], outputs: [], inputTypes: ['f32'], outputTypes: [] }, reduced: { input: 0 }, op: 'max' },
  min: { prologue: { numInputs: 1, eqns: [], outputs: [], inputTypes: ['f32'], outputTypes: [] }, reduced: { input: 0 }, op: 'min' },
};

const reduction =
  (op: 'sum' | 'max' | 'min') =>
  ([x]: NDArray[], { axes }: { axes: number[] }): NDArray[] => {
    if (x.dtype === 'float32' && x.size >= 256) {
      const r = runWasmReduce(REDUCE_SPECS[op], [x], x.shape, axes);
      if (r) return [r];
    }
    // One program object per equation (its params object) and dtype, so that runFused's layout
    // and kernel caches hit on every step of a compiled program.
    let byDtype = reductionPrograms.get(axes);
    if (byDtype === undefined) {
      byDtype = new Map();
      reductionPrograms.set(axes, byDtype);
    }
    const key = `${op}:${x.dtype}`;
    let prog = byDtype.get(key);
    if (prog === undefined) {
      prog = { numInputs: 1, ops: [], lines: [], outputs: ['v0'], outDtypes: [x.dtype], reduce: { op, axes } };
      byDtype.set(key, prog);
    }
    return runFused(prog, [x], x.shape);
  };
const reductionPrograms = new WeakMap<readonly number[], Map<string, FusedProgram>>();

/** Moves `axis` last (a view), for kernels that walk one axis at a time. */
function axisLast(x: NDArray, axis: number): NdView {
  const perm = x.shape.map((_, i) => i).filter((i) => i !== axis);
  perm.push(axis);
  return x.nd.transpose(...perm);
}

/** Calls fn(outerIndex, baseOffset) for each position of all but the last axis of a view. */
function forEachRow(v: NdView, fn: (row: number, base: number) => void): void {
  const starts = stridedOffsets(v.shape.slice(0, -1), v.stride.slice(0, -1), v.offset);
  for (let r = 0; r < starts.length; r++) fn(r, starts[r]);
}

/** Output shape of a kernel that produced rows along a moved-last axis, moved back. */
function restoreAxis(data: TypedArray, shape: readonly number[], axis: number, dtype: DType): NDArray {
  const moved = shape.filter((_, i) => i !== axis);
  moved.push(shape[axis]);
  const arr = contiguous(data, moved, dtype);
  const inv = shape.map((_, i) => (i < axis ? i : i === axis ? shape.length - 1 : i - 1));
  return new NDArray(arr.nd.transpose(...inv), dtype);
}

/** The eager kernels of the elementwise primitives, one per entry of the scalar-op table. */
const elementwiseKernels = Object.fromEntries(
  ELEMENTWISE_PRIMS.map((prim) => [prim, SCALAR_OPS[prim].identity ? ([x]: NDArray[]) => [x] : elementwise(prim)]),
) as { [P in ElementwisePrim]: Kernel<P> };

export const cpuKernels: { [P in Primitive]: Kernel<P> } = {
  ...elementwiseKernels,
  reduce_sum: reduction('sum'),
  reduce_max: reduction('max'),
  reduce_min: reduction('min'),
  argmax: ([x], { axis }) => {
    const v = axisLast(x, axis);
    const n = x.shape[axis];
    const s = v.stride[v.stride.length - 1];
    const outShape = x.shape.filter((_, i) => i !== axis);
    const out = new Int32Array(outShape.reduce((a, c) => a * c, 1));
    const data = x.data;
    forEachRow(v, (r, base) => {
      let best = data[base];
      let bi = 0;
      for (let k = 1; k < n; k++) {
        const val = data[base + k * s];
        if (val > best || (val !== val && best === best)) {
          best = val;
          bi = k;
        }
      }
      out[r] = bi;
    });
    return [contiguous(out, outShape, 'int32')];
  },
  reshape: ([x], { shape }) => {
    if (x.isContiguous()) return [reshapeView(x, shape)];
    // A strided view whose axes only split or merge along runs of equal steps stays a view.
    const strides = reshapeStrides(x.shape, x.strides, shape);
    return [strides === null ? reshapedCopy(x, shape) : new NDArray(makeView(x.data, shape.slice(), strides, x.offset), x.dtype)];
  },
  transpose: ([x], { perm }) => [new NDArray(x.nd.transpose(...perm), x.dtype)],
  broadcast_to: ([x], { shape }) => {
    const stride = x.ndim === 0 ? shape.map(() => 0) : x.shape.map((d, i) => (d === 1 && shape[i] !== 1 ? 0 : x.strides[i]));
    return [new NDArray(makeView(x.data, shape.slice(), stride, x.offset), x.dtype)];
  },
  slice: ([x], { starts, limits }) => [new NDArray(x.nd.hi(...limits).lo(...starts), x.dtype)],
  pad: ([x], { low, high }) => {
    const shape = x.shape.map((d, i) => d + low[i] + high[i]);
    // From the pool (in a compiled step, the arena: a scan's cotangent of its last step, padded
    // over time, is then read in place by the scan kernel instead of copied in).
    const out = contiguous(
      takeBuffer(
        x.dtype,
        shape.reduce((a, c) => a * c, 1),
      ).fill(0),
      shape,
      x.dtype,
    );
    assignStrided(out.nd.hi(...x.shape.map((d, i) => d + low[i])).lo(...low), x.nd);
    return [out];
  },
  concatenate: (inputs, { axis }) => {
    const shape = inputs[0].shape.slice();
    shape[axis] = inputs.reduce((a, x) => a + x.shape[axis], 0);
    const dtype = inputs[0].dtype;
    // Every element is written below.
    const out = contiguous(
      takeBuffer(
        dtype,
        shape.reduce((a, c) => a * c, 1),
      ),
      shape,
      dtype,
    );
    let at = 0;
    for (const x of inputs) {
      const lo = shape.map((_, i) => (i === axis ? at : 0));
      const hi = shape.map((d, i) => (i === axis ? at + x.shape[axis] : d));
      assignStrided(out.nd.hi(...hi).lo(...lo), x.nd);
      at += x.shape[axis];
    }
    return [out];
  },
  matmul: ([a, b]) => [matmulKernel(a, b)],
  conv: ([x, w], params) => [convKernel(x, w, params)],
  take_along_axis: ([x, idx], { axis }) => {
    const xv = axisLast(x, axis);
    const iv = axisLast(idx, axis);
    const n = x.shape[axis];
    const m = idx.shape[axis];
    const xs = xv.stride[xv.stride.length - 1];
    const is = iv.stride[iv.stride.length - 1];
    const out = allocate(x.dtype, idx.size);
    const rows: number[] = [];
    forEachRow(xv, (_r, base) => rows.push(base));
    const idata = idx.data;
    const xdata = x.data;
    forEachRow(iv, (r, base) => {
      for (let k = 0; k < m; k++) {
        let j = idata[base + k * is];
        if (j < 0) j += n;
        if (j < 0 || j >= n)
          throw new RangeError(`take_along_axis: index ${idata[base + k * is]} out of range for axis ${axis} of size ${n}`);
        out[r * m + k] = xdata[rows[r] + j * xs];
      }
    });
    return [restoreAxis(out, idx.shape, axis, x.dtype)];
  },
  scatter_add_along_axis: ([upd, idx], { axis, shape }) => {
    const n = shape[axis];
    const m = idx.shape[axis];
    const moved = shape.filter((_, i) => i !== axis);
    moved.push(n);
    const out = allocate(
      upd.dtype,
      shape.reduce((a, c) => a * c, 1),
    );
    const uv = axisLast(upd, axis);
    const iv = axisLast(idx, axis);
    const us = uv.stride[uv.stride.length - 1];
    const is = iv.stride[iv.stride.length - 1];
    const ubases: number[] = [];
    forEachRow(uv, (_r, base) => ubases.push(base));
    const idata = idx.data;
    const udata = upd.data;
    forEachRow(iv, (r, base) => {
      for (let k = 0; k < m; k++) {
        let j = idata[base + k * is];
        if (j < 0) j += n;
        if (j < 0 || j >= n)
          throw new RangeError(`scatter_add_along_axis: index ${idata[base + k * is]} out of range for axis ${axis} of size ${n}`);
        out[r * n + j] += udata[ubases[r] + k * us];
      }
    });
    return [restoreAxis(out, shape, axis, upd.dtype)];
  },
  argsort: ([x], { axis }) => {
    const v = axisLast(x, axis);
    const n = x.shape[axis];
    const s = v.stride[v.stride.length - 1];
    const out = new Int32Array(x.size);
    const data = x.data;
    const order = Array.from({ length: n }, (_, i) => i);
    forEachRow(v, (r, base) => {
      for (let i = 0; i < n; i++) order[i] = i;
      // Stable, NaN last (numpy's order).
      order.sort((i, j) => {
        const a = data[base + i * s];
        const c = data[base + j * s];
        if (a !== a) return c !== c ? i - j : 1;
        if (c !== c) return -1;
        return a < c ? -1 : a > c ? 1 : i - j;
      });
      for (let i = 0; i < n; i++) out[r * n + i] = order[i];
    });
    return [restoreAxis(out, x.shape, axis, 'int32')];
  },
  ...randomKernels,
  scan: (inputs, params) => runScan(inputs, params),
  // The eager interpreter drops its intermediates, so they must not come from the kernel arena.
  custom_vjp_call: (inputs, { fun, numFunConsts, numFwdConsts, numBwdConsts }) =>
    residentScope(
      false,
      () =>
        evalJaxpr(fun, [], [...inputs.slice(0, numFunConsts), ...inputs.slice(numFunConsts + numFwdConsts + numBwdConsts)]) as NDArray[],
    ),
  cond: (inputs, { whenTrue, whenFalse, numTrueConsts, numFalseConsts }) => {
    const operands = inputs.slice(1 + numTrueConsts + numFalseConsts);
    const taken = inputs[0].item() !== 0;
    const consts = taken ? inputs.slice(1, 1 + numTrueConsts) : inputs.slice(1 + numTrueConsts, 1 + numTrueConsts + numFalseConsts);
    return residentScope(false, () => compiledBody(taken ? whenTrue : whenFalse)([], [...consts, ...operands]));
  },
  while_loop: (inputs, { cond, body, numCondConsts, numBodyConsts }) => {
    const condConsts = inputs.slice(0, numCondConsts);
    const bodyConsts = inputs.slice(numCondConsts, numCondConsts + numBodyConsts);
    let carry = inputs.slice(numCondConsts + numBodyConsts);
    const test = compiledBody(cond);
    const step = compiledBody(body);
    return residentScope(false, () => {
      while (test([], [...condConsts, ...carry])[0].item() !== 0) carry = step([], [...bodyConsts, ...carry]);
      return carry;
    });
  },
};

/**
 * A reshape that a view cannot express (a broadcast or cropped input: the VJPs of pooling and of a
 * mean over time) copies into a pool buffer with one odometer pass; a fresh array of that size
 * (several MB per training step) cost more in page faults than the copy.
 */
function reshapedCopy(x: NDArray, shape: readonly number[]): NDArray {
  const data = takeBuffer(x.dtype, x.size);
  assignStrided(makeView(data, x.shape, contiguousStrides(x.shape), 0), x.nd);
  return new NDArray(makeView(data, shape, contiguousStrides(shape), 0), x.dtype);
}

/** The eager scan: runs the compiled body once per step over views of xs. */
function runScan(inputs: NDArray[], params: PrimParams['scan']): NDArray[] {
  // A body that is one elementwise group runs as one kernel with the time loop inside.
  const whole = runWasmScan(inputs, params);
  if (whole !== null) return whole;
  const { body, numConsts, numCarry, length, reverse } = params;
  let carry = inputs.slice(numConsts, numConsts + numCarry);
  const xs = inputs.slice(numConsts + numCarry);
  const step = compiledBody(body);
  const donated = new Array<boolean>(inputs.length).fill(false);
  const callerOwned = new Set(inputs.map((x) => x.data));
  const ysAvals = body.outvars.slice(numCarry).map((v) => v.aval);
  const ysSize = ysAvals.map((a) => a.shape.reduce((p, c) => p * c, 1));
  // Every step writes its slice of the stacked ys, so their buffers come from the pool: a fresh
  // array per scan paid its page faults on every training step (the spiking model's two scans).
  const ysData = ysAvals.map((a, j) => takeBuffer(a.dtype, length * ysSize[j]));
  // The body's arguments: consts, then this step's carry and x_t (one array, refilled per step).
  const args = inputs.slice();
  const numXs = xs.length;
  const xsAt = numConsts + numCarry;
  // x_t: each xs view with its leading (scan) axis dropped, moved by its stride per step.
  const xtViews = xs.map((x) => {
    const v = x.nd;
    return { data: v.data, shape: v.shape.slice(1), stride: v.stride.slice(1), offset: v.offset, step: v.stride[0], dtype: x.dtype };
  });
  for (let i = 0; i < length; i++) {
    const t = reverse ? length - 1 - i : i;
    for (let j = 0; j < numXs; j++) {
      const v = xtViews[j];
      args[xsAt + j] = new NDArray(makeView(v.data, v.shape, v.stride, v.offset + t * v.step), v.dtype);
    }
    // The previous step's carry is donated (the body may write this step's values into its
    // memory), except a buffer the caller passed in (a carry the body returns unchanged).
    for (let j = 0; j < numCarry; j++) {
      args[numConsts + j] = carry[j];
      donated[numConsts + j] = i > 0 && !callerOwned.has(carry[j].data);
    }
    const outs = step([], args, donated);
    for (let j = 0; j < ysSize.length; j++) {
      const y = outs[numCarry + j];
      const flat = y.isContiguous() ? y.data.subarray(y.offset, y.offset + ysSize[j]) : y.toTyped();
      ysData[j].set(flat as ArrayLike<number>, t * ysSize[j]);
    }
    // This step's y buffers are copied: recycle them (not one a carry or an input still holds; an
    // input carry that was donated is free once read, also when the body returned it as y).
    for (let j = numCarry; j < outs.length; j++) {
      const data = outs[j].data;
      if (!recyclable(data) || heldByScan(data, outs, numCarry, j, args, donated, numConsts)) continue;
      giveBuffer(data, outs[j].dtype);
    }
    carry = outs.slice(0, numCarry);
  }
  const ys = ysAvals.map((a, j) => contiguous(ysData[j], [length, ...a.shape], a.dtype));
  return [...carry, ...ys];
}

/**
 * Whether y buffer `data` (output j of a scan step) must outlive the step: a new carry, a const,
 * an x_t or an undonated input carry holds it, or an earlier y output (already given back) was it.
 */
function heldByScan(
  data: TypedArray,
  outs: readonly NDArray[],
  numCarry: number,
  j: number,
  args: readonly NDArray[],
  donated: readonly boolean[],
  numConsts: number,
): boolean {
  for (let c = 0; c < numCarry; c++) if (outs[c].data === data) return true;
  for (let c = numCarry; c < j; c++) if (outs[c].data === data) return true;
  for (let a = 0; a < args.length; a++) {
    if (args[a].data !== data) continue;
    // An input carry that was donated is free once read.
    if (a >= numConsts && a < numConsts + numCarry && donated[a]) continue;
    return true;
  }
  return false;
}

const bodyCache = new WeakMap<object, (consts: NDArray[], args: NDArray[], donated?: readonly boolean[]) => NDArray[]>();
function compiledBody(body: PrimParams['scan']['body']): (consts: NDArray[], args: NDArray[], donated?: readonly boolean[]) => NDArray[] {
  let fn = bodyCache.get(body);
  if (fn === undefined) {
    fn = compileJaxpr(body, cpuKernels);
    bodyCache.set(body, fn);
  }
  return fn;
}

export const cpuBackend: Backend = {
  name: 'cpu',
  run: (prim, inputs, params) => cpuKernels[prim](inputs, params),
  compile: (jaxpr) => compileJaxpr(jaxpr, cpuKernels),
  // The memory model (kernel arena, buffer pool) stays here: the frontend only sees these hooks.
  inputBuffer: (dtype, size) => residentScope(true, () => takeBuffer(dtype, size)),
  toHost: detachResident,
  // dispose(): buffers this pool handed out go back to it (arena buffers included); the caller's
  // own typed arrays, device arrays and anything else are not this backend's to reuse.
  release: (arrays) => {
    for (const x of arrays) if (x.device === null && recyclable(x.data)) giveBuffer(x.data, x.dtype);
  },
};

registerBackend(cpuBackend, true);
export { ELEMENTWISE };
