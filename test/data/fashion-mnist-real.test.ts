/**
 * The real Fashion-MNIST files, as Debian's `dataset-fashion-mnist` installs
 * them (or wherever FASHION_MNIST_DIR / the Keras cache points).
 *
 * Expected values come from outside this code:
 * - counts, 6000 per class in train and 1000 in test: the Fashion-MNIST paper
 *   and README;
 * - the first train labels 9 0 0 3 0 2 7 2 5 5 | 0 9 5 5 7 9 1 0 6 4: printed by
 *   TensorFlow's classification tutorial and many notebooks
 *   (`train_labels[:10]`, "Ankle boot" first);
 * - pixel mean 0.2860 (train) and 0.2868 (test) after /255: the normalisation
 *   constants commonly quoted for Fashion-MNIST;
 * - pixel sums, test labels, a row of the first image: computed with Python's
 *   gzip module straight from the files, not with this loader;
 * - Zalando's published MD5s of the official `.gz` files.
 *
 * When the data is absent the tests skip, except under CI (CI=true), where
 * scripts/setup.sh installs the Debian package and absence is a failure.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatasetError } from '../../data/raw/errors.js';
import {
  DEBIAN_FASHION_MNIST_DIR,
  FASHION_MNIST,
  FASHION_MNIST_CLASSES,
  loadFashionMnistRaw,
  loadFashionMnistRawSync,
  normalizeImages,
  type RawDataset,
} from '../../data/raw/fashion-mnist.js';
import { MNIST_LIKE_FILES, type FetchLike, type MnistLikeFile } from '../../data/raw/mnist-like.js';

let ds: RawDataset | undefined;
try {
  ds = loadFashionMnistRawSync({ download: false });
} catch (e) {
  if (!(e instanceof DatasetError && e.code === 'not-found')) throw e;
  if (process.env.CI) t.fail(`Fashion-MNIST must be installed under CI:\n${e.message}`);
  else t.comment(`skipping the real-data tests:\n${e.message}`);
}

const hex = (algo: string, b: Uint8Array): string => createHash(algo).update(b).digest('hex');

t.test('counts, labels and pixels match the published dataset', { skip: ds === undefined && 'Fashion-MNIST not installed' }, async (t) => {
  const { train, test } = ds!;
  t.comment(`loaded from ${ds!.source} (${ds!.origin})`);
  t.equal(train.count, 60000);
  t.equal(test.count, 10000);
  t.equal(train.images.length, 60000 * 28 * 28);
  t.equal(test.images.length, 10000 * 28 * 28);
  t.equal(train.labels.length, 60000);
  t.equal(test.labels.length, 10000);

  const perClass = (labels: Uint8Array) => {
    const c = new Array<number>(10).fill(0);
    for (const l of labels) c[l]++;
    return c;
  };
  t.same(perClass(train.labels), new Array(10).fill(6000), '6000 train images per class');
  t.same(perClass(test.labels), new Array(10).fill(1000), '1000 test images per class');

  t.same([...train.labels.subarray(0, 20)], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9, 1, 0, 6, 4]);
  t.equal(FASHION_MNIST_CLASSES[train.labels[0]], 'Ankle boot');
  t.same([...test.labels.subarray(0, 10)], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
  t.same([...train.labels.subarray(-5)], [5, 1, 3, 0, 5]);
  t.same([...test.labels.subarray(-5)], [9, 1, 8, 1, 5]);

  const range = (a: Uint8Array) => {
    let lo = 255;
    let hi = 0;
    for (let i = 0; i < a.length; i++) {
      if (a[i] < lo) lo = a[i];
      if (a[i] > hi) hi = a[i];
    }
    return [lo, hi];
  };
  t.same(range(train.images), [0, 255], 'train pixels span 0..255');
  t.same(range(test.images), [0, 255], 'test pixels span 0..255');

  const sum = (a: Uint8Array) => {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i];
    return s;
  };
  const trainSum = sum(train.images);
  t.equal(trainSum, 3431114169);
  t.equal(sum(test.images), 573469082);
  t.equal(sum(train.images.subarray(0, 784)), 76247, 'first train image');
  t.equal(sum(train.images.subarray(-784)), 16684, 'last train image');
  t.equal(sum(test.images.subarray(0, 784)), 33456, 'first test image');
  // Row 10 of the first image (row-major layout check: a wrong stride would not give this row).
  t.same(
    [...train.images.subarray(10 * 28, 11 * 28)],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 193, 228, 218, 213, 198, 180, 212, 210, 211, 213, 223, 220, 243, 202, 0],
  );

  // The quoted normalisation mean, from the integer sum (no 188 MB float copy needed for train)...
  t.equal(Number((trainSum / train.images.length / 255).toFixed(4)), 0.286, 'train mean 0.2860 after /255');
  // ...and through normalizeImages on the test split.
  const xt = normalizeImages(test.images);
  let s = 0;
  for (let i = 0; i < xt.length; i++) s += xt[i];
  t.equal(Number((s / xt.length).toFixed(4)), 0.2868, 'normalizeImages(test) mean 0.2868');
});

const debian = existsSync(DEBIAN_FASHION_MNIST_DIR) && MNIST_LIKE_FILES.every((f) => existsSync(join(DEBIAN_FASHION_MNIST_DIR, `${f}.gz`)));

// Zalando's README lists these MD5s for the official .gz files.
const ZALANDO_MD5: Record<MnistLikeFile, string> = {
  'train-images-idx3-ubyte': '8d4fb7e6c68d591d4c3dfef9ec88bf0d',
  'train-labels-idx1-ubyte': '25c81989df183df01b3e8a0aad5dffbe',
  't10k-images-idx3-ubyte': 'bef4ecab320f06d8554ea6380940ec79',
  't10k-labels-idx1-ubyte': 'bb300cfdad3c16e7a12a480ee83cd310',
};

/**
 * Rebuilds the official archive from Debian's: same deflate stream and
 * trailer, but the original gzip header (FNAME flag, the 2017 mtime, the
 * file name). Debian's build rewrote only the 10-byte header.
 */
const rebuilt = new Map<MnistLikeFile, Uint8Array>();
function officialFromDebian(file: MnistLikeFile): Uint8Array {
  const cachedCopy = rebuilt.get(file);
  if (cachedCopy !== undefined) return cachedCopy;
  const deb = readFileSync(join(DEBIAN_FASHION_MNIST_DIR, `${file}.gz`));
  if (deb[3] !== 0) throw new Error(`${file}.gz: expected Debian's header without optional fields, flags=${deb[3]}`);
  // mtimes found by searching for the one that reproduces the published sha256:
  // 2017-08-31 10:50:06 UTC for the train files, 10:50:27 for the test files.
  const mtime = file.startsWith('train') ? 1504176606 : 1504176627;
  const name = new TextEncoder().encode(`${file}\0`);
  const header = new Uint8Array(10);
  header.set([0x1f, 0x8b, 0x08, 0x08]);
  new DataView(header.buffer).setUint32(4, mtime, true);
  header[8] = 0; // XFL, as in Debian's copy
  header[9] = 3; // OS = Unix
  const out = new Uint8Array(10 + name.length + deb.length - 10);
  out.set(header);
  out.set(name, 10);
  out.set(deb.subarray(10), 10 + name.length);
  rebuilt.set(file, out);
  return out;
}

t.test(
  'Debian rewrites the gzip headers; the content and the official archives are recoverable',
  { skip: !debian && 'Debian package not installed' },
  async (t) => {
    for (const f of MNIST_LIKE_FILES) {
      const deb = readFileSync(join(DEBIAN_FASHION_MNIST_DIR, `${f}.gz`));
      t.not(hex('sha256', deb), FASHION_MNIST.hashes[f].archive, `${f}.gz: Debian's archive is not byte-identical to the official one`);
      const official = officialFromDebian(f);
      t.equal(hex('sha256', official), FASHION_MNIST.hashes[f].archive, `${f}.gz rebuilt: sha256 is Keras' published hash`);
      t.equal(hex('md5', official), ZALANDO_MD5[f], `${f}.gz rebuilt: MD5 is Zalando's published hash`);
    }
  },
);

t.test('the download path with the real archives and hashes', { skip: !debian && 'Debian package not installed' }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'spiketrace-fmnist-dl-'));
  const saved = { HOME: process.env.HOME, FASHION_MNIST_DIR: process.env.FASHION_MNIST_DIR };
  process.env.HOME = root; // no Keras cache
  delete process.env.FASHION_MNIST_DIR;
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(root, { recursive: true, force: true });
  });
  const served = new Map(MNIST_LIKE_FILES.map((f) => [`${FASHION_MNIST.baseUrl}${f}.gz`, officialFromDebian(f)]));
  const fetchImpl: FetchLike = async (url) => {
    const body = served.get(url);
    if (body === undefined) return { ok: false, status: 404, arrayBuffer: async () => new ArrayBuffer(0) };
    return { ok: true, status: 200, arrayBuffer: async () => body.slice().buffer };
  };
  const cacheDir = join(root, 'cache');
  const got = await loadFashionMnistRaw({ cacheDir, systemDirs: [], fetchImpl });
  t.equal(got.origin, 'download');
  t.equal(got.train.count, 60000);
  t.same([...got.train.labels.subarray(0, 10)], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
  t.same(readdirSync(cacheDir).sort(), MNIST_LIKE_FILES.map((f) => `${f}.gz`).sort());
  const cached = readFileSync(join(cacheDir, 'train-labels-idx1-ubyte.gz'));
  t.equal(hex('sha256', cached), FASHION_MNIST.hashes['train-labels-idx1-ubyte'].archive, 'cache holds the official archive');

  // Debian's own bytes, served as if they were the download, are rejected.
  const cacheDir2 = join(root, 'cache2');
  const debFetch: FetchLike = async (url) => {
    const f = url.slice(FASHION_MNIST.baseUrl.length);
    const body = new Uint8Array(readFileSync(join(DEBIAN_FASHION_MNIST_DIR, f)));
    return { ok: true, status: 200, arrayBuffer: async () => body.buffer };
  };
  await t.rejects(loadFashionMnistRaw({ cacheDir: cacheDir2, systemDirs: [], fetchImpl: debFetch }), {
    name: 'ChecksumError',
    code: 'checksum',
  });
  t.notOk(existsSync(cacheDir2), 'nothing written, not even the directory');
});
