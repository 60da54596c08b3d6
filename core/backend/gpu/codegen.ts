/**
 * Source generation for the gpu.js backend: every kernel is a JS function, given to gpu.js as
 * source text and transpiled by it to GLSL. Shapes, strides and offsets are baked into the source
 * as constants (one kernel per program and shape). Each array lives on the device as a flat 1-D
 * float32 texture; a value is a strided view of one (shape, strides, offset), like NDArray, so
 * broadcast_to / transpose / slice / reshape are metadata only.
 *
 * Index arithmetic runs in float32 (GLSL ES 1.0 has no reliable integer ops across devices): the
 * quotient is rounded and corrected once, so it is exact for indices below 2^24.
 */
import type { DType } from '../../dtype.js';
import type { ReduceOp } from '../fusion.js';

/** The dtypes the GPU kernels handle: float32, and bool held as 0.0 / 1.0. */
export function gpuDtype(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'bool';
}

/** Largest flat index the float32 index arithmetic handles exactly. */
export const MAX_GPU_INDEX = 1 << 24;

/** A float literal GLSL accepts (always with a decimal point); infinities as 1/0; null for NaN. */
export function lit(v: number): string | null {
  if (Number.isNaN(v)) return null;
  if (!Number.isFinite(v)) return v > 0 ? '(1.0 / 0.0)' : '(-1.0 / 0.0)';
  const s = String(Math.fround(v));
  const t = /[.e]/.test(s) ? s : `${s}.0`;
  return v < 0 || Object.is(v, -0) ? `(${t.startsWith('-') ? t : '-' + t})` : t;
}

/** How one input of a kernel is read: a strided view of a flat texture. */
export interface InputView {
  readonly strides: readonly number[];
  readonly offset: number;
  /**
   * A size-1 host value passed as a float argument (a uniform) instead of a texture: scalars
   * computed at run time (an optimizer's bias corrections, a dt) never change the kernel source.
   */
  readonly scalar?: boolean;
  /**
   * A run-time offset added to `offset`: the kernel takes it as a scalar argument (`D<i>`) right
   * after the input's texture, so one kernel serves every step of a scan.
   */
  readonly dynamic?: boolean;
}

/** The kernel parameters of an input: its texture (or scalar), then its run-time offset if any. */
function params(name: string, v: InputView): string[] {
  return v.dynamic && !v.scalar ? [name, `D${name}`] : [name];
}
/** `offsetExpr` plus the input's run-time offset, if it has one. */
function baseExpr(name: string, v: InputView, names: readonly string[], strides: readonly number[]): string {
  const e = offsetExpr(v.offset, names, strides);
  return v.dynamic ? `${e} + D${name}` : e;
}

/**
 * Merges adjacent axes every operand walks contiguously and drops size-1 axes (as the CPU fusion
 * does), so the common cases need one or two index digits.
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  shape.forEach((d, ax) => {
    if (d === 1) return;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, i) => outStrides[i][last] === s[ax] * d)) {
      outShape[last] *= d;
      strides.forEach((s, i) => (outStrides[i][last] = s[ax]));
    } else {
      outShape.push(d);
      strides.forEach((s, i) => outStrides[i].push(s[ax]));
    }
  });
  return { shape: outShape, strides: outStrides };
}

/**
 * Statements that split the float index `src` into digits `${p}0..` over `shape` (row-major).
 * Exact below 2^24: the rounded quotient is corrected by one step.
 */
function digits(src: string, shape: readonly number[], p: string, out: string[]): string[] {
  const names = shape.map((_, d) => `${p}${d}`);
  if (shape.length === 0) return names;
  let rem = src;
  for (let d = 0; d < shape.length - 1; d++) {
    const span = shape.slice(d + 1).reduce((a, c) => a * c, 1);
    const q = names[d];
    const r = `${p}r${d}`;
    const s = lit(span)!;
    out.push(`let ${q} = Math.floor((${rem} + 0.5) / ${s});`);
    out.push(`let ${r} = ${rem} - ${q} * ${s};`);
    out.push(`if (${r} < 0.0) { ${q} = ${q} - 1.0; ${r} = ${r} + ${s}; }`);
    out.push(`if (${r} >= ${s}) { ${q} = ${q} + 1.0; ${r} = ${r} - ${s}; }`);
    rem = r;
  }
  out.push(`let ${names[shape.length - 1]} = ${rem};`);
  return names;
}

/** `offset + sum digit * stride` as a float expression (terms with stride 0 dropped). */
function offsetExpr(offset: number, names: readonly string[], strides: readonly number[]): string {
  const terms = [lit(offset)!];
  names.forEach((n, d) => {
    if (strides[d] !== 0) terms.push(strides[d] === 1 ? n : `${n} * ${lit(strides[d])}`);
  });
  return terms.join(' + ');
}

/** A fused elementwise program over inputs v0..: lines `t_k = expr`, and the temp to return. */
export interface GpuProgram {
  readonly numInputs: number;
  /** `[name, expression]` pairs in order. */
  readonly lines: readonly (readonly [string, string])[];
  readonly output: string;
  readonly reduce?: { readonly op: ReduceOp; readonly axes: readonly number[] };
}

/**
 * Kernel source for a fused program over inputs viewed with `views` on the index space `shape`;
 * with `reduce`, the output runs over the kept axes and each thread loops over the reduced ones.
 * `texOf[i]` is the texture parameter input i reads (inputs that share a texture share one
 * parameter, hence one texture unit); default: one each. Parameters: the textures T0.., then, in
 * input order, each scalar input's value (A<i>) and each run-time offset (D<i>).
 */
export function fusedKernelSource(
  prog: GpuProgram,
  shape: readonly number[],
  views: readonly InputView[],
  texOf?: readonly number[],
): string {
  const n = prog.numInputs;
  let slots = 0;
  const tex = texOf ?? views.map((v) => (v.scalar ? -1 : slots++));
  const numTex = Math.max(-1, ...tex.filter((_, i) => !views[i].scalar)) + 1;
  const args = [
    ...Array.from({ length: numTex }, (_, j) => `T${j}`),
    ...Array.from({ length: n }, (_, i) => (views[i].scalar ? [`A${i}`] : views[i].dynamic ? [`D${i}`] : [])).flat(),
  ];
  const read = (i: number, o: string): string => (views[i].scalar ? `A${i}` : `T${tex[i]}[${o}]`);
  const dynBase = (i: number, e: string): string => (views[i].dynamic && !views[i].scalar ? `${e} + D${i}` : e);
  const body: string[] = ['let x = this.thread.x + 0.0;'];
  const compute = (offsets: string[]): string[] => [
    ...offsets.map((o, i) => `let v${i} = ${read(i, o)};`),
    ...prog.lines.map(([name, e]) => `let ${name} = ${e};`),
  ];
  const axes = prog.reduce?.axes ?? [];
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const outer = coalesce(
    kept.map((i) => shape[i]),
    views.map((v) => kept.map((i) => v.strides[i])),
  );
  const od = digits('x', outer.shape, 'o', body);
  const bases = views.map((v, i) => dynBase(i, offsetExpr(v.offset, od, outer.strides[i])));
  if (!prog.reduce) {
    body.push(...compute(bases));
    body.push(`return ${prog.output};`);
  } else {
    bases.forEach((e, i) => body.push(`let b${i} = ${e};`));
    const inner = coalesce(
      axes.map((i) => shape[i]),
      views.map((v) => axes.map((i) => v.strides[i])),
    );
    const count = inner.shape.reduce((a, c) => a * c, 1);
    const op = prog.reduce.op;
    const step = (j: string): string[] => {
      const lines: string[] = [];
      const id = digits(j, inner.shape, 'r', lines);
      lines.push(...compute(views.map((_, i) => offsetExpr(0, id, inner.strides[i]).replace(/^0\.0/, `b${i}`))));
      return lines;
    };
    const acc = (t: string): string =>
      op === 'sum'
        ? `acc = acc + ${t};`
        : op === 'max'
          ? `acc = (${t} > acc || ${t} !== ${t}) ? ${t} : acc;`
          : `acc = (${t} < acc || ${t} !== ${t}) ? ${t} : acc;`;
    // max/min start from the first element (no infinite literal needed); sum from zero.
    if (op === 'sum') body.push('let acc = 0.0;');
    else body.push('let acc = 0.0;', '{', 'let jf = 0.0;', ...step('jf'), `acc = ${prog.output};`, '}');
    body.push(`for (let j = ${op === 'sum' ? 0 : 1}; j < ${count}; j++) {`, 'let jf = j + 0.0;', ...step('jf'), acc(prog.output), '}');
    body.push('return acc;');
  }
  return `function fused(${args.join(', ')}) {\n  ${body.join('\n  ')}\n}`;
}

/**
 * Kernel source for C[...b, m, n] = A[...b, m, k] @ B[...b, k, n] over strided views; output
 * flat and contiguous. The k loop is unrolled by 4 (the tail handled separately).
 */
export function matmulKernelSource(batch: readonly number[], m: number, k: number, n: number, a: InputView, bv: InputView): string {
  const body: string[] = ['let x = this.thread.x + 0.0;'];
  const r = batch.length;
  const outShape = [...batch, m, n];
  const d = digits('x', outShape, 'o', body);
  const bd = d.slice(0, r);
  const i = d[r];
  const j = d[r + 1];
  const aBase = baseExpr('A', a, [...bd, i], [...a.strides.slice(0, r), a.strides[r]]);
  const bBase = baseExpr('B', bv, [...bd, j], [...bv.strides.slice(0, r), bv.strides[r + 1]]);
  const sak = lit(a.strides[r + 1])!;
  const sbk = lit(bv.strides[r])!;
  body.push(`let ao = ${aBase};`, `let bo = ${bBase};`, 'let acc = 0.0;');
  const k4 = Math.floor(k / 4);
  if (k4 > 0) {
    body.push(`for (let q = 0; q < ${k4}; q++) {`);
    body.push('let kf = (q + 0.0) * 4.0;');
    body.push(`let pa = ao + kf * ${sak};`, `let pb = bo + kf * ${sbk};`);
    body.push(
      `acc = acc + A[pa] * B[pb] + A[pa + ${sak}] * B[pb + ${sbk}] + A[pa + 2.0 * ${sak}] * B[pb + 2.0 * ${sbk}] + A[pa + 3.0 * ${sak}] * B[pb + 3.0 * ${sbk}];`,
    );
    body.push('}');
  }
  for (let t = k4 * 4; t < k; t++) body.push(`acc = acc + A[ao + ${lit(t)} * ${sak}] * B[bo + ${lit(t)} * ${sbk}];`);
  body.push('return acc;');
  return `function matmul(${[...params('A', a), ...params('B', bv)].join(', ')}) {\n  ${body.join('\n  ')}\n}`;
}

/** Most inputs one stacking kernel reads (texture units are few: WebGL 1 guarantees 8). */
export const STACK_FANIN = 8;

/**
 * Kernel source that concatenates its inputs, each read through its own view over its own shape,
 * into one flat contiguous output (input k fills the next prod(shapes[k]) elements): how a scan
 * assembles the per-step outputs it kept on the device. A scalar input fills its rows with its value.
 */
export function stackKernelSource(items: readonly { readonly shape: readonly number[]; readonly view: InputView }[]): string {
  const body: string[] = ['let x = this.thread.x + 0.0;', 'let r = 0.0;'];
  let start = 0;
  items.forEach(({ shape, view }, k) => {
    const size = shape.reduce((a, c) => a * c, 1);
    const end = start + size;
    const cond =
      items.length === 1
        ? 'x > -1.0'
        : k === 0
          ? `x < ${lit(end - 0.5)}`
          : k === items.length - 1
            ? `x > ${lit(start - 0.5)}`
            : `x > ${lit(start - 0.5)} && x < ${lit(end - 0.5)}`;
    body.push(`if (${cond}) {`);
    if (view.scalar) body.push(`r = A${k};`);
    else {
      const c = coalesce(shape, [view.strides]);
      const lines: string[] = [`let j${k} = x - ${lit(start)};`];
      const d = digits(`j${k}`, c.shape, `s${k}_`, lines);
      lines.push(`r = A${k}[${baseExpr(`A${k}`, view, d, c.strides[0])}];`);
      body.push(...lines);
    }
    body.push('}');
    start = end;
  });
  body.push('return r;');
  const args = items.map(({ view }, k) => params(`A${k}`, view)).flat();
  return `function stack(${args.join(', ')}) {\n  ${body.join('\n  ')}\n}`;
}

/** The upload kernel: copies a host Float32Array into a texture. */
export const UPLOAD_SOURCE = 'function upload(a) {\n  return a[this.thread.x];\n}';

/**
 * Kernel source for the `conv` primitive (layout in core/primitives.ts) over strided views: one
 * thread per output element loops over the window taps and the group's input channels; taps that
 * fall on padding or between dilated input elements are skipped.
 */
export function convKernelSource(
  p: {
    readonly strides: readonly number[];
    readonly padLow: readonly number[];
    readonly lhsDilation: readonly number[];
    readonly rhsDilation: readonly number[];
    readonly featureGroupCount: number;
  },
  xShape: readonly number[],
  wShape: readonly number[],
  outShape: readonly number[],
  xv: InputView,
  wv: InputView,
): string {
  const r = p.strides.length;
  const groupIn = wShape[r];
  const groupOut = wShape[r + 1] / p.featureGroupCount;
  const body: string[] = ['let x = this.thread.x + 0.0;'];
  const d = digits('x', outShape, 'o', body);
  const co = d[r + 1];
  body.push(`let grp = Math.floor((${co} + 0.5) / ${lit(groupOut)});`);
  body.push(`let xb = ${baseExpr('X', xv, [d[0]], [xv.strides[0]])} + grp * ${lit(groupIn * xv.strides[r + 1])};`);
  body.push(`let wb = ${baseExpr('W', wv, [co], [wv.strides[r + 1]])};`, 'let acc = 0.0;');
  const close: string[] = [];
  for (let a = 0; a < r; a++) {
    body.push(`for (let k${a} = 0; k${a} < ${wShape[a]}; k${a}++) {`);
    body.push(`let kf${a} = k${a} + 0.0;`);
    body.push(`let at${a} = ${d[a + 1]} * ${lit(p.strides[a])} + kf${a} * ${lit(p.rhsDilation[a])} - ${lit(p.padLow[a])};`);
    const ld = p.lhsDilation[a];
    body.push(ld === 1 ? `let i${a} = at${a};` : `let i${a} = Math.floor((at${a} + 0.5) / ${lit(ld)});`);
    const holes = ld === 1 ? '' : ` && Math.abs(at${a} - i${a} * ${lit(ld)}) < 0.5`;
    body.push(`if (at${a} > -0.5 && i${a} < ${lit(xShape[a + 1] - 0.5)}${holes}) {`);
    close.push('}', '}');
  }
  const xOff = Array.from({ length: r }, (_, a) => `i${a} * ${lit(xv.strides[a + 1])}`).join(' + ');
  const wOff = Array.from({ length: r }, (_, a) => `kf${a} * ${lit(wv.strides[a])}`).join(' + ');
  body.push(`let xo = xb + ${xOff};`, `let wo = wb + ${wOff};`);
  body.push(`for (let c = 0; c < ${groupIn}; c++) {`, 'let cf = c + 0.0;');
  body.push(`acc = acc + X[xo + cf * ${lit(xv.strides[r + 1])}] * W[wo + cf * ${lit(wv.strides[r])}];`, '}');
  body.push(...close, 'return acc;');
  return `function conv(${[...params('X', xv), ...params('W', wv)].join(', ')}) {\n  ${body.join('\n  ')}\n}`;
}
