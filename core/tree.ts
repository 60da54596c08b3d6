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

/** Leaves in a fixed order (object keys sorted) and the structure to rebuild the tree. */
export function treeFlatten(tree: unknown): [Tensor[], TreeDef] {
  const leaves: Tensor[] = [];
  const walk = (x: unknown, path: string): TreeDef => {
    if (x instanceof Tensor) {
      leaves.push(x);
      return { kind: 'leaf' };
    }
    if (x === null || x === undefined || typeof x === 'number' || typeof x === 'string' || typeof x === 'boolean') return { kind: 'static', value: x };
    if (Array.isArray(x)) return { kind: 'array', children: x.map((c, i) => walk(c, `${path}[${i}]`)) };
    if (isPlainObject(x)) {
      const keys = Object.keys(x).sort();
      return { kind: 'object', keys, children: keys.map((k) => walk(x[k], `${path}.${k}`)) };
    }
    throw new TreeStructureError(`pytree: unsupported value at ${path || 'root'}: ${(x as object).constructor?.name ?? typeof x} (use plain objects, arrays and tensors)`);
  };
  const def = walk(tree, '');
  return [leaves, def];
}

export function treeUnflatten(def: TreeDef, leaves: readonly Tensor[]): Tree {
  let i = 0;
  const build = (d: TreeDef): Tree => {
    switch (d.kind) {
      case 'leaf':
        if (i >= leaves.length) throw new TreeStructureError(`treeUnflatten: too few leaves (${leaves.length}) for the structure ${treeDefString(def)}`);
        return leaves[i++];
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
  if (i !== leaves.length) throw new TreeStructureError(`treeUnflatten: ${leaves.length} leaves for a structure with ${i}`);
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
    if (!treeDefsEqual(def, d)) throw new TreeStructureError(`treeZipMap: tree ${k + 1} has structure ${treeDefString(d)}, expected ${treeDefString(def)}`);
    return l;
  });
  return treeUnflatten(
    def,
    leaves.map((leaf, i) => fn(leaf, ...others.map((o) => o[i]))),
  );
}
