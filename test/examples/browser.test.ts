/**
 * The browser demo (examples/browser/) in Debian's Chromium, headless, driven by puppeteer-core:
 * the page trains the seed's spiking model on the CPU backend and its losses and test accuracy
 * equal the same training run here in Node, bit for bit, in a cross-origin-isolated page, in one
 * without COOP/COEP (no shared memory), and under the strict CSP `script-src 'self'
 * 'wasm-unsafe-eval'` (no eval: interpreted loops). gpu.js on WebGL2 (SwiftShader) trains within
 * float tolerance of the CPU, and says why it cannot start under the strict CSP. A screenshot of
 * the trained page is decoded and must show the chart and raster (not a blank page).
 * Skips where chromium or the Fashion-MNIST files are missing; SPIKETRACE_REQUIRE_BROWSER=1 makes
 * that a failure.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CHROMIUM = process.env.SPIKETRACE_CHROMIUM ?? '/usr/bin/chromium';
const require = process.env.SPIKETRACE_REQUIRE_BROWSER === '1';
const haveData = existsSync('/usr/share/datasets/fashion-mnist') || process.env.FASHION_MNIST_DIR !== undefined;
const missing = !existsSync(CHROMIUM) ? `no chromium at ${CHROMIUM}` : !haveData ? 'no Fashion-MNIST files here' : null;

if (missing !== null) {
  if (require) t.fail(`SPIKETRACE_REQUIRE_BROWSER=1 but ${missing}`);
  else t.pass(`skipped: ${missing} (set SPIKETRACE_REQUIRE_BROWSER=1 to make this a failure)`);
} else {
  t.test('the browser demo in chromium', { timeout: 240_000 }, browserTests);
}

async function browserTests(t: Test): Promise<void> {
  const { default: puppeteer } = await import('puppeteer-core');
  const { buildDemo } = await import('../../examples/browser/build.js');
  const { serveDemo } = await import('../../examples/browser/serve.js');
  const { DATA_FILES, demoData, trainDemo } = await import('../../examples/browser/demo.js');
  const spiking = await import('../../spiking/index.js');

  const out = mkdtempSync(join(tmpdir(), 'spiketrace-browser-'));
  const profile = mkdtempSync(join(tmpdir(), 'spiketrace-chromium-'));
  t.teardown(() => {
    rmSync(out, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  });
  await buildDemo(out);

  // The reference: the same training in this Node process, on the files the page fetches.
  const LIMIT = 256;
  const files = Object.fromEntries(DATA_FILES.map((f) => [f, new Uint8Array(readFileSync(join(out, 'data', f)))])) as Parameters<
    typeof demoData
  >[0];
  const { train, test } = demoData(files);
  const node = await trainDemo(train, { limit: LIMIT, epochs: 1 });
  const nodeAccuracy = spiking.spikeStats(node.model, node.vars, test.sequences, { labels: test.labels, dt: 0.01 }).accuracy;
  t.equal(node.losses.length, LIMIT / 32, 'Node: one loss per step');

  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      '--no-sandbox',
      '--use-angle=swiftshader',
      '--enable-unsafe-swiftshader',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  t.teardown(() => browser.close());

  interface PageRun {
    env: { crossOriginIsolated: boolean; sharedMemory: boolean; codeGeneration: boolean };
    losses: number[];
    backend: string;
    gpuMode: string | null;
    accuracy: number;
  }
  type DemoWindow = Window & { spiketraceDemo: { env: PageRun['env']; lastRun: Omit<PageRun, 'env'> | null } };

  async function open(options: { isolation: boolean; csp: boolean }) {
    const { url, server } = await serveDemo({ root: out, ...options });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.setViewport({ width: 1000, height: 1000 });
    await page.goto(`${url}?limit=${LIMIT}`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 }).catch(() => {
      throw new Error(`the demo page did not load: ${errors.join('; ') || 'no page error'}`);
    });
    return { page, server, errors };
  }

  // Training starts from a real click (Input events), as a user's would: code that the DevTools
  // protocol evaluates is exempt from the page's CSP, so page.evaluate would not test it.
  async function trainIn(page: Awaited<ReturnType<typeof open>>['page'], backend: string): Promise<PageRun> {
    await page.select('#backend', backend);
    await page.click('#train');
    await page.waitForSelector('body[data-runs="1"]', { timeout: 120_000 });
    return page.evaluate(() => {
      const demo = (window as unknown as DemoWindow).spiketraceDemo;
      return { env: demo.env, ...demo.lastRun! };
    });
  }

  const configs = [
    { name: 'cross-origin isolated', isolation: true, csp: false, sharedMemory: true, codeGeneration: true },
    { name: 'without COOP/COEP', isolation: false, csp: false, sharedMemory: false, codeGeneration: true },
    { name: "under script-src 'self' 'wasm-unsafe-eval'", isolation: true, csp: true, sharedMemory: true, codeGeneration: false },
  ];
  for (const c of configs) {
    await t.test(`cpu backend ${c.name}: the losses equal Node's bit for bit`, async (t) => {
      const { page, server, errors } = await open(c);
      t.teardown(() => {
        server.close();
        return page.close();
      });
      const r = await trainIn(page, 'cpu');
      t.same(
        r.env,
        { crossOriginIsolated: c.isolation, sharedMemory: c.sharedMemory, codeGeneration: c.codeGeneration },
        'the page environment',
      );
      t.equal(r.backend, 'cpu');
      t.same(r.losses, node.losses, 'every step loss, bit for bit');
      t.equal(r.accuracy, nodeAccuracy, 'test accuracy at dt 0.01');
      if (c.csp) {
        await page.select('#backend', 'gpujs');
        const gpu = await page.evaluate(() => ({
          backend: (document.getElementById('backend') as HTMLSelectElement).value,
          status: document.getElementById('status')!.textContent ?? '',
        }));
        t.equal(gpu.backend, 'cpu', 'gpu.js refused: the page stays on cpu');
        t.match(gpu.status, /unsafe-eval/, 'and says gpu.js needs unsafe-eval');
      }
      t.same(errors, [], 'no page errors');
    });
  }

  await t.test('gpu.js on WebGL2 trains within float tolerance; the screenshot shows the trained page', async (t) => {
    const { page, server, errors } = await open({ isolation: true, csp: false });
    t.teardown(() => {
      server.close();
      return page.close();
    });
    const r = await trainIn(page, 'gpujs');
    if (r.backend !== 'gpujs') {
      const status = await page.evaluate(() => document.getElementById('status')!.textContent);
      t.fail(`gpu.js did not start in chromium: ${status}`);
    } else {
      t.equal(r.gpuMode, 'webgl2', 'gpu.js runs on WebGL2');
      t.equal(r.losses.length, node.losses.length);
      const worst = Math.max(...r.losses.map((l, i) => Math.abs(l - node.losses[i]) / Math.max(1, Math.abs(node.losses[i]))));
      t.ok(worst < 2e-3, `losses within 2e-3 of the CPU's (worst relative difference ${worst.toExponential(2)})`);
      t.ok(Math.abs(r.accuracy - nodeAccuracy!) <= 0.02, `test accuracy ${r.accuracy} near the CPU's ${nodeAccuracy}`);
    }
    const png = await page.screenshot({ encoding: 'base64', fullPage: true });
    // Decode the screenshot in the page and count the pixels that are neither white nor near it.
    const inked = await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.width;
      c.height = img.height;
      const g = c.getContext('2d')!;
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      const colors = new Set<number>();
      for (let i = 0; i < d.length; i += 4) {
        if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) n++;
        colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      }
      return { width: c.width, height: c.height, inked: n / (c.width * c.height), colors: colors.size };
    }, png);
    t.ok(inked.width >= 900 && inked.height >= 700, `a full-page screenshot (${inked.width}x${inked.height})`);
    t.ok(inked.inked > 0.01, `the page is not blank (${(100 * inked.inked).toFixed(2)}% of the pixels inked)`);
    t.ok(inked.colors > 20, `text, chart and raster colours (${inked.colors} colours)`);
    t.same(errors, [], 'no page errors');
  });
}
