/**
 * The part shared by every dataset laid out like MNIST: four IDX files
 * (train/test x images/labels) of 28x28 uint8 images and uint8 labels.
 *
 * {@link loadMnistLikeRaw} finds the files, downloading them if it must,
 * and checks them; the dataset modules (`fashion-mnist.ts`) only supply a
 * {@link MnistLikeSpec}: names, places and published hashes.
 *
 * Where the files are looked for, in order (the first directory that holds
 * all four files wins; a directory that holds some of them is passed over
 * and reported if nothing is found):
 *
 * 1. `options.dir`, if given; it must hold the files, nothing else is tried;
 * 2. the directory named by the dataset's environment variable;
 * 3. Keras' cache, `~/.keras/datasets/<kerasDir>/`;
 * 4. system directories, e.g. Debian's `/usr/share/datasets/fashion-mnist/`;
 * 5. the download cache (`options.cacheDir`, default
 *    `~/.cache/spiketrace/datasets/<name>/`), which is filled from the
 *    official URLs unless `download: false`.
 *
 * Each file may be plain or gzipped (`<name>` or `<name>.gz`); when both are
 * present the plain one is read, as it needs no inflating.
 *
 * Why two kinds of hash: a download is checked against the sha256 of the
 * published `.gz` archive before it is written. Files found on disk are
 * checked against the sha256 of their *decompressed* content instead,
 * because distributors legitimately rewrite the gzip wrapper: Debian's
 * `dataset-fashion-mnist` ships the same deflate streams as Zalando but with
 * the gzip file name dropped and the timestamp reset, so its `.gz` files have
 * other sha256s while holding identical bytes.
 */
import type * as CryptoModule from 'node:crypto';
import type * as FsModule from 'node:fs';
import type * as FsPromisesModule from 'node:fs/promises';
import type * as OsModule from 'node:os';
import type * as PathModule from 'node:path';
import { requireNodeBuiltin } from '../../core/node-builtin.js';

// Node built-ins are looked up when a loader runs, so that importing the data module (tileTime,
// poissonEncode, the IDX parser) works in a browser; the file loaders need Node.
const CALLER = 'spiketrace data loader';
const fs = () => requireNodeBuiltin<typeof FsModule>('node:fs', CALLER);
const fsp = () => requireNodeBuiltin<typeof FsPromisesModule>('node:fs/promises', CALLER);
const path = () => requireNodeBuiltin<typeof PathModule>('node:path', CALLER);
const readFileSync = (p: string): Uint8Array => fs().readFileSync(p);
const statSync = (p: string): FsModule.Stats => fs().statSync(p);
const open = (p: string, flags: string, mode?: number): Promise<FsPromisesModule.FileHandle> => fsp().open(p, flags, mode);
const rename = (from: string, to: string): Promise<void> => fsp().rename(from, to);
const rm = (p: string, options: { force: boolean }): Promise<void> => fsp().rm(p, options);
const mkdir = (p: string, options: { recursive: true }): Promise<string | undefined> => fsp().mkdir(p, options);
const homedir = (): string => requireNodeBuiltin<typeof OsModule>('node:os', CALLER).homedir();
const join = (...parts: string[]): string => path().join(...parts);
const resolve = (...parts: string[]): string => path().resolve(...parts);
const createHash = (algorithm: string): CryptoModule.Hash =>
  requireNodeBuiltin<typeof CryptoModule>('node:crypto', CALLER).createHash(algorithm);
const randomBytes = (n: number): Uint8Array & { toString(encoding: 'hex'): string } =>
  requireNodeBuiltin<typeof CryptoModule>('node:crypto', CALLER).randomBytes(n);
import { ChecksumError, DatasetError } from './errors.js';
import { gunzipIfNeeded, parseIdx, type IdxArray } from './idx.js';

/** The four files of an MNIST-like dataset, without the optional `.gz`. */
export const MNIST_LIKE_FILES = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
] as const;

/** One of {@link MNIST_LIKE_FILES}. */
export type MnistLikeFile = (typeof MNIST_LIKE_FILES)[number];

/** Published sha256s of one file, lowercase hex. */
export interface FileHashes {
  /** Of the official `<file>.gz` as served by {@link MnistLikeSpec.baseUrl}. */
  readonly archive: string;
  /** Of the decompressed IDX bytes: the same for every faithful copy, gzipped or not. */
  readonly content: string;
}

/** A system directory where a package manager installs the files. */
export interface SystemDir {
  readonly dir: string;
  /** How to name it in messages, e.g. "Debian package dataset-fashion-mnist". */
  readonly label: string;
}

/** Everything that differs between MNIST-like datasets. */
export interface MnistLikeSpec {
  /** Directory name in the download cache, e.g. `fashion-mnist`. */
  readonly name: string;
  /** Human name for messages, e.g. `Fashion-MNIST`. */
  readonly title: string;
  /** Environment variable naming a directory with the files, e.g. `FASHION_MNIST_DIR`. */
  readonly envVar: string;
  /** Subdirectory of `~/.keras/datasets/` to look in. */
  readonly kerasDir: string;
  /** Package-manager directories, in the order to try. */
  readonly systemDirs: readonly SystemDir[];
  /** URL prefix; a file is fetched from `baseUrl + file + '.gz'`. */
  readonly baseUrl: string;
  /** Published hashes of each file. */
  readonly hashes: Readonly<Record<MnistLikeFile, FileHashes>>;
  /** Lines telling a user how to get the files, shown when they are not found. */
  readonly installHints: readonly string[];
  /** Number of classes: every label must be below it. */
  readonly numClasses: number;
  /** Image height and width. */
  readonly imageShape: readonly [number, number];
}

/** The part of a fetch `Response` the loader uses. */
export interface FetchResponseLike {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText?: string;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** The part of `fetch` the loader uses; the global `fetch` is one. */
export type FetchLike = (url: string, init?: { signal?: AbortSignal }) => Promise<FetchResponseLike>;

/** Options of the raw loaders. */
export interface LoadRawOptions {
  /** Read the files from this directory and nowhere else; an error if it lacks any. */
  readonly dir?: string;
  /** Fetch missing files into the cache when no directory has them. Default `true`. */
  readonly download?: boolean;
  /** Download cache; default `~/.cache/spiketrace/datasets/<name>/`. The files go directly in it. */
  readonly cacheDir?: string;
  /** Replaces the global `fetch`, e.g. in tests or behind a proxy agent. */
  readonly fetchImpl?: FetchLike;
  /**
   * Check each file's decompressed content against the published sha256.
   * Default `true`; pass `false` to load other files of the same layout (a
   * subset, a re-labelled copy). Downloads are checked whatever this says.
   */
  readonly verify?: boolean;
  /** Replaces the dataset's system directories (step 4 of the search); mostly for tests. */
  readonly systemDirs?: readonly string[];
  /** Give up on one file's download after this many milliseconds. Default 10 minutes. */
  readonly downloadTimeoutMs?: number;
}

/** One split: `count` images of `imageShape`, row-major, and their labels. */
export interface RawSplit {
  /** `count * height * width` pixels, image after image, each row-major. */
  readonly images: Uint8Array;
  /** `count` class indices. */
  readonly labels: Uint8Array;
  readonly count: number;
}

/** Which step of the search supplied the files. */
export type RawOrigin = 'dir' | 'env' | 'keras' | 'system' | 'cache' | 'download';

/** A loaded dataset. */
export interface RawDataset {
  readonly train: RawSplit;
  readonly test: RawSplit;
  /** The directory the files were read from (absolute). */
  readonly source: string;
  /** Which step of the search found it. */
  readonly origin: RawOrigin;
}

const DEFAULT_DOWNLOAD_TIMEOUT_MS = 10 * 60 * 1000;

interface Probe {
  readonly dir: string;
  /** Path chosen for each file that exists. */
  readonly paths: Partial<Record<MnistLikeFile, string>>;
  readonly missing: MnistLikeFile[];
  /** Why the directory does not do, or `undefined` if it holds all four files. */
  readonly problem: string | undefined;
}

interface Place {
  readonly origin: RawOrigin;
  readonly label: string;
  readonly dir: string | undefined;
  /** Said instead of probing when `dir` is undefined. */
  readonly note?: string;
}

/**
 * Loads an MNIST-like dataset described by `spec`; see the module comment
 * for where it looks. The dataset modules wrap this with their spec.
 *
 * @example
 * ```ts
 * const ds = await loadMnistLikeRaw(FASHION_MNIST, { download: false });
 * ds.train.count; // 60000
 * ```
 *
 * @throws DatasetError `not-found` listing every place looked and how to get
 *   the files; `bad-shape`, `bad-label`, `count-mismatch` for files of the
 *   wrong layout; ChecksumError for files (or downloads) that are not the
 *   published bytes; IdxFormatError for files that are not valid IDX.
 */
export async function loadMnistLikeRaw(spec: MnistLikeSpec, options: LoadRawOptions = {}): Promise<RawDataset> {
  const search = searchLocal(spec, options);
  if (search.found !== undefined) return search.found;
  const { looked, cacheDir, cacheMissing } = search;

  if (options.download === false) {
    looked.push(`download from ${spec.baseUrl}: not tried (download: false)`);
    throw notFound(spec, looked);
  }
  const fetchImpl = options.fetchImpl ?? defaultFetch();
  try {
    for (const file of cacheMissing) {
      await downloadOne(spec, file, cacheDir, fetchImpl, options.downloadTimeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS);
    }
  } catch (err) {
    // A checksum mismatch is a fact about the bytes that came back, not
    // about where the data might be: report it as itself.
    if (err instanceof DatasetError) throw err;
    looked.push(`download from ${spec.baseUrl} into ${cacheDir}: failed: ${describeError(err)}`);
    throw notFound(spec, looked, err);
  }
  const probe = probeDir(cacheDir);
  if (probe.problem !== undefined) {
    // Only reachable if something removed the files between the write and this read.
    looked.push(`download cache ${cacheDir} after download: ${probe.problem}`);
    throw notFound(spec, looked);
  }
  return readDataset(spec, probe, 'download', options.verify ?? true);
}

/**
 * The synchronous twin of {@link loadMnistLikeRaw} for data already on disk:
 * the same search and checks, but it never downloads (Node has no
 * synchronous fetch). When nothing is found, the error lists the places
 * looked and says to call the async loader to download.
 *
 * @example
 * ```ts
 * const ds = loadMnistLikeRawSync(FASHION_MNIST);
 * ds.test.count; // 10000
 * ```
 *
 * @throws as {@link loadMnistLikeRaw}.
 */
export function loadMnistLikeRawSync(
  spec: MnistLikeSpec,
  options: Omit<LoadRawOptions, 'fetchImpl' | 'downloadTimeoutMs'> = {},
): RawDataset {
  const search = searchLocal(spec, options);
  if (search.found !== undefined) return search.found;
  search.looked.push(
    options.download === false
      ? `download from ${spec.baseUrl}: not tried (download: false)`
      : `download from ${spec.baseUrl}: not tried, the synchronous loader cannot download; await the async loader once to fill ${search.cacheDir}`,
  );
  throw notFound(spec, search.looked);
}

type SearchResult =
  | { readonly found: RawDataset }
  | { readonly found: undefined; readonly looked: string[]; readonly cacheDir: string; readonly cacheMissing: MnistLikeFile[] };

/** Steps 1-5 of the search, without downloading. */
function searchLocal(spec: MnistLikeSpec, options: LoadRawOptions): SearchResult {
  const verify = options.verify ?? true;
  if (options.dir !== undefined) {
    const probe = probeDir(resolve(options.dir));
    if (probe.problem !== undefined) {
      throw new DatasetError(
        'not-found',
        `${spec.title}: the directory given as \`dir\`, ${probe.dir}, ${probe.problem}. ` +
          `Expected the files ${MNIST_LIKE_FILES.map((f) => `${f}(.gz)`).join(', ')}.`,
      );
    }
    return { found: readDataset(spec, probe, 'dir', verify) };
  }

  const cacheDir = resolve(options.cacheDir ?? defaultCacheDir(spec));
  const envValue = process.env[spec.envVar];
  const places: Place[] = [
    envValue !== undefined && envValue !== ''
      ? { origin: 'env', label: `$${spec.envVar}`, dir: resolve(envValue) }
      : { origin: 'env', label: `$${spec.envVar}`, dir: undefined, note: 'not set' },
    { origin: 'keras', label: 'Keras cache', dir: join(homedir(), '.keras', 'datasets', spec.kerasDir) },
    ...(options.systemDirs !== undefined
      ? options.systemDirs.map((dir): Place => ({ origin: 'system', label: 'system directory', dir: resolve(dir) }))
      : spec.systemDirs.map((s): Place => ({ origin: 'system', label: s.label, dir: s.dir }))),
    { origin: 'cache', label: 'download cache', dir: cacheDir },
  ];

  const looked: string[] = [];
  let cacheMissing: MnistLikeFile[] = [...MNIST_LIKE_FILES];
  for (const place of places) {
    if (place.dir === undefined) {
      looked.push(`${place.label}: ${place.note ?? 'not set'}`);
      continue;
    }
    const probe = probeDir(place.dir);
    // The first complete directory wins, and a bad file in it is an error
    // rather than a reason to look further: silently falling back to another
    // copy would hide the problem from the user who put the files there.
    if (probe.problem === undefined) return { found: readDataset(spec, probe, place.origin, verify) };
    looked.push(`${place.label} ${place.dir}: ${probe.problem}`);
    if (place.origin === 'cache') cacheMissing = probe.missing;
  }
  return { found: undefined, looked, cacheDir, cacheMissing };
}

/**
 * `~/.cache/spiketrace/datasets/<name>`, the default download cache of a dataset.
 *
 * @example
 * ```ts
 * defaultCacheDir(FASHION_MNIST); // '/home/me/.cache/spiketrace/datasets/fashion-mnist'
 * ```
 */
export function defaultCacheDir(spec: Pick<MnistLikeSpec, 'name'>): string {
  return join(homedir(), '.cache', 'spiketrace', 'datasets', spec.name);
}

function notFound(spec: MnistLikeSpec, looked: string[], cause?: unknown): DatasetError {
  const lines = [
    `${spec.title} not found. Looked for ${MNIST_LIKE_FILES.map((f) => `${f}(.gz)`).join(', ')} in:`,
    ...looked.map((l, i) => `  ${i + 1}. ${l}`),
    `To get the data:`,
    ...spec.installHints.map((h) => `  - ${h}`),
  ];
  return new DatasetError('not-found', lines.join('\n'), cause === undefined ? undefined : { cause });
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function probeDir(dir: string): Probe {
  let problem: string | undefined;
  try {
    if (!statSync(dir).isDirectory()) problem = 'is not a directory';
  } catch {
    problem = 'does not exist';
  }
  const paths: Partial<Record<MnistLikeFile, string>> = {};
  const missing: MnistLikeFile[] = [];
  if (problem !== undefined) return { dir, paths, missing: [...MNIST_LIKE_FILES], problem };
  for (const file of MNIST_LIKE_FILES) {
    const plain = join(dir, file);
    const gz = `${plain}.gz`;
    if (isFile(plain)) paths[file] = plain;
    else if (isFile(gz)) paths[file] = gz;
    else missing.push(file);
  }
  if (missing.length > 0) {
    problem = `has ${MNIST_LIKE_FILES.length - missing.length} of the 4 files, missing ${missing.map((f) => `${f}(.gz)`).join(', ')}`;
  }
  return { dir, paths, missing, problem };
}

interface LoadedFile {
  readonly path: string;
  readonly idx: IdxArray;
  readonly contentSha256: string;
}

/** Examples per split in the published files (both MNIST and Fashion-MNIST). */
const PUBLISHED_COUNTS: Readonly<Record<MnistLikeFile, number>> = {
  'train-images-idx3-ubyte': 60000,
  'train-labels-idx1-ubyte': 60000,
  't10k-images-idx3-ubyte': 10000,
  't10k-labels-idx1-ubyte': 10000,
};

/**
 * The most element data `file` can hold: the published count of labels (one byte each) or images
 * (h * w bytes each) when the files are verified, so a gzip bomb named like a labels file stops
 * inflating past 60,000 bytes of data; the parser's generic cap when loading other files of
 * the same layout ({ verify: false }).
 */
function maxDataBytesOf(spec: MnistLikeSpec, file: MnistLikeFile, verify: boolean): number | undefined {
  if (!verify) return undefined;
  const perExample = file.includes('labels') ? 1 : spec.imageShape[0] * spec.imageShape[1];
  return PUBLISHED_COUNTS[file] * perExample;
}

/** Node's errors for a file that exists but cannot be read, named in words for the message. */
const UNREADABLE: Readonly<Record<string, string>> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory',
  EIO: 'I/O error',
  ENOENT: 'no longer exists',
  EMFILE: 'too many open files',
};

function readIdxFile(path: string, hash: boolean, maxDataBytes?: number): LoadedFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const why =
      typeof code === 'string' && UNREADABLE[code] !== undefined
        ? `${UNREADABLE[code]} (${code})`
        : err instanceof Error
          ? err.message
          : String(err);
    throw new DatasetError('unreadable', `${path}: cannot read the file: ${why}`, { cause: err });
  }
  // Inflate here rather than inside parseIdx so the content hash is taken
  // over the decompressed bytes, which do not depend on the gzip wrapper.
  const limits = maxDataBytes === undefined ? undefined : { maxDataBytes };
  const plain = gunzipIfNeeded(bytes, path, limits);
  const idx = parseIdx(plain, path, limits);
  const contentSha256 = hash ? sha256Hex(plain) : '';
  return { path, idx, contentSha256 };
}

function readDataset(spec: MnistLikeSpec, probe: Probe, origin: RawOrigin, verify: boolean): RawDataset {
  const path = (f: MnistLikeFile): string => probe.paths[f] as string;
  const files = {} as Record<MnistLikeFile, LoadedFile>;
  for (const f of MNIST_LIKE_FILES) files[f] = readIdxFile(path(f), verify, maxDataBytesOf(spec, f, verify));

  const train = makeSplit(spec, 'train', files['train-images-idx3-ubyte'], files['train-labels-idx1-ubyte']);
  const test = makeSplit(spec, 'test', files['t10k-images-idx3-ubyte'], files['t10k-labels-idx1-ubyte']);

  // Checked last: for a file of the wrong shape or a truncated one, the
  // structural message above says far more than "hash differs" would.
  if (verify) {
    for (const f of MNIST_LIKE_FILES) {
      const expected = spec.hashes[f].content;
      const actual = files[f].contentSha256;
      if (actual !== expected) {
        throw new ChecksumError(
          files[f].path,
          expected,
          actual,
          'decompressed content',
          `This is not the published ${spec.title} ${f}. Replace it with the official file ` +
            `(or delete it to have it downloaded), or pass { verify: false } to load it anyway.`,
        );
      }
    }
  }
  return { train, test, source: probe.dir, origin };
}

function makeSplit(spec: MnistLikeSpec, split: string, images: LoadedFile, labels: LoadedFile): RawSplit {
  const [h, w] = spec.imageShape;
  const im = images.idx;
  if (im.dtype !== 'uint8' || im.shape.length !== 3 || im.shape[1] !== h || im.shape[2] !== w) {
    throw new DatasetError(
      'bad-shape',
      `${images.path}: ${split} images must be uint8 of shape (N, ${h}, ${w}), got ${im.dtype} of shape (${im.shape.join(', ')})`,
    );
  }
  const lb = labels.idx;
  if (lb.dtype !== 'uint8' || lb.shape.length !== 1) {
    throw new DatasetError(
      'bad-shape',
      `${labels.path}: ${split} labels must be uint8 of shape (N,), got ${lb.dtype} of shape (${lb.shape.join(', ')})`,
    );
  }
  const n = im.shape[0];
  if (lb.shape[0] !== n) {
    throw new DatasetError('count-mismatch', `${split} split: ${images.path} has ${n} images but ${labels.path} has ${lb.shape[0]} labels`);
  }
  const labelData = lb.data;
  let bad = 0;
  let first = -1;
  for (let i = 0; i < labelData.length; i++) {
    if (labelData[i] >= spec.numClasses) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad > 0) {
    throw new DatasetError(
      'bad-label',
      `${labels.path}: ${bad} of ${labelData.length} ${split} labels are not below ${spec.numClasses}; ` +
        `the first is ${labelData[first]} at index ${first}`,
    );
  }
  return { images: im.data, labels: labelData, count: n };
}

async function downloadOne(
  spec: MnistLikeSpec,
  file: MnistLikeFile,
  cacheDir: string,
  fetchImpl: FetchLike,
  timeoutMs: number,
): Promise<void> {
  const url = `${spec.baseUrl}${file}.gz`;
  const res = await fetchImpl(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''} for ${url}`);
  const body = new Uint8Array(await res.arrayBuffer());
  const expected = spec.hashes[file].archive;
  const actual = sha256Hex(body);
  if (actual !== expected) {
    throw new ChecksumError(
      url,
      expected,
      actual,
      `downloaded archive (${body.length} bytes)`,
      `Nothing was written to ${cacheDir}. The server sent other bytes than the published ${file}.gz ` +
        `(an error page from a proxy, a corrupted transfer, or a changed file); retry, or get the files another way: ` +
        spec.installHints.join('; '),
    );
  }
  await mkdir(cacheDir, { recursive: true });
  const final = join(cacheDir, `${file}.gz`);
  // Write under a unique name in the same directory, flush, then rename:
  // rename within a directory is atomic, so a reader (or a crash) sees
  // either no file or the whole verified one, never a partial download.
  const tmp = join(cacheDir, `.${file}.gz.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, final);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function defaultFetch(): FetchLike {
  const f = (globalThis as { fetch?: FetchLike }).fetch;
  if (f === undefined) {
    return () => Promise.reject(new Error('no global fetch in this runtime; pass options.fetchImpl'));
  }
  return f;
}

/**
 * Lowercase hex sha256 of `bytes`, the form the published hashes take.
 *
 * @example
 * ```ts
 * sha256Hex(new Uint8Array(0)); // 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
 * ```
 */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** An error's message plus its cause's, which is where Node's fetch puts the useful part (e.g. ENOTFOUND). */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return `${err.message} (${typeof code === 'string' ? `${code}: ` : ''}${cause.message})`;
  }
  return err.message;
}
