/**
 * Saving and loading parameter records (and optimizer state) as
 * [safetensors](https://github.com/huggingface/safetensors) files, so numpy / PyTorch users can
 * read them with `safetensors.numpy.load_file` / `safetensors.torch.load_file`.
 *
 * Layout (as the spec and the reference implementation):
 *
 * ```text
 * [8 bytes]  N, the header length, unsigned 64-bit little-endian
 * [N bytes]  UTF-8 JSON: {"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, ...}
 *            padded with spaces so that 8 + N is a multiple of 8
 * [rest]     raw little-endian tensor bytes, offsets relative to the start of this part,
 *            tensors laid out in header order with no gaps
 * ```
 *
 * Each tensor leaf of the record is named by its path joined with '.' (object keys and array
 * indices), e.g. `params.dense.kernel`, `opt.mu.dense.kernel`, `opt.count`; a tensor at the root
 * is named `""`. The record's structure (a JSON of its TreeDef with the leaf names and the static
 * values) is stored in `__metadata__` under {@link TREE_METADATA_KEY}, so loading rebuilds the
 * exact record.
 *
 * Loading validates the whole file before it builds anything; every problem is refused with a
 * {@link SafetensorsError} whose message names the file and what was expected vs found.
 *
 * @example
 * const params = { dense: { kernel: zeros([784, 10]), bias: zeros([10]) } };
 * await saveTensors('model.safetensors', { params, opt: optState }, { epoch: '3' });
 * // Rebuild from the stored structure:
 * const record = await loadTensors('model.safetensors');
 * // Or check against freshly initialised params (names, shapes and dtypes must match exactly):
 * const { params: loaded } = await loadTensors('model.safetensors', { params, opt: optState });
 * // Python: safetensors.numpy.load_file('model.safetensors')['params.dense.kernel']
 */
import { nodeBuiltin } from '../core/node-builtin.js';
import type * as FsModule from 'node:fs';
import type * as FsPromisesModule from 'node:fs/promises';
import type * as CryptoModule from 'node:crypto';
import type * as PathModule from 'node:path';
import { fromTyped, treeFlatten, type DType, type Tensor, type Tree, type TreeDef, type TypedArray } from '../core/index.js';

/** The `__metadata__` key under which the record's structure is stored. */
export const TREE_METADATA_KEY = 'spiketrace.tree';

/** A safetensors dtype code this module reads and writes. */
export type SafetensorsDType = 'F32' | 'F64' | 'I32' | 'U32' | 'BOOL';

/** Thrown for every refused file or record; the message names the file (or the operation). */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/**
 * Node's built-in modules, looked up when a file function runs (not imported), so that the rest
 * of this module, and nn as a whole, loads in a browser; there the file functions throw.
 */
function nodeModule<T>(id: string, fn: string): T {
  const m = nodeBuiltin<T>(id);
  if (m === undefined)
    throw new SafetensorsError(`${fn}: needs Node's ${id} (file access); without it, use tensorsToBytes / tensorsFromBytes`);
  return m;
}
const fs = (fn: string) => nodeModule<typeof FsModule>('node:fs', fn);
const fsp = (fn: string) => nodeModule<typeof FsPromisesModule>('node:fs/promises', fn);
const nodePath = (fn: string) => nodeModule<typeof PathModule>('node:path', fn);
const nodeCrypto = (fn: string) => nodeModule<typeof CryptoModule>('node:crypto', fn);

/** The reference implementation refuses headers above 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;
const MAX_TREE_DEPTH = 2_000;
const MAX_LISTED = 20;

const CODE_OF: Record<DType, SafetensorsDType> = { float32: 'F32', float64: 'F64', int32: 'I32', uint32: 'U32', bool: 'BOOL' };
const DTYPE_OF: Record<SafetensorsDType, DType> = { F32: 'float32', F64: 'float64', I32: 'int32', U32: 'uint32', BOOL: 'bool' };
const ITEMSIZE: Record<SafetensorsDType, number> = { F32: 4, F64: 8, I32: 4, U32: 4, BOOL: 1 };
const CONSTRUCTOR = {
  F32: Float32Array,
  F64: Float64Array,
  I32: Int32Array,
  U32: Uint32Array,
  BOOL: Uint8Array,
} as const;
const SUPPORTED = Object.keys(DTYPE_OF).join(', ');

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses each `itemsize`-byte group in place (only used on big-endian hosts). */
function swapBytes(bytes: Uint8Array, itemsize: number): void {
  if (itemsize === 1) return;
  for (let i = 0; i + itemsize <= bytes.length; i += itemsize) {
    for (let a = i, b = i + itemsize - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function listNames(names: readonly string[]): string {
  const shown = names.slice(0, MAX_LISTED).map((n) => JSON.stringify(n));
  return names.length > MAX_LISTED ? `${shown.join(', ')} and ${names.length - MAX_LISTED} more` : shown.join(', ');
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  if (typeof x === 'object') return 'an object';
  return `${typeof x} ${JSON.stringify(x)}`;
}

/** Defines an own enumerable property (safe for keys like `__proto__`). */
function setKey(obj: Record<string, Tree>, key: string, value: Tree): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

// ----------------------------------------------------------------------------- stored structure

/** The JSON form of a TreeDef stored under {@link TREE_METADATA_KEY}. */
type StoredDef =
  | { readonly kind: 'leaf'; readonly name: string }
  | { readonly kind: 'static'; readonly value: null | number | string | boolean }
  | { readonly kind: 'static'; readonly special: 'undefined' | 'NaN' | 'Infinity' | '-Infinity' | '-0' }
  | { readonly kind: 'array'; readonly children: readonly StoredDef[] }
  | { readonly kind: 'object'; readonly keys: readonly string[]; readonly children: readonly StoredDef[] };

const SPECIALS = ['undefined', 'NaN', 'Infinity', '-Infinity', '-0'] as const;

function storeStatic(value: null | undefined | number | string | boolean): StoredDef {
  if (value === undefined) return { kind: 'static', special: 'undefined' };
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return { kind: 'static', special: 'NaN' };
    if (value === Infinity) return { kind: 'static', special: 'Infinity' };
    if (value === -Infinity) return { kind: 'static', special: '-Infinity' };
    if (Object.is(value, -0)) return { kind: 'static', special: '-0' };
  }
  return { kind: 'static', value };
}

function restoreStatic(special: (typeof SPECIALS)[number]): undefined | number {
  switch (special) {
    case 'undefined':
      return undefined;
    case 'NaN':
      return NaN;
    case 'Infinity':
      return Infinity;
    case '-Infinity':
      return -Infinity;
    case '-0':
      return -0;
  }
}

/** The TreeDef with each leaf replaced by its '.'-joined path, plus the names in leaf order. */
function nameLeaves(def: TreeDef): { stored: StoredDef; names: string[] } {
  const names: string[] = [];
  const walk = (d: TreeDef, path: readonly string[]): StoredDef => {
    switch (d.kind) {
      case 'leaf': {
        const name = path.join('.');
        names.push(name);
        return { kind: 'leaf', name };
      }
      case 'static':
        return storeStatic(d.value);
      case 'array':
        return { kind: 'array', children: d.children.map((c, i) => walk(c, [...path, String(i)])) };
      case 'object':
        return { kind: 'object', keys: d.keys.slice(), children: d.children.map((c, i) => walk(c, [...path, d.keys[i]])) };
    }
  };
  const stored = walk(def, []);
  return { stored, names };
}

function duplicates(names: readonly string[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const n of names) (seen.has(n) ? dup : seen).add(n);
  return [...dup];
}

// ----------------------------------------------------------------------------- writing

/**
 * Serialises a record to safetensors bytes (no file system; works in browsers).
 *
 * Leaves are written in the tree's leaf order (object keys sorted), each as its row-major values
 * (views such as transposes or broadcasts are materialised), little-endian. `metadata` goes into
 * `__metadata__` next to the record's structure.
 *
 * @example
 * const bytes = tensorsToBytes({ w: array([1, -2]), n: scalar(7, 'int32') }, { note: 'hi' });
 * const back = tensorsFromBytes(bytes); // { n: NDArray(int32[], 7), w: NDArray(float32[2], [1,-2]) }
 *
 * @throws SafetensorsError for unsupported leaves or dtypes, duplicate names, or bad metadata
 *   (nothing is produced).
 */
export function tensorsToBytes(tree: Tree, metadata?: Readonly<Record<string, string>>): Uint8Array {
  let leaves: Tensor[];
  let def: TreeDef;
  try {
    [leaves, def] = treeFlatten(tree);
  } catch (e) {
    throw new SafetensorsError(`tensorsToBytes: ${(e as Error).message}`, { cause: e });
  }
  const { stored, names } = nameLeaves(def);
  const dup = duplicates(names);
  if (dup.length > 0)
    throw new SafetensorsError(
      `tensorsToBytes: several leaves get the same name: ${listNames(dup)} (object keys containing '.' clash with nested paths)`,
    );
  if (names.includes('__metadata__'))
    throw new SafetensorsError(`tensorsToBytes: a leaf is named "__metadata__", which safetensors reserves`);

  const meta: Record<string, string> = {};
  if (metadata !== undefined) {
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
      throw new SafetensorsError(`tensorsToBytes: metadata must be an object of strings, got ${describe(metadata)}`);
    for (const [k, v] of Object.entries(metadata)) {
      if (k === TREE_METADATA_KEY)
        throw new SafetensorsError(`tensorsToBytes: metadata key "${TREE_METADATA_KEY}" is reserved for the record's structure`);
      if (typeof v !== 'string')
        throw new SafetensorsError(
          `tensorsToBytes: metadata value for "${k}" must be a string (safetensors stores string to string), got ${describe(v)}`,
        );
      meta[k] = v;
    }
  }
  meta[TREE_METADATA_KEY] = JSON.stringify(stored);

  // Header entries, in leaf order; the header is built by hand so that key order is preserved
  // (a JS object would move integer-like names first).
  const parts: string[] = [`${JSON.stringify('__metadata__')}:${JSON.stringify(meta)}`];
  const codes: SafetensorsDType[] = [];
  let offset = 0;
  leaves.forEach((leaf, i) => {
    const code = CODE_OF[leaf.dtype];
    if (code === undefined)
      throw new SafetensorsError(
        `tensorsToBytes: leaf ${JSON.stringify(names[i])} has dtype ${String(leaf.dtype)}; expected one of ${Object.keys(CODE_OF).join(', ')}`,
      );
    const shape = leaf.shape.slice();
    const nbytes = leaf.size * ITEMSIZE[code];
    codes.push(code);
    parts.push(`${JSON.stringify(names[i])}:${JSON.stringify({ dtype: code, shape, data_offsets: [offset, offset + nbytes] })}`);
    offset += nbytes;
  });
  const headerText = `{${parts.join(',')}}`;
  const raw = new TextEncoder().encode(headerText);
  const headerLen = raw.length + ((8 - (raw.length % 8)) % 8);
  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(raw, 8);
  out.fill(0x20, 8 + raw.length, 8 + headerLen);

  let pos = 8 + headerLen;
  leaves.forEach((leaf, i) => {
    const code = codes[i];
    let values: TypedArray;
    try {
      values = leaf.toTyped();
    } catch (e) {
      throw new SafetensorsError(`tensorsToBytes: cannot read the values of leaf ${JSON.stringify(names[i])}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (!(values instanceof CONSTRUCTOR[code]) || values.length !== leaf.size) {
      throw new SafetensorsError(
        `tensorsToBytes: leaf ${JSON.stringify(names[i])} (${leaf.dtype}${fmtShape(leaf.shape)}) gave ${values.length} values in a ${values.constructor.name}; expected ${leaf.size} in a ${CONSTRUCTOR[code].name}`,
      );
    }
    const n = values.byteLength;
    if (code === 'BOOL') {
      for (let j = 0; j < values.length; j++) out[pos + j] = values[j] ? 1 : 0;
    } else {
      out.set(new Uint8Array(values.buffer, values.byteOffset, n), pos);
      if (!HOST_LITTLE_ENDIAN) swapBytes(out.subarray(pos, pos + n), ITEMSIZE[code]);
    }
    pos += n;
  });
  return out;
}

// ----------------------------------------------------------------------------- chunked file I/O

/**
 * The most bytes one read or write system call is given. Node refuses single reads and writes of
 * 2 GiB or more (ERR_FS_FILE_TOO_LARGE, "length is out of range"), so files are read and written
 * in pieces: any checkpoint that fits in memory round-trips.
 */
const DEFAULT_IO_CHUNK_BYTES = 2 ** 30;
let ioChunkBytes = DEFAULT_IO_CHUNK_BYTES;

/** Internal (tests): the size of one read or write; undefined restores the default (1 GiB). */
export function setSafetensorsIoChunkBytes(bytes: number | undefined): void {
  if (bytes !== undefined && !(Number.isInteger(bytes) && bytes >= 1))
    throw new RangeError(`setSafetensorsIoChunkBytes: expected a positive integer, got ${bytes}`);
  ioChunkBytes = bytes ?? DEFAULT_IO_CHUNK_BYTES;
}

function writeAllSync(fd: number, bytes: Uint8Array, fn: string): void {
  const { writeSync } = fs(fn);
  for (let pos = 0; pos < bytes.length;) pos += writeSync(fd, bytes, pos, Math.min(ioChunkBytes, bytes.length - pos));
}

async function writeAll(fh: FsPromisesModule.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let pos = 0; pos < bytes.length;) pos += (await fh.write(bytes, pos, Math.min(ioChunkBytes, bytes.length - pos))).bytesWritten;
}

/** A buffer for a whole file, or an error naming the size when the engine cannot make one. */
function fileBuffer(size: number, path: string): Uint8Array {
  try {
    return new Uint8Array(size);
  } catch (e) {
    throw new SafetensorsError(
      `${path}: the file is ${size} bytes, more than this JavaScript engine can hold in one array (${(e as Error).message})`,
      { cause: e },
    );
  }
}

function readAllSync(path: string, fn: string): Uint8Array {
  const { openSync, fstatSync, readSync, closeSync } = fs(fn);
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const out = fileBuffer(size, path);
    for (let pos = 0; pos < size;) {
      const n = readSync(fd, out, pos, Math.min(ioChunkBytes, size - pos), pos);
      if (n === 0) throw new SafetensorsError(`${path}: the file shrank to ${pos} bytes while being read (it was ${size})`);
      pos += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

async function readAll(path: string, fn: string): Promise<Uint8Array> {
  const fh = await fsp(fn).open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const out = fileBuffer(size, path);
    for (let pos = 0; pos < size;) {
      const { bytesRead } = await fh.read(out, pos, Math.min(ioChunkBytes, size - pos), pos);
      if (bytesRead === 0) throw new SafetensorsError(`${path}: the file shrank to ${pos} bytes while being read (it was ${size})`);
      pos += bytesRead;
    }
    return out;
  } finally {
    await fh.close();
  }
}

// ----------------------------------------------------------------------------- temporary files

/** Marks our temporary files: `.<name>.spiketrace-<pid>-<12 hex>.tmp` next to the target. */
const TEMP_TAG = 'spiketrace';

function tempPathFor(path: string, fn: string): string {
  const { basename, dirname, join } = nodePath(fn);
  return join(dirname(path), `.${basename(path)}.${TEMP_TAG}-${process.pid}-${nodeCrypto(fn).randomBytes(6).toString('hex')}.tmp`);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whether a process with this id runs on this machine (EPERM: it runs, as another user). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: unknown }).code === 'EPERM';
  }
}

/**
 * Temporary files of earlier saves to `path` whose process is gone (killed mid-save): ours by
 * name (this version's `.spiketrace-<pid>-<hex>.tmp`, or the earlier `.<pid>.<hex>.tmp`), for
 * this target only, and never one of a process still running (a concurrent save).
 */
function staleTempFiles(path: string, names: readonly string[], fn: string): string[] {
  const { basename, dirname, join } = nodePath(fn);
  const base = escapeRegExp(basename(path));
  const ours = new RegExp(`^\\.${base}\\.(?:${TEMP_TAG}-(\\d+)-|(\\d+)\\.)[0-9a-f]{12}\\.tmp$`);
  const stale: string[] = [];
  for (const name of names) {
    const m = ours.exec(name);
    if (m === null) continue;
    const pid = Number(m[1] ?? m[2]);
    if (pid !== process.pid && !processAlive(pid)) stale.push(join(dirname(path), name));
  }
  return stale;
}

function removeStaleTempFilesSync(path: string, fn: string): void {
  const { readdirSync, rmSync } = fs(fn);
  let names: string[];
  try {
    names = readdirSync(nodePath(fn).dirname(path));
  } catch {
    return; // the save itself reports a missing or unreadable directory
  }
  for (const stale of staleTempFiles(path, names, fn)) {
    try {
      rmSync(stale, { force: true });
    } catch {
      /* best effort: a file we cannot remove does not stop the save */
    }
  }
}

async function removeStaleTempFiles(path: string, fn: string): Promise<void> {
  const { readdir, rm } = fsp(fn);
  let names: string[];
  try {
    names = await readdir(nodePath(fn).dirname(path));
  } catch {
    return;
  }
  await Promise.all(staleTempFiles(path, names, fn).map((stale) => rm(stale, { force: true }).catch(() => undefined)));
}

function saveError(op: string, path: string, e: unknown): SafetensorsError {
  if (e instanceof SafetensorsError)
    return new SafetensorsError(`${op}: ${path}: ${e.message.replace(/^tensorsToBytes: /, '')}`, { cause: e });
  return new SafetensorsError(`${op}: could not write ${path}: ${(e as Error).message}`, { cause: e });
}

/**
 * Saves a record (parameters, optimizer state, ...) as a safetensors file, atomically: the bytes
 * go to a temporary file in the same directory, which is fsynced and renamed over `path`. On any
 * error the temporary file is removed and an existing file at `path` is left untouched. Temporary
 * files are named `.<file>.spiketrace-<pid>-<random>.tmp`; one left by a save that was killed
 * (its process is gone) is removed by the next save to the same path. Files of any size that
 * fit in memory are written and read in chunks (Node's single calls stop at 2 GiB).
 *
 * @example
 * await saveTensors('ckpt.safetensors', { params, opt: { mu, nu, count } }, { step: '1000' });
 * // Python: from safetensors.numpy import load_file; load_file('ckpt.safetensors')['opt.count']
 */
export async function saveTensors(path: string, tree: Tree, metadata?: Readonly<Record<string, string>>): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = tensorsToBytes(tree, metadata);
  } catch (e) {
    throw saveError('saveTensors', path, e);
  }
  const { open, rename, rm } = fsp('saveTensors');
  await removeStaleTempFiles(path, 'saveTensors');
  const tmp = tempPathFor(path, 'saveTensors');
  let created = false;
  try {
    const fh = await open(tmp, 'wx');
    created = true;
    try {
      await writeAll(fh, bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    created = false;
  } catch (e) {
    if (created) await rm(tmp, { force: true }).catch(() => undefined);
    throw saveError('saveTensors', path, e);
  }
  await syncDirectory(nodePath('saveTensors').dirname(path));
}

/** The synchronous {@link saveTensors} (same atomic write). */
export function saveTensorsSync(path: string, tree: Tree, metadata?: Readonly<Record<string, string>>): void {
  let bytes: Uint8Array;
  try {
    bytes = tensorsToBytes(tree, metadata);
  } catch (e) {
    throw saveError('saveTensorsSync', path, e);
  }
  const { openSync, fsyncSync, closeSync, renameSync, rmSync } = fs('saveTensorsSync');
  removeStaleTempFilesSync(path, 'saveTensorsSync');
  const tmp = tempPathFor(path, 'saveTensorsSync');
  let created = false;
  try {
    const fd = openSync(tmp, 'wx');
    created = true;
    try {
      writeAllSync(fd, bytes, 'saveTensorsSync');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    created = false;
  } catch (e) {
    if (created) {
      try {
        rmSync(tmp, { force: true });
      } catch {
        /* the original error matters more */
      }
    }
    throw saveError('saveTensorsSync', path, e);
  }
  syncDirectorySync(nodePath('saveTensorsSync').dirname(path));
}

/** Best effort: makes the rename durable (not possible on every platform). */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const fh = await fsp('saveTensors').open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* not supported here (e.g. Windows); the data itself was fsynced */
  }
}

function syncDirectorySync(dir: string): void {
  const { openSync, fsyncSync, closeSync } = fs('saveTensorsSync');
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* see syncDirectory */
  }
}

// ----------------------------------------------------------------------------- reading

interface Entry {
  readonly name: string;
  readonly code: SafetensorsDType;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

interface Parsed {
  readonly entries: readonly Entry[];
  readonly byName: ReadonlyMap<string, Entry>;
  /** `__metadata__` as stored (undefined when absent). */
  readonly metadata: Readonly<Record<string, string>> | undefined;
  readonly dataStart: number;
}

/** Parses and validates the header and the data layout; builds no tensors. */
function parse(bytes: Uint8Array, file: string): Parsed {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${file}: ${msg}`);
  };
  if (!(bytes instanceof Uint8Array)) fail(`expected the file's bytes as a Uint8Array, got ${describe(bytes)}`);
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes; expected at least 8 (the little-endian u64 header length)`);
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  const after = bytes.length - 8;
  if (n64 > BigInt(after))
    fail(
      `header length is ${n64} bytes, but only ${after} bytes follow the 8-byte length prefix (file of ${bytes.length} bytes truncated, or not a safetensors file)`,
    );
  const n = Number(n64);
  if (n > MAX_HEADER_BYTES) fail(`header length is ${n} bytes; expected at most ${MAX_HEADER_BYTES}`);
  if (n < 2) fail(`header length is ${n} bytes; expected at least 2 (a JSON object "{}")`);

  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    fail(`header (${n} bytes) is not valid UTF-8`);
  }
  if (text[0] !== '{') fail(`header must start with '{' (a JSON object), found ${JSON.stringify(text.slice(0, 16))}`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail(
      `header is not valid JSON (${(e as Error).message}); found ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text)}`,
    );
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail(`header must be a JSON object, found ${describe(header)}`);
  // JSON.parse keeps the last of repeated keys; the reference implementation refuses them, and a
  // file that names one tensor twice is ambiguous.
  const repeated = repeatedJsonKey(text);
  if (repeated !== null)
    fail(
      `header repeats the key ${JSON.stringify(repeated.key)}${repeated.path.length > 0 ? ` inside ${repeated.path.map((k) => JSON.stringify(k)).join(' > ')}` : ''}; every key must appear once`,
    );

  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  const entries: Entry[] = [];
  let metadata: Record<string, string> | undefined;
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof info !== 'object' || info === null || Array.isArray(info))
        fail(`__metadata__ must be an object of strings, found ${describe(info)}`);
      metadata = {};
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__["${k}"] must be a string, found ${describe(v)}`);
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const where = `tensor ${JSON.stringify(name)}`;
    if (typeof info !== 'object' || info === null || Array.isArray(info))
      fail(`${where}: expected {dtype, shape, data_offsets}, found ${describe(info)}`);
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(`${where}: dtype must be a string, found ${describe(dtype)}`);
    if (!Object.prototype.hasOwnProperty.call(DTYPE_OF, dtype as string))
      fail(`${where}: unknown dtype ${JSON.stringify(dtype)}; expected one of ${SUPPORTED}`);
    const code = dtype as SafetensorsDType;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      fail(`${where}: shape must be an array of non-negative integers, found ${JSON.stringify(shape)}`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`${where}: data_offsets must be [begin, end] (non-negative integers), found ${JSON.stringify(offsets)}`);
    }
    const dims = shape as number[];
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLen)
      fail(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the data; expected at most ${dataLen} bytes after the header, ${end - dataLen} bytes missing (truncated file?)`,
      );
    const size = dims.reduce((a, d) => a * d, 1);
    const need = size * ITEMSIZE[code];
    if (need !== end - begin)
      fail(`${where}: shape ${fmtShape(dims)} of ${code} needs ${need} bytes, but data_offsets [${begin}, ${end}] span ${end - begin}`);
    entries.push({ name, code, shape: dims.slice(), begin, end });
  }

  // Tensors must tile the data exactly: no overlap, no gap, nothing after the last one.
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let prev: Entry | undefined;
  for (const e of sorted) {
    if (e.begin < covered)
      fail(
        `tensors ${JSON.stringify(prev?.name)} [${prev?.begin}, ${prev?.end}] and ${JSON.stringify(e.name)} [${e.begin}, ${e.end}] overlap`,
      );
    if (e.begin > covered)
      fail(
        `${e.begin - covered} unused bytes before tensor ${JSON.stringify(e.name)}: expected it to begin at ${covered}, found ${e.begin}`,
      );
    covered = e.end;
    prev = e;
  }
  if (covered !== dataLen)
    fail(`${dataLen - covered} trailing bytes after the tensors: the tensors cover ${covered} bytes, but ${dataLen} follow the header`);

  const byName = new Map(entries.map((e) => [e.name, e] as const));
  return { entries, byName, metadata, dataStart };
}

/**
 * The first key that appears twice in one object of a valid JSON text, with the keys of the
 * objects it lies in; null when there is none. Walks the text once, skipping strings.
 */
function repeatedJsonKey(text: string): { key: string; path: string[] } | null {
  const stack: { keys: Set<string> | null; expectKey: boolean; lastKey: string }[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top !== undefined && top.keys !== null && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return { key, path: stack.slice(0, -1).map((s) => s.lastKey) };
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j;
    } else if (c === '{') stack.push({ keys: new Set(), expectKey: true, lastKey: '' });
    else if (c === '[') stack.push({ keys: null, expectKey: false, lastKey: '' });
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ',' && stack.length > 0 && stack[stack.length - 1].keys !== null) stack[stack.length - 1].expectKey = true;
  }
  return null;
}

/** Validates the stored structure against the header; returns it typed. */
function parseStoredDef(json: string, parsed: Parsed, file: string): StoredDef {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${file}: __metadata__["${TREE_METADATA_KEY}"]: ${msg}`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    fail(`not valid JSON (${(e as Error).message})`);
  }
  const used = new Set<string>();
  const check = (d: unknown, depth: number): StoredDef => {
    if (depth > MAX_TREE_DEPTH) fail(`structure nested deeper than ${MAX_TREE_DEPTH} levels`);
    if (typeof d !== 'object' || d === null || Array.isArray(d)) fail(`expected a node object, found ${describe(d)}`);
    const node = d as Record<string, unknown>;
    switch (node.kind) {
      case 'leaf': {
        const name = node.name;
        if (typeof name !== 'string') fail(`leaf without a string name: ${JSON.stringify(node)}`);
        if (!parsed.byName.has(name as string)) fail(`leaf ${JSON.stringify(name)} is not a tensor in the header`);
        if (used.has(name as string)) fail(`leaf ${JSON.stringify(name)} appears twice`);
        used.add(name as string);
        return { kind: 'leaf', name: name as string };
      }
      case 'static': {
        if ('special' in node) {
          if (!(SPECIALS as readonly unknown[]).includes(node.special))
            fail(`unknown special static ${JSON.stringify(node.special)}; expected one of ${SPECIALS.join(', ')}`);
          return { kind: 'static', special: node.special as (typeof SPECIALS)[number] };
        }
        const v = node.value;
        if (!(v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean'))
          fail(`static value must be null, a number, a string or a boolean, found ${describe(v)}`);
        return { kind: 'static', value: v as null | number | string | boolean };
      }
      case 'array': {
        if (!Array.isArray(node.children)) fail(`array node without children`);
        return { kind: 'array', children: (node.children as unknown[]).map((c) => check(c, depth + 1)) };
      }
      case 'object': {
        const { keys, children } = node;
        if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string'))
          fail(`object node keys must be strings, found ${JSON.stringify(keys)}`);
        if (!Array.isArray(children) || children.length !== (keys as string[]).length)
          fail(`object node has ${(keys as string[]).length} keys but ${Array.isArray(children) ? children.length : 'no'} children`);
        const dup = duplicates(keys as string[]);
        if (dup.length > 0) fail(`object node repeats keys ${listNames(dup)}`);
        return { kind: 'object', keys: (keys as string[]).slice(), children: (children as unknown[]).map((c) => check(c, depth + 1)) };
      }
      default:
        return fail(`unknown node kind ${JSON.stringify(node.kind)}`);
    }
  };
  const def = check(raw, 0);
  const unused = parsed.entries.filter((e) => !used.has(e.name)).map((e) => e.name);
  if (unused.length > 0) fail(`the header has tensors the stored structure does not place: ${listNames(unused)}`);
  return def;
}

/** Structure for files written by other tools: names split on '.' into nested objects. */
function splitNames(parsed: Parsed, file: string): StoredDef {
  interface Node {
    leaf?: string;
    children: Map<string, Node>;
  }
  const root: Node = { children: new Map() };
  const names = parsed.entries.map((e) => e.name).sort();
  for (const name of names) {
    let node = root;
    for (const seg of name.split('.')) {
      if (node.leaf !== undefined)
        throw new SafetensorsError(
          `${file}: tensor ${JSON.stringify(node.leaf)} is also a prefix of tensor ${JSON.stringify(name)}, so the names do not form a nested record; pass a template to loadTensors`,
        );
      let next = node.children.get(seg);
      if (next === undefined) node.children.set(seg, (next = { children: new Map() }));
      node = next;
    }
    if (node.children.size > 0) {
      const other = names.find((m) => m.startsWith(`${name}.`));
      throw new SafetensorsError(
        `${file}: tensor ${JSON.stringify(name)} is also a prefix of tensor ${JSON.stringify(other)}, so the names do not form a nested record; pass a template to loadTensors`,
      );
    }
    node.leaf = name;
  }
  const toDef = (node: Node): StoredDef =>
    node.leaf !== undefined
      ? { kind: 'leaf', name: node.leaf }
      : { kind: 'object', keys: [...node.children.keys()], children: [...node.children.values()].map(toDef) };
  return toDef(root);
}

/** Compares the file's tensors with a template's leaves; throws listing every difference. */
function matchTemplate(parsed: Parsed, template: Tree, file: string): StoredDef {
  const [leaves, def] = treeFlatten(template);
  const { stored, names } = nameLeaves(def);
  const dup = duplicates(names);
  if (dup.length > 0) throw new SafetensorsError(`${file}: the template has several leaves named ${listNames(dup)}`);
  const problems: string[] = [];
  const missing = names.filter((nm) => !parsed.byName.has(nm));
  const wanted = new Set(names);
  const extra = parsed.entries.map((e) => e.name).filter((nm) => !wanted.has(nm));
  if (missing.length > 0) problems.push(`missing from the file (in the template): ${listNames(missing)}`);
  if (extra.length > 0) problems.push(`extra in the file (not in the template): ${listNames(extra)}`);
  const shapeDiffs: string[] = [];
  const dtypeDiffs: string[] = [];
  leaves.forEach((leaf, i) => {
    const e = parsed.byName.get(names[i]);
    if (e === undefined) return;
    const s = leaf.shape;
    if (s.length !== e.shape.length || s.some((d, j) => d !== e.shape[j]))
      shapeDiffs.push(`${JSON.stringify(names[i])}: file ${fmtShape(e.shape)}, template ${fmtShape(s)}`);
    if (CODE_OF[leaf.dtype] !== e.code)
      dtypeDiffs.push(`${JSON.stringify(names[i])}: file ${e.code} (${DTYPE_OF[e.code]}), template ${leaf.dtype}`);
  });
  const cap = (xs: string[]): string =>
    xs.length > MAX_LISTED ? `${xs.slice(0, MAX_LISTED).join('; ')}; and ${xs.length - MAX_LISTED} more` : xs.join('; ');
  if (shapeDiffs.length > 0) problems.push(`shapes differ: ${cap(shapeDiffs)}`);
  if (dtypeDiffs.length > 0) problems.push(`dtypes differ: ${cap(dtypeDiffs)}`);
  if (problems.length > 0) throw new SafetensorsError(`${file} does not match the template: ${problems.join('. ')}`);
  return stored;
}

/** Copies each tensor's bytes into its own aligned typed array and builds the record. */
function build(def: StoredDef, parsed: Parsed, bytes: Uint8Array): Tree {
  const make = (e: Entry): Tensor => {
    const src = bytes.subarray(parsed.dataStart + e.begin, parsed.dataStart + e.end);
    const itemsize = ITEMSIZE[e.code];
    const typed = new CONSTRUCTOR[e.code]((e.end - e.begin) / itemsize);
    const view = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
    if (e.code === 'BOOL') {
      for (let i = 0; i < src.length; i++) view[i] = src[i] ? 1 : 0;
    } else {
      view.set(src);
      if (!HOST_LITTLE_ENDIAN) swapBytes(view, itemsize);
    }
    return fromTyped(typed, e.shape, DTYPE_OF[e.code]);
  };
  const walk = (d: StoredDef): Tree => {
    switch (d.kind) {
      case 'leaf':
        return make(parsed.byName.get(d.name) as Entry);
      case 'static':
        return 'special' in d ? restoreStatic(d.special) : d.value;
      case 'array':
        return d.children.map(walk);
      case 'object': {
        const out: Record<string, Tree> = {};
        d.keys.forEach((k, i) => setKey(out, k, walk(d.children[i])));
        return out;
      }
    }
  };
  return walk(def);
}

/**
 * Parses safetensors bytes into a record (no file system; works in browsers). Everything is
 * validated before any tensor is built.
 *
 * - With `template`, the file's tensor names, shapes and dtypes must match the template's leaves
 *   exactly, and the result has the template's structure (including its static values).
 * - Without, the record is rebuilt from the structure stored by {@link tensorsToBytes}; for files
 *   written by other tools (no spiketrace metadata) names are split on '.' into nested objects
 *   (`layers.0.weight` -> `{ layers: { '0': { weight } } }`).
 *
 * Tensors come back as contiguous `NDArray`s owning their (aligned) memory. BOOL bytes other
 * than 0 are read as 1 (true).
 *
 * @param fileName used in error messages (default `"<bytes>"`).
 * @example
 * const record = tensorsFromBytes(new Uint8Array(await (await fetch('/model.safetensors')).arrayBuffer()), undefined, 'model.safetensors');
 * @throws SafetensorsError naming `fileName` and what was expected vs found.
 */
export function tensorsFromBytes(bytes: Uint8Array, template?: undefined, fileName?: string): Tree;
export function tensorsFromBytes<T extends Tree>(bytes: Uint8Array, template: T, fileName?: string): T;
export function tensorsFromBytes(bytes: Uint8Array, template?: Tree, fileName = '<bytes>'): Tree {
  try {
    const parsed = parse(bytes, fileName);
    let def: StoredDef;
    if (template !== undefined) def = matchTemplate(parsed, template, fileName);
    else {
      const stored = parsed.metadata?.[TREE_METADATA_KEY];
      def = stored !== undefined ? parseStoredDef(stored, parsed, fileName) : splitNames(parsed, fileName);
    }
    return build(def, parsed, bytes);
  } catch (e) {
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(`${fileName}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The user metadata of safetensors bytes (`__metadata__` without the stored structure); `{}`
 * when there is none. The whole file is validated as by {@link tensorsFromBytes}.
 *
 * @example
 * tensorMetadataFromBytes(tensorsToBytes({ w }, { epoch: '3' })); // { epoch: '3' }
 */
export function tensorMetadataFromBytes(bytes: Uint8Array, fileName = '<bytes>'): Record<string, string> {
  const { metadata } = parse(bytes, fileName);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (k !== TREE_METADATA_KEY) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * Loads a safetensors file as a record; see {@link tensorsFromBytes} for the template rules.
 *
 * @example
 * const fresh = model.init(key, inputShape).params;
 * const params = await loadTensors('params.safetensors', fresh); // same structure as `fresh`
 * const anything = await loadTensors('from-pytorch.safetensors'); // { 'fc1': { weight, bias }, ... }
 * @throws SafetensorsError naming the file (I/O errors propagate as Node's errors).
 */
export async function loadTensors(path: string, template?: undefined): Promise<Tree>;
export async function loadTensors<T extends Tree>(path: string, template: T): Promise<T>;
export async function loadTensors(path: string, template?: Tree): Promise<Tree> {
  return tensorsFromBytes(await readAll(path, 'loadTensors'), template, path);
}

/** The synchronous {@link loadTensors}. */
export function loadTensorsSync(path: string, template?: undefined): Tree;
export function loadTensorsSync<T extends Tree>(path: string, template: T): T;
export function loadTensorsSync(path: string, template?: Tree): Tree {
  return tensorsFromBytes(readAllSync(path, 'loadTensorsSync'), template, path);
}

/**
 * The user metadata stored in a safetensors file (see {@link tensorMetadataFromBytes}).
 *
 * @example
 * await saveTensors('ckpt.safetensors', record, { step: '1000' });
 * (await readTensorMetadata('ckpt.safetensors')).step; // '1000'
 */
export async function readTensorMetadata(path: string): Promise<Record<string, string>> {
  return tensorMetadataFromBytes(await readAll(path, 'readTensorMetadata'), path);
}

/** The synchronous {@link readTensorMetadata}. */
export function readTensorMetadataSync(path: string): Record<string, string> {
  return tensorMetadataFromBytes(readAllSync(path, 'readTensorMetadataSync'), path);
}
