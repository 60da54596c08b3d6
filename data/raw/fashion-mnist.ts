/**
 * Fashion-MNIST and MNIST as raw typed arrays.
 *
 * Both are four IDX files of 28x28 uint8 images and uint8 labels 0..9 (60000
 * train, 10000 test); the search, download and checks are shared, in
 * `mnist-like.ts`. This module holds what is particular to each: where they
 * are installed, where they are downloaded from, and their published hashes.
 *
 * Provenance of the hashes (lowercase hex sha256):
 *
 * - Fashion-MNIST archives: Keras' `fashion_mnist.FILE_HASHES`, equal to the
 *   values in TFDS-style checksum lists; the archives they describe also have
 *   Zalando's published MD5s (8d4fb7e6..., 25c81989..., bef4ecab...,
 *   bb300cfd...). Checked here by rebuilding those exact archives from
 *   Debian's package (see below): both sha256 and MD5 match.
 * - Fashion-MNIST content (decompressed): computed from Debian's
 *   `dataset-fashion-mnist` 0.0~git20200523.55506a9-1, whose deflate streams
 *   are byte-identical to the official archives' (only the gzip header
 *   differs: Debian's build dropped the stored file name and reset the
 *   timestamp, so its `.gz` files hash differently), and equal to published
 *   lists of the raw files' sha256.
 * - MNIST archives: the files under Google's `cvdf-datasets/mnist/` mirror
 *   (the one TensorFlow's tutorials and TFDS use; Keras itself only hosts
 *   `mnist.npz`), as listed by TFDS-derived checksum tables.
 * - MNIST content: published sha256 of the decompressed files, the same in
 *   many independent projects. No MNIST copy was available to recompute them.
 */
import { loadMnistLikeRaw, loadMnistLikeRawSync, type LoadRawOptions, type MnistLikeSpec, type RawDataset } from './mnist-like.js';

export type { LoadRawOptions, RawDataset, RawSplit, RawOrigin, FetchLike, FetchResponseLike } from './mnist-like.js';

/** Fashion-MNIST's class names, indexed by label. */
export const FASHION_MNIST_CLASSES = Object.freeze([
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const);

/** Where Debian's `dataset-fashion-mnist` package installs the four `.gz` files. */
export const DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

const FASHION_FILES = 'train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz';

/** Fashion-MNIST (Zalando Research, MIT licence). */
export const FASHION_MNIST: MnistLikeSpec = {
  name: 'fashion-mnist',
  title: 'Fashion-MNIST',
  envVar: 'FASHION_MNIST_DIR',
  kerasDir: 'fashion-mnist',
  systemDirs: [{ dir: DEBIAN_FASHION_MNIST_DIR, label: 'Debian package dataset-fashion-mnist' }],
  // Where keras.datasets.fashion_mnist.load_data() downloads from.
  baseUrl: 'https://storage.googleapis.com/tensorflow/tf-keras-datasets/',
  hashes: {
    'train-images-idx3-ubyte': {
      archive: '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
      content: 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
    },
    'train-labels-idx1-ubyte': {
      archive: 'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
      content: 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
    },
    't10k-images-idx3-ubyte': {
      archive: '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
      content: '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
    },
    't10k-labels-idx1-ubyte': {
      archive: '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
      content: '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
    },
  },
  installHints: [
    `on Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs ${DEBIAN_FASHION_MNIST_DIR}/)`,
    `or set FASHION_MNIST_DIR to a directory holding ${FASHION_FILES} (plain or gzipped)`,
    `or put those files in ~/.keras/datasets/fashion-mnist/ (where keras.datasets.fashion_mnist.load_data() caches them)`,
    `or run with network access and download enabled, to fetch them into the download cache`,
  ],
  numClasses: 10,
  imageShape: [28, 28],
};

/** MNIST handwritten digits (LeCun, Cortes, Burges; CC BY-SA 3.0). */
export const MNIST: MnistLikeSpec = {
  name: 'mnist',
  title: 'MNIST',
  envVar: 'MNIST_DIR',
  kerasDir: 'mnist',
  // No Debian package ships MNIST's IDX files (apt-cache search mnist finds
  // only dataset-fashion-mnist), so there is no system directory to try.
  systemDirs: [],
  baseUrl: 'https://storage.googleapis.com/cvdf-datasets/mnist/',
  hashes: {
    'train-images-idx3-ubyte': {
      archive: '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
      content: 'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db',
    },
    'train-labels-idx1-ubyte': {
      archive: '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
      content: '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5',
    },
    't10k-images-idx3-ubyte': {
      archive: '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
      content: '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7',
    },
    't10k-labels-idx1-ubyte': {
      archive: 'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
      content: 'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2',
    },
  },
  installHints: [
    `set MNIST_DIR to a directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (plain or .gz; torchvision's <root>/MNIST/raw/ is one)`,
    `or put those files in ~/.keras/datasets/mnist/ (note: Keras itself caches MNIST as mnist.npz, which this loader does not read)`,
    `or run with network access and download enabled, to fetch them into the download cache`,
  ],
  numClasses: 10,
  imageShape: [28, 28],
};

/**
 * Loads Fashion-MNIST: 60000 train and 10000 test images of 28x28 uint8
 * pixels, labels 0..9 (see {@link FASHION_MNIST_CLASSES}).
 *
 * Looks in `options.dir`, else `$FASHION_MNIST_DIR`, `~/.keras/datasets/fashion-mnist/`,
 * Debian's `/usr/share/datasets/fashion-mnist/`, and the download cache,
 * which it fills from Keras' mirror unless `download: false`. Every file's
 * content is checked against the published sha256 unless `verify: false`.
 *
 * @example
 * ```ts
 * const { train, test } = await loadFashionMnistRaw({ download: false });
 * const x = normalizeImages(train.images); // Float32Array, 60000*28*28 values in [0, 1]
 * FASHION_MNIST_CLASSES[train.labels[0]]; // 'Ankle boot'
 * ```
 *
 * @throws DatasetError `not-found` listing every place looked and how to
 *   install the data; ChecksumError, IdxFormatError or DatasetError for bad files.
 */
export function loadFashionMnistRaw(options?: LoadRawOptions): Promise<RawDataset> {
  return loadMnistLikeRaw(FASHION_MNIST, options);
}

/**
 * Loads MNIST: 60000 train and 10000 test images of 28x28 uint8 handwritten
 * digits, labels 0..9.
 *
 * Looks in `options.dir`, else `$MNIST_DIR`, `~/.keras/datasets/mnist/` and
 * the download cache, which it fills from Google's `cvdf-datasets` mirror
 * unless `download: false`.
 *
 * @example
 * ```ts
 * const { train } = await loadMnistRaw({ dir: '/data/mnist' });
 * train.count; // 60000
 * ```
 *
 * @throws DatasetError `not-found` listing every place looked; ChecksumError,
 *   IdxFormatError or DatasetError for bad files.
 */
export function loadMnistRaw(options?: LoadRawOptions): Promise<RawDataset> {
  return loadMnistLikeRaw(MNIST, options);
}

/** Options of the synchronous loaders: those of the async ones less the download machinery. */
export type LoadRawSyncOptions = Omit<LoadRawOptions, 'fetchImpl' | 'downloadTimeoutMs'>;

/**
 * {@link loadFashionMnistRaw} for data already on disk, synchronously: the
 * same search and checks, but it never downloads (Node has no synchronous
 * fetch); if nothing is found the error says to await the async loader once.
 *
 * @example
 * ```ts
 * const { train } = loadFashionMnistRawSync();
 * train.labels[0]; // 9, 'Ankle boot'
 * ```
 */
export function loadFashionMnistRawSync(options?: LoadRawSyncOptions): RawDataset {
  return loadMnistLikeRawSync(FASHION_MNIST, options);
}

/**
 * {@link loadMnistRaw} for data already on disk, synchronously; never downloads.
 *
 * @example
 * ```ts
 * const { test } = loadMnistRawSync({ dir: '/data/mnist' });
 * test.count; // 10000
 * ```
 */
export function loadMnistRawSync(options?: LoadRawSyncOptions): RawDataset {
  return loadMnistLikeRawSync(MNIST, options);
}

/**
 * Scales uint8 pixels to float32 in [0, 1] by dividing by 255, the usual
 * preprocessing (`x / 255.0` in Keras' and TensorFlow's tutorials).
 *
 * The quotient is computed in float64 and rounded once to float32; for
 * division that double rounding is exact, so the values equal numpy's
 * `x.astype(np.float32) / 255`.
 *
 * @example
 * ```ts
 * normalizeImages(Uint8Array.of(0, 51, 255)); // Float32Array [0, 0.2, 1]
 * ```
 */
export function normalizeImages(images: Uint8Array): Float32Array {
  // A 256-entry table: one division per possible value instead of per pixel.
  const table = new Float32Array(256);
  for (let v = 0; v < 256; v++) table[v] = v / 255;
  const out = new Float32Array(images.length);
  for (let i = 0; i < images.length; i++) out[i] = table[images[i]];
  return out;
}
