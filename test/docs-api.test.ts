/**
 * Documentation checks: every name exported by every package entry point is either mentioned in
 * docs/api.md or carries a doc comment (which typedoc, `npm run docs`, turns into the reference);
 * the README's TypeScript blocks, each `## ` section's blocks read in order as one program, type-check under `strict` against
 * the package's entry points.
 */
import t from 'tap';
import ts from 'typescript';
import { strictUserProgram } from './fixtures/strict-compiler.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { exports: Record<string, { import: string }> };
/** Package subpath -> its TypeScript source (./dist/x/index.js -> ./x/index.ts). */
const entries = Object.entries(pkg.exports).map(([sub, e]) => ({
  specifier: sub === '.' ? 'spiketrace' : `spiketrace/${sub.slice(2)}`,
  source: join(repo, e.import.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts')),
}));

t.test('every exported name is in docs/api.md or has a doc comment', async (t) => {
  const api = readFileSync(join(repo, 'docs/api.md'), 'utf8');
  const program = ts.createProgram(
    entries.map((e) => e.source),
    {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      skipLibCheck: true,
      noEmit: true,
    },
  );
  const checker = program.getTypeChecker();
  const undocumented: string[] = [];
  let total = 0;
  for (const e of entries) {
    const sf = program.getSourceFile(e.source);
    const mod = sf && checker.getSymbolAtLocation(sf);
    if (!mod) {
      t.fail(`${e.specifier}: no module symbol for ${e.source}`);
      continue;
    }
    for (const sym of checker.getExportsOfModule(mod)) {
      total++;
      const name = sym.getName();
      const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
      const hasComment = target.getDocumentationComment(checker).length > 0;
      const inApi = new RegExp(`(^|[^A-Za-z0-9_$])${name.replace(/\$/g, '\\$')}([^A-Za-z0-9_$]|$)`, 'm').test(api);
      if (!hasComment && !inApi) undocumented.push(`${e.specifier}: ${name}`);
    }
  }
  t.ok(total > 200, `${total} exported names checked`);
  t.same(undocumented, [], 'undocumented exports');
});

t.test("the README's TypeScript blocks type-check under strict", async (t) => {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  // One convention with readme-types.test.ts: each `## ` section's blocks, read in order, are one program (later
  // blocks continue earlier ones, imports merged at the top); sections are separate programs.
  const sections = readme
    .split(/^## /m)
    .map((text) => [...text.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => m[1]))
    .filter((blocks) => blocks.length > 0);
  const blocks = sections.flat();
  t.ok(blocks.length >= 1, `${blocks.length} blocks`);
  const programs = sections.map((sectionBlocks) => {
    const named = new Map<string, Set<string>>();
    const other = new Set<string>();
    const body: string[] = [];
    for (const block of sectionBlocks) {
      for (const line of block.split('\n')) {
        const m = /^import \{([^}]*)\} from '([^']+)';$/.exec(line);
        if (m) {
          const set = named.get(m[2]) ?? new Set<string>();
          m[1]
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
            .forEach((s) => set.add(s));
          named.set(m[2], set);
        } else if (/^import /.test(line)) other.add(line);
        else body.push(line);
      }
    }
    const imports = [...other, ...[...named].map(([from, names]) => `import { ${[...names].join(', ')} } from '${from}';`)];
    return `${imports.join('\n')}\n${body.join('\n')}\nexport {};\n`;
  });
  const dir = mkdtempSync(join(repo, 'out-readme-check-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(dir, { recursive: true });
  const files = programs.map((text, i) => {
    const file = join(dir, `readme-${i}.ts`);
    writeFileSync(file, text);
    return file;
  });
  const paths = Object.fromEntries(entries.map((e) => [e.specifier, [e.source]]));
  const program = ts.createProgram(files, { ...strictUserProgram, paths });
  const diagnostics = ts.getPreEmitDiagnostics(program).filter((d) => d.file !== undefined && files.includes(d.file.fileName));
  const text = diagnostics.map((d) => {
    const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
    const line = where && d.file ? readFileSync(d.file.fileName, 'utf8').split('\n')[where.line] : '';
    return `${d.file ? d.file.fileName.split('/').pop() : '?'}:${where ? where.line + 1 : '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}\n    ${line.trim()}`;
  });
  t.same(text, [], 'no type errors in the README program');
});
