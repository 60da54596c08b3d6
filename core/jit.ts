/** jit: trace once per argument structure and avals, compile the jaxpr, cache, run compiled. */
import { debugEnabled } from './debug.js';
import { printJaxpr, type ClosedJaxpr } from './ir.js';
import { backendCall, dropHold, NDArray, sharesBuffer } from './ndarray.js';
import { SHORT_NAME } from './dtype.js';
import { Tensor } from './tensor.js';
import { avalOf, bind1, broadcastAxes, compactView, traceToJaxpr, Tracer } from './trace.js';
import { getBackend, registeredBackends, withBackend, type CompiledProgram } from './backends.js';
import { shapesEqual } from './shape.js';
import { sameTreeDef, treeDefString, treeFlatten, treeUnflatten, type TreeDef } from './tree.js';

interface Compiled {
  closed: ClosedJaxpr;
  outDef: TreeDef;
  run: CompiledProgram;
  /** Leaves of each positional argument (to expand donateArgnums to leaves). */
  argLeafCounts: number[];
}

/** What of a leaf keys the cache: dtype, shape, and which axes are broadcast (stride 0). */
interface LeafKind {
  dtype: string;
  shape: readonly number[];
  broadcast: readonly boolean[];
  concrete: boolean;
}
function leafKind(l: Tensor): LeafKind {
  const nd = l instanceof NDArray;
  return {
    dtype: l.dtype,
    shape: l.shape.slice(),
    broadcast: l.shape.map((d, i) => nd && d > 1 && (l as NDArray).strides[i] === 0),
    concrete: nd,
  };
}
function sameLeaves(leaves: readonly Tensor[], kinds: readonly LeafKind[]): boolean {
  if (leaves.length !== kinds.length) return false;
  for (let i = 0; i < leaves.length; i++) {
    const l = leaves[i];
    const k = kinds[i];
    if (!(l instanceof NDArray) || !k.concrete || l.dtype !== k.dtype) return false;
    const shape = l.shape;
    if (shape.length !== k.shape.length) return false;
    const strides = l.strides;
    for (let d = 0; d < shape.length; d++)
      if (shape[d] !== k.shape[d] || (shape[d] > 1 && strides[d] === 0) !== k.broadcast[d]) return false;
  }
  return true;
}
function countLeaves(def: TreeDef): number {
  if (def.kind === 'leaf') return 1;
  if (def.kind === 'static') return 0;
  let n = 0;
  for (const c of def.children) n += countLeaves(c);
  return n;
}

export interface JitOptions {
  /**
   * Arguments (by position) whose buffers the compiled program may reuse once it has read them
   * for the last time, as JAX's donate_argnums: after the call the donated arrays must not be
   * used again (their contents are unspecified). A training loop donates the parameters and
   * optimizer state it replaces, so each step writes its outputs into the previous step's memory.
   */
  readonly donateArgnums?: readonly number[];
  /**
   * The backend this function compiles for and runs on ('cpu', 'gpujs', ...), whatever
   * setBackend chose globally; by default the active backend at each call.
   */
  readonly backend?: string;
}

export interface DonatingOptions {
  /**
   * Let the results stay in memory the backend owns (the CPU backend's kernel arena), where the
   * next call reads and writes them without copies (a training loop's parameters and optimizer
   * state). The caller must then pass them back donated on the next call, or call `toHost` on
   * anything it keeps: such an array's memory is recycled once it is donated. Backends without
   * memory of their own ignore it.
   */
  readonly keepInBackend?: boolean;
}

export interface Jitted<A extends unknown[], R> {
  (...args: A): R;
  /**
   * The same compiled function (sharing its cache) donating the given arguments on this call;
   * see JitOptions.donateArgnums.
   */
  donating(argnums: readonly number[], options?: DonatingOptions): (...args: A) => R;
  /** The jaxpr traced for these arguments, printed. */
  lower(...args: A): string;
  /** How many distinct (structure, shapes, dtypes) signatures were traced. */
  readonly cacheSize: number;
}

/** Cache key: structure, avals, and which axes of each input are broadcast (stride 0). */
function signature(def: TreeDef, leaves: Tensor[]): string {
  const leafKey = (l: Tensor): string => {
    const b = l instanceof NDArray ? broadcastAxes(l) : [];
    return `${SHORT_NAME[l.dtype]}[${l.shape.join(',')}]${b.length ? `b${b.join(',')}` : ''}`;
  };
  // The backend is part of the key: a program compiled for one backend never runs on another.
  return `${getBackend().name}|${treeDefString(def)}|${leaves.map(leafKey).join(';')}`;
}

/**
 * Deletes (as JAX does) each donated argument, except one that is also passed undonated or comes
 * back as an output object itself: a later read of a deleted array raises instead of showing
 * whatever the recycled memory holds by then.
 */
function markDonated(leaves: readonly NDArray[], donated: readonly boolean[], outs: readonly NDArray[], where: string): void {
  let kept: Set<NDArray> | null = null;
  for (let i = 0; i < leaves.length; i++) {
    if (!donated[i]) continue;
    kept ??= new Set([...outs, ...leaves.filter((_, j) => !donated[j])]);
    const x = leaves[i];
    if (kept.has(x) || x.isDeleted) continue;
    // A deleted array holds its buffer no longer (core/ndarray.ts `holders`); the program that
    // took the donation manages that memory, so nothing is given back here.
    dropHold(x);
    x.markDonated(where);
  }
}

/**
 * Compiles `f` for the active backend. Arguments are pytrees of arrays (plus static JS values,
 * which key the cache); called inside another transformation, f is simply inlined.
 *
 * @example
 * const step = jit((w, x) => tanh(matmul(x, w)));
 * step(w, x); // traced and compiled on the first call, cached afterwards
 */
export function jit<A extends unknown[], R>(f: (...args: A) => R, options: JitOptions = {}): Jitted<A, R> {
  const call = f as unknown as (...a: unknown[]) => unknown;
  const cache = new Map<string, Compiled>();
  // The entry of the previous call, checked first without building the cache key (a training
  // loop calls with the same structure and shapes every step).
  let last: { def: TreeDef; backend: string; leaves: LeafKind[]; entry: Compiled } | null = null;
  const prepareFlat = (leaves: Tensor[], def: TreeDef): Compiled => {
    const backend = getBackend().name;
    if (last !== null && last.backend === backend && sameLeaves(leaves, last.leaves) && sameTreeDef(def, last.def)) return last.entry;
    const key = signature(def, leaves);
    let entry = cache.get(key);
    if (entry === undefined) {
      let outDef: TreeDef | null = null;
      // Inputs with stride-0 axes are traced as broadcast_to of their compact data: the compiled
      // program then computes once along those axes wherever the math allows (broadcast sinking).
      const compact = leaves.map((l) => (l instanceof NDArray ? compactView(l) : l));
      const closed = traceToJaxpr((xs) => {
        const full = xs.map((x, i) =>
          x.shape === leaves[i].shape || shapesEqual(x.shape, leaves[i].shape)
            ? x
            : bind1('broadcast_to', [x], { shape: leaves[i].shape.slice() }),
        );
        const [outs, d] = treeFlatten(call(...(treeUnflatten(def, full) as unknown[])));
        outDef = d;
        return outs;
      }, compact.map(avalOf));
      if (debugEnabled('jaxpr')) console.error(`[spiketrace jit ${f.name || 'anonymous'}]\n${printJaxpr(closed.jaxpr)}`);
      entry = {
        closed,
        outDef: outDef!,
        run: getBackend().compile(closed.jaxpr),
        argLeafCounts: def.kind === 'array' ? def.children.map(countLeaves) : [],
      };
      cache.set(key, entry);
    }
    if (!leaves.some((l) => l instanceof Tracer)) last = { def, backend, leaves: leaves.map(leafKind), entry };
    return entry;
  };
  const prepare = (args: unknown[]): { entry: Compiled; leaves: Tensor[] } => {
    const [leaves, def] = treeFlatten(args);
    return { entry: prepareFlat(leaves, def), leaves };
  };
  // Built only for messages (a string per call would cost a training step's loop).
  const name = (): string => `jit(${f.name || 'anonymous'})`;
  const invoke = (args: unknown[], donate: readonly number[] | undefined, keepInBackend: boolean): unknown => {
    const [leaves, def] = treeFlatten(args);
    for (const l of leaves) if (l instanceof Tracer) return call(...args);
    // Deleted arguments are refused before the cache lookup reads their strides.
    for (let i = 0; i < leaves.length; i++) {
      const leaf = leaves[i] as NDArray;
      if (leaf.isDeleted) leaf.checkNotDeleted(`${name()} argument ${i}`);
    }
    const entry = prepareFlat(leaves, def);
    if (entry.closed.consts.some((c) => c instanceof Tracer)) {
      // f closed over a value of an enclosing transformation: nothing reusable to cache.
      cache.clear();
      last = null;
      return call(...args);
    }
    let donated: boolean[] | undefined;
    // What the program may recycle: the donated leaves whose buffer no other array the caller may
    // hold shares (a view of a donated array keeps its memory, as with dispose).
    let recycled: boolean[] | undefined;
    if (donate !== undefined && donate.length > 0) {
      donated = [];
      entry.argLeafCounts.forEach((n, i) => {
        for (let j = 0; j < n; j++) donated!.push(donate.includes(i));
      });
      recycled = donated.map((d, i) => d && !sharesBuffer(leaves[i] as NDArray));
    }
    const consts = entry.closed.consts as NDArray[];
    for (const c of consts)
      if (c.isDeleted) c.checkNotDeleted(`${name()} (an array it closed over, now a constant of its compiled program)`);
    const inputs = consts.length === 0 ? (leaves as NDArray[]) : [...(leaves as NDArray[]), ...consts];
    // The compact views are the call's own (made inside backendCall, so not counted as the
    // caller's holds); its results are.
    const outs = backendCall(inputs, () => {
      const compact = new Array<NDArray>(leaves.length);
      for (let i = 0; i < leaves.length; i++) compact[i] = compactView(leaves[i] as NDArray);
      return entry.run(consts, compact, recycled, keepInBackend);
    });
    if (donated !== undefined) markDonated(leaves as NDArray[], donated, outs, name());
    return treeUnflatten(entry.outDef, outs);
  };
  for (const i of options.donateArgnums ?? []) {
    if (!Number.isInteger(i) || i < 0) throw new RangeError(`jit: donateArgnums must hold argument positions (integers >= 0), got ${i}`);
  }
  const pinned = options.backend;
  const run = (args: unknown[], donate: readonly number[] | undefined, keep = false): unknown =>
    pinned === undefined ? invoke(args, donate, keep) : withBackend(pinned, () => invoke(args, donate, keep));
  const jitted = ((...args: unknown[]) => run(args, options.donateArgnums)) as unknown as Jitted<A, R>;
  jitted.donating = (argnums, opts) =>
    ((...args: unknown[]) => run(args, argnums, opts?.keepInBackend === true)) as unknown as (...args: A) => R;
  Object.defineProperty(jitted, 'cacheSize', { get: () => cache.size });
  jitted.lower = ((...args: unknown[]) =>
    printJaxpr((pinned === undefined ? prepare(args) : withBackend(pinned, () => prepare(args))).entry.closed.jaxpr)) as unknown as Jitted<
    A,
    R
  >['lower'];
  return jitted;
}

/**
 * Traces `f` on the given example arguments and returns its jaxpr (for debugging and tests).
 *
 * @example
 * console.log(makeJaxpr((x) => exp(x))(array([1, 2])).toString());
 */
export function makeJaxpr<A extends unknown[]>(f: (...args: A) => unknown): (...args: A) => ClosedJaxpr & { toString(): string } {
  const call = f as unknown as (...a: unknown[]) => unknown;
  return (...args: unknown[]) => {
    const [leaves, def] = treeFlatten(args);
    const closed = traceToJaxpr((xs) => treeFlatten(call(...(treeUnflatten(def, xs) as unknown[])))[0], leaves.map(avalOf));
    return { ...closed, toString: () => printJaxpr(closed.jaxpr) };
  };
}

/**
 * `tree` with every array that lives in memory a backend owns replaced by an ordinary host copy
 * (other leaves unchanged): for results of `jitted.donating(argnums, { keepInBackend: true })`
 * that the caller keeps rather than donates back. Views keep their shape and strides, and views
 * of one buffer share one copy.
 *
 * @example
 * const step = trainStep.donating([0, 1], { keepInBackend: true });
 * for (const [x, y] of batches) [params, opt] = step(params, opt, x, y);
 * const final = toHost(params); // safe to keep, save or hand to other code
 *
 * With `{ recycle: true }` the backend memory of the arrays copied is reused at once, and those
 * originals are deleted as donated arrays are: any later use of one raises.
 */
export function toHost<T>(tree: T, options: { readonly recycle?: boolean } = {}): T {
  const [leaves, def] = treeFlatten(tree);
  const arrays = leaves.map((l) => (l instanceof NDArray ? l : null));
  let detached = arrays.filter((a): a is NDArray => a !== null);
  const originals = detached;
  for (const b of registeredBackends()) if (b.toHost) detached = b.toHost(detached, options.recycle === true);
  // With recycle the originals' memory is reused at once: delete them, as a donation does, so a
  // later read raises instead of showing whatever the next program writes there.
  if (options.recycle === true)
    originals.forEach((x, i) => {
      if (detached[i] === x || x.isDeleted) return;
      dropHold(x);
      x.markDonated('toHost(tree, { recycle: true })');
    });
  let k = 0;
  return treeUnflatten(
    def,
    leaves.map((l, i) => (arrays[i] === null ? l : detached[k++])),
  ) as T;
}
