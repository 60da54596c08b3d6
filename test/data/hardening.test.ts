/**
 * Data loading under bad input (issue 16): a gzip bomb named like a labels file stops inflating at
 * that file's published size (60,000 bytes of labels), not at the 2 GiB generic cap; parseIdx and
 * gunzipIfNeeded check their arguments (maxDataBytes NaN, a string instead of bytes);
 * loadFashionMnist checks `limit` before loading anything; an unreadable file is a DatasetError
 * ('unreadable') naming the path and the reason.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { loadFashionMnist } from '../../data/index.js';
import { DatasetError, IdxFormatError } from '../../data/raw/errors.js';
import { FASHION_MNIST } from '../../data/raw/fashion-mnist.js';
import { encodeIdx, gunzipIfNeeded, parseIdx } from '../../data/raw/idx.js';
import { loadMnistLikeRawSync, MNIST_LIKE_FILES } from '../../data/raw/mnist-like.js';

const root = mkdtempSync(join(tmpdir(), 'spiketrace-harden-data-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

/** Four small valid files in `dir` (3 train, 2 test examples), gzipped. */
function writeSmall(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const f of MNIST_LIKE_FILES) {
    const n = f.startsWith('train') ? 3 : 2;
    const bytes = f.includes('labels')
      ? encodeIdx({ dtype: 'uint8', shape: [n], data: Uint8Array.from({ length: n }, (_, i) => i) })
      : encodeIdx({ dtype: 'uint8', shape: [n, 28, 28], data: new Uint8Array(n * 784) });
    writeFileSync(join(dir, `${f}.gz`), gzipSync(bytes));
  }
}

t.test('a gzip bomb named like a labels file stops at the published labels size', async (t) => {
  const dir = join(root, 'bomb');
  writeSmall(dir);
  // 64 MB of labels (a valid IDX header declaring 64M of them) in about 64 kB of gzip.
  const huge = new Uint8Array(8 + 64 * 2 ** 20);
  new DataView(huge.buffer).setUint32(0, 0x00000801, false);
  new DataView(huge.buffer).setUint32(4, 64 * 2 ** 20, false);
  writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(huge, { level: 9 }));
  const before = process.memoryUsage().arrayBuffers;
  let error: unknown;
  try {
    loadMnistLikeRawSync(FASHION_MNIST, { dir, download: false });
  } catch (e) {
    error = e;
  }
  t.ok(error instanceof IdxFormatError && error.code === 'bad-gzip', `a bad-gzip IdxFormatError (got ${String(error)})`);
  t.match(
    String((error as Error).message),
    /inflates to more than 60068 bytes, the most an IDX file within the 60000-byte data limit can have/,
  );
  t.ok(process.memoryUsage().arrayBuffers - before < 32 * 2 ** 20, 'far less than the 64 MB it would inflate to was held');
  // The same file with { verify: false } (other files of this layout) falls back to the generic cap and parses.
  t.throws(() => loadMnistLikeRawSync(FASHION_MNIST, { dir, download: false, verify: false }), /has 3 images but .* has 67108864 labels/);
});

t.test('parseIdx / gunzipIfNeeded check their arguments', async (t) => {
  const ok = encodeIdx({ dtype: 'uint8', shape: [2], data: Uint8Array.of(1, 2) });
  t.throws(
    () => parseIdx('0000' as never, 'x'),
    /parseIdx: bytes must be a Uint8Array \(a Node Buffer is one, e.g. from readFileSync\), got the string "0000"/,
  );
  t.throws(() => parseIdx([0, 0, 8, 1] as never, 'x'), /parseIdx: bytes must be a Uint8Array .*, got Array/);
  t.throws(
    () => parseIdx(ok, 'x', { maxDataBytes: NaN }),
    /parseIdx: option maxDataBytes must be a non-negative integer number of bytes \(default 2147483648\), got NaN/,
  );
  t.throws(() => parseIdx(ok, 'x', { maxDataBytes: -1 }), /option maxDataBytes must be a non-negative integer .*, got -1/);
  t.throws(
    () => gunzipIfNeeded(ok, 'x', { maxDataBytes: 1.5 }),
    /gunzipIfNeeded: option maxDataBytes must be a non-negative integer .*, got 1.5/,
  );
  t.throws(
    () => parseIdx(ok, 'x', { maxDataBytes: 1 }),
    /dimensions \[2\] of uint8 mean 2 bytes of data, more than the limit of 1 bytes/,
    'a real limit still applies',
  );
  t.same(Array.from(parseIdx(ok, 'x', { maxDataBytes: 2 }).data), [1, 2]);
});

t.test('loadFashionMnist checks limit before loading anything', async (t) => {
  // A directory with nothing in it: a check made after loading would report not-found instead.
  const empty = join(root, 'empty');
  mkdirSync(empty);
  for (const [limit, message] of [
    [{ train: -5 }, /loadFashionMnist: option limit.train must be a non-negative integer \(the number of examples to keep\), got -5/],
    [{ test: 0.5 }, /option limit.test must be a non-negative integer .*, got 0.5/],
    [{ train: NaN }, /option limit.train must be a non-negative integer .*, got NaN/],
    [{ train: '10' }, /option limit.train must be a non-negative integer .*, got "10"/],
    [{ validation: 5 }, /option limit has an unknown key 'validation'; the keys are train and test/],
    [5, /option limit must be an object \{ train\?, test\? \}, got 5/],
  ] as const) {
    await t.rejects(loadFashionMnist({ dir: empty, download: false, limit: limit as never }), message, JSON.stringify(limit));
  }
  const dir = join(root, 'small');
  writeSmall(dir);
  const error = await loadFashionMnist({ dir, download: false, limit: { train: 2 } }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(error instanceof DatasetError && error.code === 'checksum', `a valid limit gets as far as the checksum (got ${String(error)})`);
});

t.test('an unreadable dataset file is a DatasetError naming the path and the reason', async (t) => {
  const dir = join(root, 'unreadable');
  writeSmall(dir);
  const target = join(dir, 't10k-images-idx3-ubyte.gz');
  const fs = process.getBuiltinModule('node:fs');
  const original = fs.readFileSync;
  // Running as root, chmod 000 would not stop a read: Node's own EACCES error is injected instead.
  fs.readFileSync = ((path: unknown, ...rest: unknown[]) => {
    if (path === target)
      throw Object.assign(new Error(`EACCES: permission denied, open '${target}'`), {
        code: 'EACCES',
        errno: -13,
        syscall: 'open',
        path: target,
      });
    return (original as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readFileSync;
  try {
    let error: unknown;
    try {
      loadMnistLikeRawSync(FASHION_MNIST, { dir, download: false, verify: false });
    } catch (e) {
      error = e;
    }
    t.ok(error instanceof DatasetError, `a DatasetError (got ${String(error)})`);
    t.equal((error as DatasetError).code, 'unreadable');
    t.equal((error as Error).message, `${target}: cannot read the file: permission denied (EACCES)`);
    t.equal(((error as Error).cause as { code?: string }).code, 'EACCES', "Node's error is kept as the cause");
  } finally {
    fs.readFileSync = original;
  }
});
