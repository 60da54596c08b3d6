/**
 * The raw dataset layer: IDX files and the MNIST-like datasets as plain typed
 * arrays, with no dependency on the rest of the library.
 */
export * from './errors.js';
export * from './idx.js';
export * from './mnist-like.js';
export {
  DEBIAN_FASHION_MNIST_DIR,
  FASHION_MNIST,
  FASHION_MNIST_CLASSES,
  MNIST,
  loadFashionMnistRaw,
  loadFashionMnistRawSync,
  loadMnistRaw,
  loadMnistRawSync,
  type LoadRawSyncOptions,
  normalizeImages,
} from './fashion-mnist.js';
