/**
 * The architecture's rules, checked on the sources: imports point one way only (core <- nn <-
 * spiking; data depends on core only), and no layer imports a Node built-in module statically (so
 * every module loads in a browser; Node-only file access is looked up when it is called).
 * Benchmark scripts (files named bench.ts) are tools, not library code, and are skipped.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LAYERS = ['core', 'nn', 'spiking', 'data'] as const;
type Layer = (typeof LAYERS)[number];
const ALLOWED: Record<Layer, readonly Layer[]> = {
  core: ['core'],
  nn: ['core', 'nn'],
  spiking: ['core', 'nn', 'spiking'],
  data: ['core', 'data'],
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') && e.name !== 'bench.ts' ? [p] : [];
  });
}

/** Static (non-type) import and re-export specifiers of a source file. */
function imports(text: string): string[] {
  const out: string[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?[^'";]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm;
  for (const m of text.matchAll(re)) if (!m[2]) out.push(m[3] ?? m[4]);
  return out;
}

for (const layer of LAYERS) {
  t.test(`${layer}/ imports only ${ALLOWED[layer].join(', ')} and no Node built-in`, async (t) => {
    const files = sources(join(root, layer));
    t.ok(files.length > 3, `found ${files.length} sources`);
    const problems: string[] = [];
    for (const file of files) {
      for (const spec of imports(readFileSync(file, 'utf8'))) {
        const where = relative(root, file);
        if (spec.startsWith('.')) {
          const target = relative(root, resolve(dirname(file), spec)).split(/[\\/]/)[0];
          if ((LAYERS as readonly string[]).includes(target) && !ALLOWED[layer].includes(target as Layer))
            problems.push(`${where} imports ${spec} (${target})`);
          if (!(LAYERS as readonly string[]).includes(target)) problems.push(`${where} imports ${spec} outside the layers`);
        } else if (spec.startsWith('node:')) problems.push(`${where} imports ${spec} statically`);
      }
    }
    t.same(problems, [], 'no import against the layering');
  });
}

t.test('the checker sees a violation', async (t) => {
  t.same(imports("import { x } from '../nn/index.js';\nimport type { Y } from 'node:fs';\nexport * from './a.js';\nimport 'node:fs';"), [
    '../nn/index.js',
    './a.js',
    'node:fs',
  ]);
});

/**
 * The frontend reaches backends only through core/backends.ts: core's own modules (everything in
 * core/ outside core/backend/, except the entry points that load and re-export the backends) and
 * the other layers import nothing under core/backend/, so a backend's memory model (the CPU
 * arena, its buffer pool) cannot leak into jit, NDArray or the training loop.
 */
const BACKEND_ENTRY_POINTS = new Set(['core/index.ts', 'core/internal.ts']);

t.test('only core/backend/ and the core entry points import core/backend/', async (t) => {
  const problems: string[] = [];
  for (const layer of LAYERS) {
    for (const file of sources(join(root, layer))) {
      const where = relative(root, file).split(/[\\/]/).join('/');
      if (where.startsWith('core/backend/') || BACKEND_ENTRY_POINTS.has(where)) continue;
      for (const spec of imports(readFileSync(file, 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const target = relative(root, resolve(dirname(file), spec))
          .split(/[\\/]/)
          .join('/');
        if (target.startsWith('core/backend/') || target === 'core/internal.js') problems.push(`${where} imports ${spec}`);
      }
    }
  }
  t.same(problems, [], 'the frontend imports no backend module');
});

/** The package's entry points as source paths (./dist/core/index.js -> core/index.js), core/internal excepted. */
const PUBLIC_ENTRY_POINTS = new Set(
  Object.values((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, { import: string }> }).exports)
    .map((e) => e.import.replace(/^\.\/dist\//, ''))
    .filter((p) => p !== 'core/internal.js'),
);

t.test('examples import public entry points only (no core/internal, no module under a layer)', async (t) => {
  const problems: string[] = [];
  for (const file of sources(join(root, 'examples'))) {
    for (const spec of imports(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = relative(root, resolve(dirname(file), spec))
        .split(/[\\/]/)
        .join('/');
      const layer = target.split('/')[0];
      if ((LAYERS as readonly string[]).includes(layer) && !PUBLIC_ENTRY_POINTS.has(target))
        problems.push(`${relative(root, file)} imports ${spec}`);
    }
  }
  t.same(problems, [], 'examples use the public API');
});
