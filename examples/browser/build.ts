/**
 * Builds the browser demo into a folder: main.ts bundled by esbuild (ESM, ES2022), index.html,
 * and the Fashion-MNIST subset (make-data.ts) under data/.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { DATA_FILES } from './demo.js';
import { makeDemoData } from './make-data.js';

export const DEMO_OUT = 'out/browser';

export async function buildDemo(outDir = DEMO_OUT): Promise<string> {
  const here = import.meta.dirname;
  mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: [join(here, 'main.ts')],
    bundle: true,
    format: 'esm',
    target: 'es2022',
    platform: 'browser',
    outfile: join(outDir, 'main.js'),
    sourcemap: true,
    logLevel: 'warning',
  });
  copyFileSync(join(here, 'index.html'), join(outDir, 'index.html'));
  const dataDir = join(outDir, 'data');
  if (!DATA_FILES.every((f) => existsSync(join(dataDir, f)))) await makeDemoData(dataDir);
  return outDir;
}
