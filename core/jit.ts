/** jit: trace once per argument structure and avals, compile the jaxpr, cache, run compiled. */
import { debugEnabled } from './debug.js';
import { printJaxpr, type ClosedJaxpr } from './ir.js';
import { NDArray } from './ndarray.js';
import { SHORT_NAME } from './dtype.js';
import { Tensor } from './tensor.js';
import { avalOf, getBackend, traceToJaxpr, Tracer } from './trace.js';
import { treeDefString, treeFlatten, treeUnflatten, type TreeDef } from './tree.js';

interface Compiled {
  closed: ClosedJaxpr;
  outDef: TreeDef;
  run: (consts: NDArray[], args: NDArray[]) => NDArray[];
}

export interface Jitted<A extends unknown[], R> {
  (...args: A): R;
  /** The jaxpr traced for these arguments, printed. */
  lower(...args: A): string;
  /** How many distinct (structure, shapes, dtypes) signatures were traced. */
  readonly cacheSize: number;
}

function signature(def: TreeDef, leaves: Tensor[]): string {
  return `${treeDefString(def)}|${leaves.map((l) => `${SHORT_NAME[l.dtype]}[${l.shape.join(',')}]`).join(';')}`;
}

/**
 * Compiles `f` for the active backend. Arguments are pytrees of arrays (plus static JS values,
 * which key the cache); called inside another transformation, f is simply inlined.
 *
 * @example
 * const step = jit((w, x) => tanh(matmul(x, w)));
 * step(w, x); // traced and compiled on the first call, cached afterwards
 */
export function jit<A extends unknown[], R>(f: (...args: A) => R): Jitted<A, R> {
  const call = f as unknown as (...a: unknown[]) => unknown;
  const cache = new Map<string, Compiled>();
  const prepare = (args: unknown[]): { entry: Compiled; leaves: Tensor[] } => {
    const [leaves, def] = treeFlatten(args);
    const key = signature(def, leaves);
    let entry = cache.get(key);
    if (entry === undefined) {
      let outDef: TreeDef | null = null;
      const closed = traceToJaxpr((xs) => {
        const [outs, d] = treeFlatten(call(...(treeUnflatten(def, xs) as unknown[])));
        outDef = d;
        return outs;
      }, leaves.map(avalOf));
      if (debugEnabled('jaxpr')) console.error(`[spiketrace jit ${f.name || 'anonymous'}]\n${printJaxpr(closed.jaxpr)}`);
      entry = { closed, outDef: outDef!, run: getBackend().compile(closed.jaxpr) };
      cache.set(key, entry);
    }
    return { entry, leaves };
  };
  const jitted = ((...args: unknown[]) => {
    const [leaves] = treeFlatten(args);
    if (leaves.some((l) => l instanceof Tracer)) return call(...args);
    const { entry } = prepare(args);
    if (entry.closed.consts.some((c) => c instanceof Tracer)) {
      // f closed over a value of an enclosing transformation: nothing reusable to cache.
      cache.clear();
      return call(...args);
    }
    const outs = entry.run(entry.closed.consts as NDArray[], leaves as NDArray[]);
    return treeUnflatten(entry.outDef, outs);
  }) as unknown as Jitted<A, R>;
  Object.defineProperty(jitted, 'cacheSize', { get: () => cache.size });
  jitted.lower = ((...args: unknown[]) => printJaxpr(prepare(args).entry.closed.jaxpr)) as unknown as Jitted<A, R>['lower'];
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
