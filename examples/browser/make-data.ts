/**
 * Writes the demo's Fashion-MNIST subset (the first 2048 training and 512 test images with their
 * labels) as uncompressed IDX files into DIR, from the official files found by loadFashionMnistRaw
 * (FASHION_MNIST_DIR, Debian's /usr/share/datasets/fashion-mnist/, ...).
 * Run: tsx examples/browser/make-data.ts DIR
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeIdx, loadFashionMnistRaw } from '../../data/index.js';

export const TRAIN_SUBSET = 2048;
export const TEST_SUBSET = 512;

export async function makeDemoData(dir: string): Promise<string> {
  const raw = await loadFashionMnistRaw({});
  mkdirSync(dir, { recursive: true });
  const write = (name: string, bytes: Uint8Array): void => {
    writeFileSync(join(dir, `${name}.tmp`), bytes);
    renameSync(join(dir, `${name}.tmp`), join(dir, name));
  };
  for (const [split, n] of [
    ['train', TRAIN_SUBSET],
    ['test', TEST_SUBSET],
  ] as const) {
    const s = raw[split];
    write(`${split}-images.idx`, encodeIdx({ dtype: 'uint8', shape: [n, 28, 28], data: s.images.slice(0, n * 784) }));
    write(`${split}-labels.idx`, encodeIdx({ dtype: 'uint8', shape: [n], data: s.labels.slice(0, n) }));
  }
  return raw.source;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: tsx examples/browser/make-data.ts DIR');
  console.log(`Fashion-MNIST subset from ${await makeDemoData(dir)} written to ${dir}`);
}
