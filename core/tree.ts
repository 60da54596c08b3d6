/**
 * Pytrees: nested plain objects and JS arrays whose leaves are Tensors. null/undefined are empty
 * subtrees; other JS values (numbers, strings, booleans) are static parts of the structure, kept
 * in the TreeDef and compared by value (so configuration can sit beside parameters).
 */
import { Tensor } from './tensor.js';

export type Tree = Tensor | null | undefined | number | string | boolean | readonly Tree[] | { readonly [key: string]: Tree };

export type TreeDef =
  | { readonly kind: 'leaf' }
  | { readonly kind: 'static'; readonly value: null | undefined | number | string | boolean }
  | { readonly kind: 'array'; readonly children: readonly TreeDef[] }
  | { readonly kind: 'object'; readonly keys: readonly string[]; readonly children: readonly TreeDef[] };

/** Thrown when two trees that must share a structure do not. */
export class TreeStructureError extends Error {
  override name = 'TreeStructureError';
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

const LEAF: TreeDef = { kind: 'leaf' };

/** Object keys in sorted order (usually they already are: then no second array is made). */
function sortedKeys(x: object): string[] {
  const keys = Object.keys(x);
  for (let i = 1; i < keys.length; i++) if (keys[i - 1] > keys[i]) return keys.sort();
  return keys;
}

/** Where in `tree` the first unsupported value sits (for the error message only). */
function pathOfUnsupported(x: unknown, path: string): string | null {
  if (x instanceof Tensor || x === null || x === undefined || typeof x === 'number' || typeof x === 'string' || typeof x === 'boolean')
    return null;
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) {
      const p = pathOfUnsupported(x[i], `${path}[${i}]`);
      if (p !== null) return p;
    }
    return null;
  }
  if (isPlainObject(x)) {
    for (const k of sortedKeys(x)) {
      const p = pathOfUnsupported(x[k], `${path}.${k}`);
      if (p !== null) return p;
    }
    return null;
  }
  return path || 'root';
}

/** Leaves in a fixed order (object keys sorted) and the structure to rebuild the tree. */
export function treeFlatten(tree: unknown): [Tensor[], TreeDef] {
  const leaves: Tensor[] = [];
  // A training step flattens its parameters on every call: no per-node strings here.
  const walk = (x: unknown): TreeDef => {
    if (x instanceof Tensor) {
      leaves.push(x);
      return LEAF;
    }
    if (x === null || x === undefined || typeof x === 'number' || typeof x === 'string' || typeof x === 'boolean')
      return { kind: 'static', value: x };
    if (Array.isArray(x)) {
      const children = new Array<TreeDef>(x.length);
      for (let i = 0; i < x.length; i++) children[i] = walk(x[i]);
      return { kind: 'array', children };
    }
    if (isPlainObject(x)) {
      const keys = sortedKeys(x);
      const children = new Array<TreeDef>(keys.length);
      for (let i = 0; i < keys.length; i++) children[i] = walk(x[keys[i]]);
      return { kind: 'object', keys, children };
    }
    const path = pathOfUnsupported(tree, '') ?? 'root';
    throw new TreeStructureError(
      `pytree: unsupported value at ${path}: ${(x as object).constructor?.name ?? typeof x} (use plain objects, arrays and tensors)`,
    );
  };
  const def = walk(tree);
  return [leaves, def];
}

/** Whether two structures are the same (without building their strings). */
export function sameTreeDef(a: TreeDef, b: TreeDef): boolean {
  if (a === b) return true;
  if (a.kind !== b.kind) return false;
  switch (a.kind) {
    case 'leaf':
      return true;
    case 'static':
      return Object.is(a.value, (b as typeof a).value);
    case 'array': {
      const bc = (b as typeof a).children;
      if (a.children.length !== bc.length) return false;
      for (let i = 0; i < bc.length; i++) if (!sameTreeDef(a.children[i], bc[i])) return false;
      return true;
    }
    case 'object': {
      const bo = b as typeof a;
      if (a.keys.length !== bo.keys.length) return false;
      for (let i = 0; i < a.keys.length; i++) if (a.keys[i] !== bo.keys[i] || !sameTreeDef(a.children[i], bo.children[i])) return false;
      return true;
    }
  }
}

export function treeUnflatten(def: TreeDef, leaves: readonly Tensor[]): Tree {
  return treeGraft(def, leaves, 'treeUnflatten');
}

/**
 * `def`'s structure with its i-th leaf replaced by `subtrees[i]`, which may themselves be trees (a
 * Jacobian's output structure holds one argument-structured tree per output leaf). `where` names the
 * caller in the count errors.
 */
export function treeGraft(def: TreeDef, subtrees: readonly Tree[], where = 'treeGraft'): Tree {
  let i = 0;
  const build = (d: TreeDef): Tree => {
    switch (d.kind) {
      case 'leaf':
        if (i >= subtrees.length)
          throw new TreeStructureError(`${where}: too few leaves (${subtrees.length}) for the structure ${treeDefString(def)}`);
        return subtrees[i++];
      case 'static':
        return d.value;
      case 'array':
        return d.children.map(build);
      case 'object': {
        const out: Record<string, Tree> = {};
        d.keys.forEach((k, j) => (out[k] = build(d.children[j])));
        return out;
      }
    }
  };
  const out = build(def);
  if (i !== subtrees.length) throw new TreeStructureError(`${where}: ${subtrees.length} leaves for a structure with ${i}`);
  return out;
}

export function treeLeaves(tree: unknown): Tensor[] {
  return treeFlatten(tree)[0];
}

export function numLeaves(def: TreeDef): number {
  switch (def.kind) {
    case 'leaf':
      return 1;
    case 'static':
      return 0;
    default:
      return def.children.reduce((a, c) => a + numLeaves(c), 0);
  }
}

/** A compact printable form; equal strings mean equal structures (used as cache keys). */
export function treeDefString(def: TreeDef): string {
  switch (def.kind) {
    case 'leaf':
      return '*';
    case 'static':
      return JSON.stringify(def.value) ?? 'undefined';
    case 'array':
      return `[${def.children.map(treeDefString).join(',')}]`;
    case 'object':
      return `{${def.keys.map((k, i) => `${JSON.stringify(k)}:${treeDefString(def.children[i])}`).join(',')}}`;
  }
}

export function treeDefsEqual(a: TreeDef, b: TreeDef): boolean {
  return treeDefString(a) === treeDefString(b);
}

/** Applies fn to every leaf. */
export function treeMap<T extends Tree>(fn: (leaf: Tensor) => Tensor, tree: T): T;
export function treeMap(fn: (leaf: Tensor) => Tensor, tree: unknown): Tree {
  const [leaves, def] = treeFlatten(tree);
  return treeUnflatten(def, leaves.map(fn));
}

/** Applies fn leaf by leaf over trees of one structure; throws naming both structures otherwise. */
export function treeZipMap<T extends Tree>(fn: (...leaves: Tensor[]) => Tensor, first: T, ...rest: Tree[]): T;
export function treeZipMap(fn: (...leaves: Tensor[]) => Tensor, first: unknown, ...rest: unknown[]): Tree {
  const [leaves, def] = treeFlatten(first);
  const others = rest.map((t, k) => {
    const [l, d] = treeFlatten(t);
    if (!treeDefsEqual(def, d))
      throw new TreeStructureError(`treeZipMap: tree ${k + 1} has structure ${treeDefString(d)}, expected ${treeDefString(def)}`);
    return l;
  });
  return treeUnflatten(
    def,
    leaves.map((leaf, i) => fn(leaf, ...others.map((o) => o[i]))),
  );
}
