/**
 * `npm run demo`: builds the browser demo and serves it on 127.0.0.1 with a tiny static server.
 * By default the page is cross-origin isolated (COOP/COEP headers: the WebAssembly kernels share
 * memory); --no-isolation leaves the headers out, --csp adds the strict Content-Security-Policy
 * `script-src 'self' 'wasm-unsafe-eval'` (no eval). Options: --port N (default 8080), --out DIR.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { buildDemo, DEMO_OUT } from './build.js';

export const STRICT_CSP = "script-src 'self' 'wasm-unsafe-eval'";

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.idx': 'application/octet-stream',
};

export interface ServeOptions {
  root?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Send COOP/COEP so the page is cross-origin isolated (default true). */
  isolation?: boolean;
  /** Send the strict Content-Security-Policy (default false). */
  csp?: boolean;
}

/** Serves `root` on 127.0.0.1; resolves once listening. */
export function serveDemo(options: ServeOptions = {}): Promise<{ url: string; server: Server }> {
  const root = resolve(options.root ?? DEMO_OUT);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!file.startsWith(root + sep)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file).then(
      (body) => {
        const headers: Record<string, string> = {
          'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
          'Cache-Control': 'no-store',
        };
        if (options.isolation ?? true) {
          headers['Cross-Origin-Opener-Policy'] = 'same-origin';
          headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
        }
        if (options.csp) headers['Content-Security-Policy'] = STRICT_CSP;
        res.writeHead(200, headers).end(body);
      },
      () => res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found'),
    );
  });
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      done({ url: `http://127.0.0.1:${port}/`, server });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  const out = await buildDemo(flag('--out') ?? DEMO_OUT);
  const isolation = !args.includes('--no-isolation');
  const csp = args.includes('--csp');
  const { url } = await serveDemo({ root: out, port: Number(flag('--port') ?? 8080), isolation, csp });
  console.log(`spiketrace demo at ${url} (COOP/COEP ${isolation ? 'on' : 'off'}, strict CSP ${csp ? 'on' : 'off'}); Ctrl-C stops it`);
}
