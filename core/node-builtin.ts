/**
 * Node's built-in modules looked up when a function needs them (process.getBuiltinModule), not
 * imported: modules that only touch files inside some functions then still load in a browser,
 * where those functions throw instead. process.getBuiltinModule exists from Node 20.16 / 22.3
 * (package.json engines).
 */
export function nodeBuiltin<T>(id: string): T | undefined {
  const lookup = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
  return (typeof lookup === 'function' ? lookup(id) : undefined) as T | undefined;
}

/** The built-in `id`, or an Error naming `caller` and what it needed. */
export function requireNodeBuiltin<T>(id: string, caller: string): T {
  const m = nodeBuiltin<T>(id);
  if (m === undefined) throw new Error(`${caller}: needs Node's ${id}, which this environment does not provide`);
  return m;
}
