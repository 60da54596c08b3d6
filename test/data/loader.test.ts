/**
 * The MNIST-like loaders on small synthetic datasets: where they look and in
 * what order, what they check, and the download path with a fake fetch.
 *
 * HOME, FASHION_MNIST_DIR and MNIST_DIR are pointed at temporary directories
 * for the whole file (and restored at the end), so the user's real caches
 * and Debian's files never leak into these tests; system directories are
 * passed explicitly for the same reason.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ChecksumError, DatasetError, IdxFormatError, type DatasetErrorCode } from '../../data/raw/errors.js';
import { encodeIdx } from '../../data/raw/idx.js';
import {
  FASHION_MNIST,
  loadFashionMnistRaw,
  loadFashionMnistRawSync,
  loadMnistRaw,
  normalizeImages,
} from '../../data/raw/fashion-mnist.js';
import { loadMnistLikeRaw, MNIST_LIKE_FILES, type FetchLike, type MnistLikeFile, type MnistLikeSpec } from '../../data/raw/mnist-like.js';

// ------------------------------------------------------------------ fixtures

const root = mkdtempSync(join(tmpdir(), 'spiketrace-data-test-'));
const savedEnv = { HOME: process.env.HOME, FASHION_MNIST_DIR: process.env.FASHION_MNIST_DIR, MNIST_DIR: process.env.MNIST_DIR };
const home = join(root, 'home');
mkdirSync(home);
process.env.HOME = home;
delete process.env.FASHION_MNIST_DIR;
delete process.env.MNIST_DIR;
t.teardown(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  rmSync(root, { recursive: true, force: true });
});

let dirCounter = 0;
/** A fresh empty directory under the test root. */
function freshDir(name: string): string {
  const d = join(root, `${name}-${dirCounter++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Plain IDX bytes of a synthetic split: `n` 28x28 images with a known pattern and labels i % 10. */
function synthetic(nTrain: number, nTest: number): Record<MnistLikeFile, Uint8Array> {
  const images = (n: number, salt: number) =>
    encodeIdx({ dtype: 'uint8', shape: [n, 28, 28], data: Uint8Array.from({ length: n * 784 }, (_, i) => (i * 7 + salt) % 256) });
  const labels = (n: number) => encodeIdx({ dtype: 'uint8', shape: [n], data: Uint8Array.from({ length: n }, (_, i) => i % 10) });
  return {
    'train-images-idx3-ubyte': images(nTrain, 1),
    'train-labels-idx1-ubyte': labels(nTrain),
    't10k-images-idx3-ubyte': images(nTest, 2),
    't10k-labels-idx1-ubyte': labels(nTest),
  };
}

/** Writes the files into `dir`, gzipped (`name.gz`) or plain; `skip` leaves some out. */
function writeDataset(
  dir: string,
  files: Record<MnistLikeFile, Uint8Array>,
  opts: { gzip?: boolean | ((f: MnistLikeFile) => boolean); skip?: MnistLikeFile[] } = {},
): string {
  mkdirSync(dir, { recursive: true });
  for (const f of MNIST_LIKE_FILES) {
    if (opts.skip?.includes(f)) continue;
    const gz = typeof opts.gzip === 'function' ? opts.gzip(f) : (opts.gzip ?? true);
    writeFileSync(join(dir, gz ? `${f}.gz` : f), gz ? gzipSync(files[f]) : files[f]);
  }
  return dir;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Awaits `p`, asserts it rejects with a DatasetError of `code` (or a subclass), returns it. */
async function rejectsWith<E extends Error>(
  tt: Test,
  p: Promise<unknown> | (() => unknown),
  cls: new (...args: never[]) => E,
  code?: DatasetErrorCode,
): Promise<E | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    tt.ok(e instanceof cls, `rejects with ${cls.name} (got ${String(e)})`);
    if (code !== undefined && e instanceof DatasetError) tt.equal(e.code, code, `code ${code}`);
    return e instanceof cls ? e : undefined;
  }
  tt.fail(`expected a ${cls.name}, got success`);
  return undefined;
}

function mentions(tt: Test, msg: string, ...fragments: string[]): void {
  for (const f of fragments) tt.ok(msg.includes(f), `message mentions ${JSON.stringify(f)}`);
}

// ------------------------------------------------------------------ search order

t.test('search order: dir, then env, Keras cache, system dir, download cache', async (t) => {
  const envDir = writeDataset(freshDir('env'), synthetic(1, 1));
  const kerasDir = writeDataset(join(home, '.keras', 'datasets', 'fashion-mnist'), synthetic(2, 1));
  const sysDir = writeDataset(freshDir('debian'), synthetic(3, 1));
  const cacheDir = writeDataset(freshDir('cache'), synthetic(4, 1));
  const explicit = writeDataset(freshDir('explicit'), synthetic(5, 1));
  const common = { verify: false, download: false, systemDirs: [sysDir], cacheDir } as const;

  process.env.FASHION_MNIST_DIR = envDir;
  const byDir = await loadFashionMnistRaw({ ...common, dir: explicit });
  t.same([byDir.origin, byDir.source, byDir.train.count], ['dir', explicit, 5], 'explicit dir beats everything');

  const byEnv = await loadFashionMnistRaw(common);
  t.same([byEnv.origin, byEnv.source, byEnv.train.count], ['env', envDir, 1], 'env var next');

  delete process.env.FASHION_MNIST_DIR;
  const byKeras = await loadFashionMnistRaw(common);
  t.same([byKeras.origin, byKeras.source, byKeras.train.count], ['keras', kerasDir, 2], 'then ~/.keras/datasets/fashion-mnist');

  rmSync(kerasDir, { recursive: true });
  const bySys = await loadFashionMnistRaw(common);
  t.same([bySys.origin, bySys.source, bySys.train.count], ['system', sysDir, 3], 'then the system (Debian) dir');

  rmSync(sysDir, { recursive: true });
  const byCache = await loadFashionMnistRaw(common);
  t.same([byCache.origin, byCache.source, byCache.train.count], ['cache', cacheDir, 4], 'then the download cache');

  rmSync(cacheDir, { recursive: true });
  const err = await rejectsWith(t, loadFashionMnistRaw(common), DatasetError, 'not-found');
  const msg = err?.message ?? '';
  mentions(
    t,
    msg,
    'Fashion-MNIST not found',
    '$FASHION_MNIST_DIR: not set',
    `${kerasDir}: does not exist`,
    `${sysDir}: does not exist`,
    `${cacheDir}: does not exist`,
    'download: false',
    'apt-get install dataset-fashion-mnist',
    'set FASHION_MNIST_DIR',
    '~/.keras/datasets/fashion-mnist/',
  );
  // Every place is a numbered line, in search order.
  const order = [1, 2, 3, 4, 5].map((i) => msg.indexOf(`\n  ${i}. `));
  t.ok(
    order.every((p, i) => p > 0 && (i === 0 || p > order[i - 1])),
    'five numbered places, in order',
  );
  t.ok(msg.indexOf('FASHION_MNIST_DIR: not set') < msg.indexOf(kerasDir), 'env listed before Keras');
  t.ok(msg.indexOf(kerasDir) < msg.indexOf(sysDir) && msg.indexOf(sysDir) < msg.indexOf(cacheDir), 'Keras, system, cache order');
});

t.test('an explicit dir must hold the files; nothing else is tried', async (t) => {
  process.env.FASHION_MNIST_DIR = writeDataset(freshDir('env-ok'), synthetic(1, 1));
  t.teardown(() => void delete process.env.FASHION_MNIST_DIR);
  const partial = writeDataset(freshDir('partial'), synthetic(1, 1), { skip: ['t10k-images-idx3-ubyte'] });
  const err = await rejectsWith(t, loadFashionMnistRaw({ dir: partial, verify: false, download: false }), DatasetError, 'not-found');
  mentions(t, err?.message ?? '', partial, 'has 3 of the 4 files', 'missing t10k-images-idx3-ubyte(.gz)');
  t.notOk((err?.message ?? '').includes('env-ok'), 'the env dir was not consulted');

  const nowhere = join(root, 'no-such-dir');
  const err2 = await rejectsWith(t, loadFashionMnistRaw({ dir: nowhere, verify: false }), DatasetError, 'not-found');
  mentions(t, err2?.message ?? '', nowhere, 'does not exist');
});

t.test('incomplete directories are passed over and reported; empty env counts as unset', async (t) => {
  const envDir = writeDataset(freshDir('env-partial'), synthetic(1, 1), { skip: ['t10k-labels-idx1-ubyte'] });
  const sysDir = writeDataset(freshDir('sys-full'), synthetic(7, 3));
  process.env.FASHION_MNIST_DIR = envDir;
  t.teardown(() => void delete process.env.FASHION_MNIST_DIR);
  const cacheDir = join(root, 'unused-cache');

  const ds = await loadFashionMnistRaw({ verify: false, download: false, systemDirs: [sysDir], cacheDir });
  t.same([ds.origin, ds.train.count, ds.test.count], ['system', 7, 3], 'fell through the partial env dir');

  rmSync(sysDir, { recursive: true });
  const err = await rejectsWith(t, loadFashionMnistRaw({ verify: false, download: false, systemDirs: [sysDir], cacheDir }), DatasetError);
  mentions(t, err?.message ?? '', `$FASHION_MNIST_DIR ${envDir}: has 3 of the 4 files, missing t10k-labels-idx1-ubyte(.gz)`);

  process.env.FASHION_MNIST_DIR = '';
  const err2 = await rejectsWith(t, loadFashionMnistRaw({ verify: false, download: false, systemDirs: [], cacheDir }), DatasetError);
  mentions(t, err2?.message ?? '', '$FASHION_MNIST_DIR: not set');
});

t.test('MNIST has its own env var and Keras dir, and no apt hint', async (t) => {
  process.env.FASHION_MNIST_DIR = writeDataset(freshDir('fashion-env'), synthetic(1, 1));
  const mnistEnv = writeDataset(freshDir('mnist-env'), synthetic(2, 2));
  process.env.MNIST_DIR = mnistEnv;
  t.teardown(() => {
    delete process.env.FASHION_MNIST_DIR;
    delete process.env.MNIST_DIR;
  });
  const cacheDir = join(root, 'mnist-cache');
  const a = await loadMnistRaw({ verify: false, download: false, cacheDir });
  t.same([a.origin, a.source, a.train.count], ['env', mnistEnv, 2]);

  delete process.env.MNIST_DIR;
  const kerasMnist = writeDataset(join(home, '.keras', 'datasets', 'mnist'), synthetic(3, 2));
  const b = await loadMnistRaw({ verify: false, download: false, cacheDir });
  t.same([b.origin, b.source, b.train.count], ['keras', kerasMnist, 3]);

  rmSync(kerasMnist, { recursive: true });
  const err = await rejectsWith(t, loadMnistRaw({ verify: false, download: false, cacheDir }), DatasetError, 'not-found');
  const msg = err?.message ?? '';
  mentions(t, msg, 'MNIST not found', '$MNIST_DIR: not set', join(home, '.keras', 'datasets', 'mnist'), cacheDir, 'set MNIST_DIR');
  t.notOk(msg.includes('apt-get'), 'no Debian package to suggest for MNIST');
  t.notOk(msg.includes('FASHION'), 'the Fashion-MNIST env var is not MNIST');
});

t.test('plain and gzipped files mix; when both exist the plain one is read', async (t) => {
  const files = synthetic(3, 2);
  const mixed = writeDataset(freshDir('mixed'), files, { gzip: (f) => f.includes('images') });
  const ds = await loadFashionMnistRaw({ dir: mixed, verify: false });
  t.equal(ds.train.count, 3);
  // Independent expectation: the generator's formula, not the loader's output.
  t.same([...ds.train.images.subarray(0, 5)], [1, 8, 15, 22, 29]);
  t.same([...ds.test.labels], [0, 1]);
  t.equal(ds.train.images.length, 3 * 784);

  const both = writeDataset(freshDir('both'), synthetic(4, 1), { gzip: false });
  writeDataset(both, synthetic(6, 1), { gzip: true });
  const b = await loadFashionMnistRaw({ dir: both, verify: false });
  t.equal(b.train.count, 4, 'plain wins over .gz');
});

t.test('the sync loader finds the same data and explains that it cannot download', async (t) => {
  const dir = writeDataset(freshDir('sync'), synthetic(2, 1));
  const s = loadFashionMnistRawSync({ dir, verify: false });
  const a = await loadFashionMnistRaw({ dir, verify: false });
  t.same(s, a);
  const err = await rejectsWith(
    t,
    () => loadFashionMnistRawSync({ verify: false, systemDirs: [], cacheDir: join(root, 'sync-cache') }),
    DatasetError,
    'not-found',
  );
  mentions(t, err?.message ?? '', 'cannot download', 'await the async loader');
});

// ------------------------------------------------------------------ validation

t.test('images and labels of the wrong layout are rejected with the file and the numbers', async (t) => {
  const base = synthetic(5, 2);
  const variant = (over: Partial<Record<MnistLikeFile, Uint8Array>>) => writeDataset(freshDir('bad'), { ...base, ...over });

  const wrongSize = variant({
    'train-images-idx3-ubyte': encodeIdx({ dtype: 'uint8', shape: [5, 27, 28], data: new Uint8Array(5 * 27 * 28) }),
  });
  const e1 = await rejectsWith(t, loadFashionMnistRaw({ dir: wrongSize, verify: false }), DatasetError, 'bad-shape');
  mentions(t, e1?.message ?? '', join(wrongSize, 'train-images-idx3-ubyte.gz'), '(N, 28, 28)', '(5, 27, 28)');

  const wrongType = variant({ 't10k-images-idx3-ubyte': encodeIdx({ dtype: 'int16', shape: [2, 28, 28], data: new Int16Array(2 * 784) }) });
  const e2 = await rejectsWith(t, loadFashionMnistRaw({ dir: wrongType, verify: false }), DatasetError, 'bad-shape');
  mentions(t, e2?.message ?? '', 't10k-images-idx3-ubyte.gz', 'uint8', 'int16');

  const labels2d = variant({ 'train-labels-idx1-ubyte': encodeIdx({ dtype: 'uint8', shape: [5, 1], data: new Uint8Array(5) }) });
  const e3 = await rejectsWith(t, loadFashionMnistRaw({ dir: labels2d, verify: false }), DatasetError, 'bad-shape');
  mentions(t, e3?.message ?? '', 'train-labels-idx1-ubyte.gz', '(N,)', '(5, 1)');

  const badLabel = variant({ 'train-labels-idx1-ubyte': encodeIdx({ dtype: 'uint8', shape: [5], data: Uint8Array.of(0, 1, 2, 10, 200) }) });
  const e4 = await rejectsWith(t, loadFashionMnistRaw({ dir: badLabel, verify: false }), DatasetError, 'bad-label');
  mentions(t, e4?.message ?? '', 'train-labels-idx1-ubyte.gz', '2 of 5', 'below 10', '10 at index 3');

  const fewer = variant({ 't10k-labels-idx1-ubyte': encodeIdx({ dtype: 'uint8', shape: [3], data: new Uint8Array(3) }) });
  const e5 = await rejectsWith(t, loadFashionMnistRaw({ dir: fewer, verify: false }), DatasetError, 'count-mismatch');
  mentions(
    t,
    e5?.message ?? '',
    join(fewer, 't10k-images-idx3-ubyte.gz'),
    join(fewer, 't10k-labels-idx1-ubyte.gz'),
    '2 images',
    '3 labels',
  );

  const truncated = variant({ 'train-labels-idx1-ubyte': base['train-labels-idx1-ubyte'].subarray(0, 10) });
  const e6 = await rejectsWith(t, loadFashionMnistRaw({ dir: truncated, verify: false }), IdxFormatError);
  mentions(t, e6?.message ?? '', join(truncated, 'train-labels-idx1-ubyte.gz'), 'needs 5 bytes', 'got 2');
});

t.test('by default each file must have the published content hash, whatever its gzip wrapper', async (t) => {
  const files = synthetic(2, 1);
  const expectedActual = sha256(files['train-images-idx3-ubyte']);
  for (const gzip of [true, false]) {
    const dir = writeDataset(freshDir(`verify-${gzip}`), files, { gzip });
    const err = await rejectsWith(t, loadFashionMnistRaw({ dir }), ChecksumError, 'checksum');
    const name = gzip ? 'train-images-idx3-ubyte.gz' : 'train-images-idx3-ubyte';
    t.equal(err?.file, join(dir, name));
    t.equal(err?.expected, FASHION_MNIST.hashes['train-images-idx3-ubyte'].content);
    t.equal(err?.actual, expectedActual, 'hash of the decompressed bytes, not of the .gz');
    mentions(
      t,
      err?.message ?? '',
      join(dir, name),
      FASHION_MNIST.hashes['train-images-idx3-ubyte'].content,
      expectedActual,
      'verify: false',
    );
  }
});

t.test('normalizeImages divides by 255 in float32', async (t) => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const x = normalizeImages(all);
  t.ok(x instanceof Float32Array);
  t.equal(x.length, 256);
  t.equal(x[0], 0);
  t.equal(x[255], 1);
  t.equal(x[51], Math.fround(0.2));
  // 1/255 rounded to float32, a constant computed outside this code.
  t.equal(x[1], 0.003921568859368563);
  let worst = 0;
  for (let i = 0; i < 256; i++) worst = Math.max(worst, Math.abs(x[i] - i / 255) / Math.max(i / 255, 1e-30));
  t.ok(worst <= 2 ** -24, `within half a float32 ulp of the exact quotient (worst ${worst})`);
  t.same([...normalizeImages(Uint8Array.of(255, 0, 0))], [1, 0, 0], 'keeps order and length');
});

// ------------------------------------------------------------------ download

/** A spec like Fashion-MNIST's but with the hashes of synthetic files, served by a fake fetch. */
function syntheticServer(nTrain: number, nTest: number) {
  const plain = synthetic(nTrain, nTest);
  const baseUrl = 'https://datasets.example.invalid/synthetic/';
  const served = new Map<string, Uint8Array>();
  const hashes = {} as Record<MnistLikeFile, { archive: string; content: string }>;
  for (const f of MNIST_LIKE_FILES) {
    const gz = gzipSync(plain[f]);
    served.set(`${baseUrl}${f}.gz`, gz);
    hashes[f] = { archive: sha256(gz), content: sha256(plain[f]) };
  }
  const spec: MnistLikeSpec = {
    ...FASHION_MNIST,
    name: 'synthetic',
    title: 'Synthetic',
    envVar: 'SPIKETRACE_TEST_SYNTHETIC_DIR',
    kerasDir: 'synthetic',
    systemDirs: [],
    baseUrl,
    hashes,
  };
  const calls: string[] = [];
  let beforeEach: ((url: string) => void) | undefined;
  const override = new Map<string, Uint8Array | 'network-error'>();
  const fetchImpl: FetchLike = async (url) => {
    calls.push(url);
    beforeEach?.(url);
    const o = override.get(url);
    if (o === 'network-error') {
      throw new TypeError('fetch failed', {
        cause: Object.assign(new Error('getaddrinfo ENOTFOUND datasets.example.invalid'), { code: 'ENOTFOUND' }),
      });
    }
    const body = o ?? served.get(url);
    if (body === undefined) return { ok: false, status: 404, statusText: 'Not Found', arrayBuffer: async () => new ArrayBuffer(0) };
    // Copy into a fresh ArrayBuffer: a Buffer from zlib is a view of a larger pooled one.
    return { ok: true, status: 200, arrayBuffer: async () => new Uint8Array(body).buffer as ArrayBuffer };
  };
  return {
    spec,
    served,
    calls,
    override,
    fetchImpl,
    onFetch: (f: (url: string) => void) => void (beforeEach = f),
  };
}

const listDir = (d: string): string[] => {
  try {
    return readdirSync(d).sort();
  } catch {
    return [];
  }
};

t.test('download: verified files land whole in the cache and are loaded; a second load reuses them', async (t) => {
  const srv = syntheticServer(3, 2);
  const cacheDir = join(freshDir('dl'), 'nested', 'cache');
  // At every fetch, what is already in the cache must be complete and final:
  // no temp files, and every file byte-identical to what was served.
  const snapshots: string[][] = [];
  srv.onFetch(() => {
    const names = listDir(cacheDir);
    snapshots.push(names);
    for (const n of names) {
      t.notOk(n.startsWith('.'), `no temp file visible between downloads (${n})`);
      t.same(readFileSync(join(cacheDir, n)), srv.served.get(srv.spec.baseUrl + n), `${n} complete`);
    }
  });
  const ds = await loadMnistLikeRaw(srv.spec, { cacheDir, fetchImpl: srv.fetchImpl });
  t.same([ds.origin, ds.source, ds.train.count, ds.test.count], ['download', cacheDir, 3, 2]);
  t.same(
    srv.calls,
    MNIST_LIKE_FILES.map((f) => `${srv.spec.baseUrl}${f}.gz`),
    'fetched each file once, from baseUrl',
  );
  t.same(
    snapshots.map((s) => s.length),
    [0, 1, 2, 3],
    'files appear one by one',
  );
  t.same(listDir(cacheDir), MNIST_LIKE_FILES.map((f) => `${f}.gz`).sort(), 'only the four files, no leftovers');
  t.same([...ds.train.labels], [0, 1, 2]);

  srv.calls.length = 0;
  const again = await loadMnistLikeRaw(srv.spec, { cacheDir, fetchImpl: srv.fetchImpl });
  t.same([again.origin, srv.calls.length], ['cache', 0], 'second load comes from the cache without fetching');
});

t.test('download: only the files missing from the cache are fetched', async (t) => {
  const srv = syntheticServer(2, 2);
  const cacheDir = freshDir('dl-partial');
  writeFileSync(join(cacheDir, 'train-images-idx3-ubyte.gz'), srv.served.get(`${srv.spec.baseUrl}train-images-idx3-ubyte.gz`)!);
  writeFileSync(join(cacheDir, 't10k-labels-idx1-ubyte'), synthetic(2, 2)['t10k-labels-idx1-ubyte']);
  const ds = await loadMnistLikeRaw(srv.spec, { cacheDir, fetchImpl: srv.fetchImpl });
  t.equal(ds.origin, 'download');
  t.same(srv.calls, [`${srv.spec.baseUrl}train-labels-idx1-ubyte.gz`, `${srv.spec.baseUrl}t10k-images-idx3-ubyte.gz`]);
});

t.test('download: wrong bytes give a checksum error naming the file and both hashes, and write nothing', async (t) => {
  const srv = syntheticServer(2, 1);
  const cacheDir = join(freshDir('dl-bad'), 'cache');
  const url = `${srv.spec.baseUrl}train-images-idx3-ubyte.gz`;
  const wrong = gzipSync(synthetic(2, 1)['t10k-images-idx3-ubyte']);
  srv.override.set(url, wrong);
  const err = await rejectsWith(t, loadMnistLikeRaw(srv.spec, { cacheDir, fetchImpl: srv.fetchImpl }), ChecksumError, 'checksum');
  t.equal(err?.file, url);
  t.equal(err?.expected, srv.spec.hashes['train-images-idx3-ubyte'].archive);
  t.equal(err?.actual, sha256(wrong));
  mentions(t, err?.message ?? '', url, srv.spec.hashes['train-images-idx3-ubyte'].archive, sha256(wrong), 'Nothing was written');
  t.same(listDir(cacheDir), [], 'nothing in the cache, not even a temp file');

  // The same failure on the third file keeps the two verified ones.
  srv.override.clear();
  srv.override.set(`${srv.spec.baseUrl}t10k-images-idx3-ubyte.gz`, wrong.subarray(0, 20));
  await rejectsWith(t, loadMnistLikeRaw(srv.spec, { cacheDir, fetchImpl: srv.fetchImpl }), ChecksumError);
  t.same(listDir(cacheDir), ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz']);
});

t.test('download failures end in a not-found error that lists every place and the cause', async (t) => {
  const srv = syntheticServer(1, 1);
  const cacheDir = freshDir('dl-fail');
  srv.override.set(`${srv.spec.baseUrl}train-images-idx3-ubyte.gz`, 'network-error');
  const err = await rejectsWith(t, loadMnistLikeRaw(srv.spec, { cacheDir, fetchImpl: srv.fetchImpl }), DatasetError, 'not-found');
  const msg = err?.message ?? '';
  mentions(
    t,
    msg,
    'Synthetic not found',
    '$SPIKETRACE_TEST_SYNTHETIC_DIR: not set',
    join(home, '.keras', 'datasets', 'synthetic'),
    `${cacheDir}: has 0 of the 4 files`,
    `download from ${srv.spec.baseUrl} into ${cacheDir}: failed: fetch failed (ENOTFOUND: getaddrinfo ENOTFOUND`,
    'apt-get install dataset-fashion-mnist',
  );
  t.ok(err?.cause instanceof TypeError, 'keeps the fetch error as cause');

  srv.served.delete(`${srv.spec.baseUrl}train-images-idx3-ubyte.gz`);
  srv.override.clear();
  const err404 = await rejectsWith(t, loadMnistLikeRaw(srv.spec, { cacheDir, fetchImpl: srv.fetchImpl }), DatasetError, 'not-found');
  mentions(t, err404?.message ?? '', `HTTP 404 Not Found for ${srv.spec.baseUrl}train-images-idx3-ubyte.gz`);
  t.same(listDir(cacheDir), [], 'nothing written');
});

t.test('download: a failed write leaves no temp file behind', async (t) => {
  const srv = syntheticServer(1, 1);
  const cacheDir = freshDir('dl-rename');
  // A non-empty directory where the first file should go makes the rename fail.
  mkdirSync(join(cacheDir, 'train-images-idx3-ubyte.gz', 'blocker'), { recursive: true });
  const err = await rejectsWith(t, loadMnistLikeRaw(srv.spec, { cacheDir, fetchImpl: srv.fetchImpl }), DatasetError, 'not-found');
  mentions(t, err?.message ?? '', 'failed:');
  t.same(listDir(cacheDir), ['train-images-idx3-ubyte.gz'], 'only the blocking directory; the temp file was removed');
});

t.test('download: false never fetches', async (t) => {
  const srv = syntheticServer(1, 1);
  const err = await rejectsWith(
    t,
    loadMnistLikeRaw(srv.spec, { cacheDir: freshDir('nodl'), fetchImpl: srv.fetchImpl, download: false }),
    DatasetError,
    'not-found',
  );
  mentions(t, err?.message ?? '', 'not tried (download: false)');
  t.equal(srv.calls.length, 0);
});
