// `npm pack` as a user gets it: the tarball's contents, an install into a fresh project (its
// dependencies linked from this repo's node_modules, as npm would place them, so no network is
// needed), every entry point imported by Node, and a consumer file type-checked under strict with
// skipLibCheck false. The optional peers (gpu.js, gl, fast-check) are left out first, then added.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'spiketrace-pack-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

interface PackageJson {
  name: string;
  exports: Record<string, { types: string; import: string }>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  optionalDependencies?: Record<string, string>;
}

// `npm pack` runs the prepack build; --json reports the tarball's name and file list.
const packed = JSON.parse(
  execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 240_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  }),
) as { filename: string; files: { path: string }[] }[];
const tarball = join(work, packed[0].filename);
const files = new Set(packed[0].files.map((f) => f.path));
const project = join(work, 'consumer');
const installed = join(project, 'node_modules', 'spiketrace');
mkdirSync(installed, { recursive: true });
execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as PackageJson;
const OPTIONAL_PEERS = ['gpu.js', 'gl', 'fast-check'];

t.test('the tarball holds the built entry points, resolvable maps, and no benchmarks', async (t) => {
  for (const [entry, target] of Object.entries(pkg.exports)) {
    t.ok(files.has(posix.normalize(target.import)), `${entry}: ${target.import} is packed`);
    t.ok(files.has(posix.normalize(target.types)), `${entry}: ${target.types} is packed`);
  }
  t.same(
    [...files].filter((f) => /(^|\/)bench/.test(f)),
    [],
    'no benchmark files',
  );
  t.same(
    [...files].filter((f) => f.startsWith('test/') || f.startsWith('examples/')),
    [],
    'no tests or examples',
  );
  const maps = [...files].filter((f) => f.endsWith('.map'));
  t.ok(
    maps.some((f) => f.endsWith('.d.ts.map')),
    'declaration maps are shipped',
  );
  const unresolved: string[] = [];
  for (const m of maps) {
    const { sources } = JSON.parse(readFileSync(join(installed, m), 'utf8')) as { sources: string[] };
    for (const s of sources) if (!files.has(posix.join(posix.dirname(m), s))) unresolved.push(`${m} -> ${s}`);
  }
  t.same(unresolved, [], 'every source map points at a packed source');
});

t.test('runtime dependencies: type packages included, gpu.js, gl and fast-check optional peers', async (t) => {
  const deps = pkg.dependencies ?? {};
  t.ok(deps['@types/ndarray'], '@types/ndarray is a dependency (the published .d.ts import ndarray types)');
  for (const p of OPTIONAL_PEERS) {
    t.notOk(deps[p], `${p} is not a dependency`);
    t.notOk(pkg.optionalDependencies?.[p], `${p} is not an optional dependency (those install by default)`);
    t.ok(pkg.peerDependencies?.[p] && pkg.peerDependenciesMeta?.[p]?.optional, `${p} is an optional peer`);
  }
});

/** Links a package from this repo's node_modules into the consumer's, as an install would place it. */
function link(name: string): void {
  const from = join(repo, 'node_modules', name);
  if (!existsSync(from)) throw new Error(`${name} is not installed in this repo's node_modules`);
  const to = join(project, 'node_modules', name);
  mkdirSync(dirname(to), { recursive: true });
  if (!existsSync(to)) symlinkSync(realpathSync(from), to, 'dir');
}
for (const name of Object.keys(pkg.dependencies ?? {})) link(name);
writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));

function node(source: string): { code: number | null; out: string } {
  const file = join(project, `run-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, source);
  const r = spawnSync(process.execPath, [file], { cwd: project, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const entries = Object.keys(pkg.exports).map((e) => (e === '.' ? 'spiketrace' : `spiketrace/${e.slice(2)}`));

t.test('without the optional peers: every entry but spiking/testing imports; gpu says gpu.js is missing', async (t) => {
  const plain = entries.filter((e) => e !== 'spiketrace/spiking/testing');
  const r = node(`
    const counts = {};
    for (const e of ${JSON.stringify(plain)}) counts[e] = Object.keys(await import(e)).length;
    const { jit, grad, array, sum, mul } = await import('spiketrace');
    const f = jit(grad((x) => sum(mul(x, x))));
    counts.grad = Array.from(f(array([1, 2, 3])).toTyped());
    counts.gpu = (await import('spiketrace/gpu')).enableGpuBackend();
    console.log(JSON.stringify(counts));`);
  t.equal(r.code, 0, r.out);
  const counts = JSON.parse(r.out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  for (const e of plain) t.ok((counts[e] as number) > 0, `${e} exports names`);
  t.same(counts.grad, [2, 4, 6], 'a jitted gradient runs from the installed package');
  const gpu = counts.gpu as { ok: boolean; reason: string };
  t.equal(gpu.ok, false);
  t.match(gpu.reason, /optional peer dependency 'gpu\.js' is not installed/);
  const testing = node(`await import('spiketrace/spiking/testing');`);
  t.not(testing.code, 0, 'spiking/testing needs fast-check');
  t.match(testing.out, /fast-check/);
});

t.test('with the optional peers linked: spiking/testing imports, and a consumer type-checks strictly', async (t) => {
  for (const p of Object.keys(pkg.peerDependencies ?? {})) link(p);
  const r = node(`const m = await import('spiketrace/spiking/testing'); console.log(Object.keys(m).length);`);
  t.equal(r.code, 0, r.out);
  const imports = entries.map((e, i) => `import * as entry${i} from '${e}';`).join('\n');
  writeFileSync(
    join(project, 'consumer.ts'),
    `${imports}
import { array, grad, jit, sum, mul, type Tensor } from 'spiketrace/core';
import { nn } from 'spiketrace';
export const used = [${entries.map((_, i) => `entry${i}`).join(', ')}];
const square = (x: Tensor): Tensor => sum(mul(x, x));
export const g = jit(grad(square))(array([1, 2, 3]));
export const model = nn.sequential([nn.dense(4)]);
`,
  );
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2022', 'DOM'],
        strict: true,
        skipLibCheck: false,
        noEmit: true,
        types: [],
      },
      files: ['consumer.ts'],
    }),
  );
  const tsc = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', project], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  t.equal(tsc.status, 0, `tsc: ${tsc.stdout}${tsc.stderr}`);
});
