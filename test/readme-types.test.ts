/**
 * The README's TypeScript examples type-check under `strict`: the ```ts blocks are extracted, the
 * blocks of one section joined in order (later blocks use earlier ones' names; their imports are
 * merged), `spiketrace/*` mapped to the sources, and tsc run on each section's module. Sections
 * whose first block has no imports show fragments of an example above and are listed as skipped.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
/** The ```ts blocks of each `## ` section of the README, in order. */
const sections = readme
  .split(/^## /m)
  .map((text) => ({ title: text.split('\n')[0], blocks: [...text.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => m[1]) }))
  .filter((sec) => sec.blocks.length > 0);
/** Complete examples start with their imports; a section whose first block has none shows a fragment. */
const complete = sections.filter((sec) => /^import /m.test(sec.blocks[0]));

/** Joins blocks into one module: imports merged per module specifier, code in order. */
function joinBlocks(parts: readonly string[]): string {
  const named = new Map<string, Set<string>>();
  const namespaces = new Map<string, string>();
  const code: string[] = [];
  for (const part of parts) {
    for (const line of part.split('\n')) {
      const ns = /^import \* as (\w+) from '([^']+)';$/.exec(line);
      const nm = /^import \{([^}]*)\} from '([^']+)';$/.exec(line);
      if (ns) namespaces.set(ns[1], ns[2]);
      else if (nm) {
        const set = named.get(nm[2]) ?? new Set<string>();
        for (const s of nm[1]
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean))
          set.add(s);
        named.set(nm[2], set);
      } else code.push(line);
    }
  }
  const imports = [
    ...[...namespaces].map(([n, m]) => `import * as ${n} from '${m}';`),
    ...[...named].map(([m, s]) => `import { ${[...s].join(', ')} } from '${m}';`),
  ];
  return [...imports, ...code, 'export {};'].join('\n');
}

t.test('README TypeScript examples compile under strict', async (t) => {
  t.ok(complete.length >= 1, `complete examples in: ${complete.map((c) => c.title).join('; ')}`);
  for (const sec of sections.filter((x) => !complete.includes(x))) t.comment(`skipped (a fragment without imports): ${sec.title}`);
  t.ok(
    complete.some((c) => c.blocks.some((b) => b.includes('valueAndGrad'))),
    'the hand-written training step is among the compiled examples',
  );
  const dir = mkdtempSync(join(tmpdir(), 'spiketrace-readme-'));
  try {
    const files = complete.map((sec, i) => {
      const file = join(dir, `readme-${i}.ts`);
      writeFileSync(file, joinBlocks(sec.blocks));
      return file;
    });
    // Every package entry point maps to its source (./dist/x/index.js -> x/index.ts), as in docs-api.test.ts.
    const exportsMap = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, { import: string }> })
      .exports;
    const paths = Object.fromEntries(
      Object.entries(exportsMap).map(([sub, e]) => [
        sub === '.' ? 'spiketrace' : `spiketrace/${sub.slice(2)}`,
        [join(root, e.import.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts'))],
      ]),
    );
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022',
        module: 'ES2022',
        moduleResolution: 'bundler',
        lib: ['ES2022', 'DOM'],
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        esModuleInterop: true,
        paths,
        types: ['node'],
        typeRoots: [join(root, 'node_modules', '@types')],
      },
      files,
    };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
    let output = '';
    try {
      execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')], {
        encoding: 'utf8',
      });
    } catch (e) {
      output = String((e as { stdout?: string }).stdout ?? e);
    }
    t.equal(output, '', 'tsc reports no errors');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
