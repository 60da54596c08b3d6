/**
 * HDF5 as a plain tree (groups of groups and datasets) through h5wasm, HDF5 compiled to
 * WebAssembly: the same code reads and writes in Node and in a browser. h5wasm is imported when a
 * file is first touched, not when this module loads, so `spiketrace/spiking` stays light for
 * users who never read a NIR file. Files pass through h5wasm's in-memory file system as bytes;
 * paths are read and written by Node's fs (writes atomically: a temporary file, fsynced, renamed).
 */
import { nodeBuiltin } from '../../core/node-builtin.js';
import type * as FsPromisesModule from 'node:fs/promises';
import type * as PathModule from 'node:path';

/** Every refused file, graph or model; the message names the file, node or layer. */
export class NirError extends Error {
  override name = 'NirError';
}

/** A dataset's element type, as numpy names it. */
export type H5NumericDType = 'float32' | 'float64' | 'int8' | 'int16' | 'int32' | 'int64' | 'uint8' | 'uint16' | 'uint32' | 'uint64';

export interface H5NumericDataset {
  readonly kind: 'numeric';
  readonly dtype: H5NumericDType;
  readonly shape: readonly number[];
  /** Row-major values (integers up to 2^53 are exact). */
  readonly values: Float64Array;
}
export interface H5StringDataset {
  readonly kind: 'string';
  readonly shape: readonly number[];
  readonly values: readonly string[];
}
export interface H5Group {
  readonly kind: 'group';
  readonly entries: ReadonlyMap<string, H5Entry>;
}
export type H5Entry = H5NumericDataset | H5StringDataset | H5Group;

/** Datasets larger than this (elements) are refused before they are read: a corrupt or hostile shape must not exhaust memory. */
export const MAX_DATASET_ELEMENTS = 1 << 28;
const MAX_DEPTH = 64;

interface H5Dataset {
  readonly metadata: { type: number; size: number; signed: boolean; shape: number[] | null; vlen: boolean };
  readonly value: unknown;
}
interface H5GroupHandle {
  keys(): string[];
  get(name: string): unknown;
  create_group(name: string): H5GroupHandle;
  create_dataset(args: { name: string; data: unknown; shape?: number[] | null; dtype?: string | null }): unknown;
}
interface H5FileHandle extends H5GroupHandle {
  close(): unknown;
}
interface H5Lib {
  File: new (name: string, mode: 'r' | 'w') => H5FileHandle;
  Group: abstract new (...a: never[]) => H5GroupHandle;
  Dataset: abstract new (...a: never[]) => H5Dataset;
  FS: { writeFile(path: string, data: Uint8Array): void; readFile(path: string): Uint8Array; unlink(path: string): void };
  /** HDF5's errors thrown as JS errors with its error stack as the message (instead of printed to stderr). */
  quiet<T>(fn: () => T): T;
}

let libPromise: Promise<H5Lib> | null = null;
/** h5wasm, loaded and its WebAssembly module ready (once). */
async function h5lib(): Promise<H5Lib> {
  libPromise ??= (async () => {
    const mod = (await import('h5wasm')).default;
    const module = (await mod.ready) as unknown as {
      FS: H5Lib['FS'];
      activate_throwing_error_handler(): number;
      deactivate_throwing_error_handler(): number;
    };
    const quiet = <T>(fn: () => T): T => {
      module.activate_throwing_error_handler();
      try {
        return fn();
      } finally {
        module.deactivate_throwing_error_handler();
      }
    };
    return { File: mod.File, Group: mod.Group, Dataset: mod.Dataset, FS: module.FS, quiet } as unknown as H5Lib;
  })();
  return libPromise;
}

let scratchCounter = 0;
const scratchName = (): string => `/spiketrace-nir-${++scratchCounter}.h5`;

const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/** The bytes of an HDF5 file as a tree; `source` names the file in errors. */
export async function readHdf5(bytes: Uint8Array, source: string): Promise<H5Group> {
  if (!(bytes instanceof Uint8Array)) throw new NirError(`nir: ${source}: expected the file's bytes as a Uint8Array, got ${typeof bytes}`);
  // HDF5's signature sits at offset 0 (or 512, 1024, ... after a user block); checking it first
  // gives a clear error for a file that is not HDF5 at all.
  let signed = false;
  for (let at = 0; at + 8 <= bytes.length && !signed; at = at === 0 ? 512 : at * 2)
    signed = HDF5_SIGNATURE.every((b, i) => bytes[at + i] === b);
  if (!signed) throw new NirError(`nir: ${source} is not an HDF5 file (no HDF5 signature in its ${bytes.length} bytes)`);
  const lib = await h5lib();
  const name = scratchName();
  lib.FS.writeFile(name, bytes);
  let file: H5FileHandle | null = null;
  try {
    try {
      file = lib.quiet(() => new lib.File(name, 'r'));
    } catch (e) {
      throw new NirError(`nir: ${source}: HDF5 could not open it (truncated or corrupt?): ${hdf5Reason(e)}`, { cause: e });
    }
    const opened = file;
    return lib.quiet(() => readGroup(lib, opened, source, '', 0));
  } catch (e) {
    if (e instanceof NirError) throw e;
    throw new NirError(`nir: ${source}: HDF5 could not read it (truncated or corrupt?): ${hdf5Reason(e)}`, { cause: e });
  } finally {
    try {
      if (file !== null) lib.quiet(() => file!.close());
    } catch {
      /* the read's own error matters more */
    }
    lib.FS.unlink(name);
  }
}

/** The innermost cause in HDF5's error stack ("minor: ..." of its deepest entry), or the error's message. */
function hdf5Reason(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const minors = [...text.matchAll(/minor: (.+)/g)].map((m) => m[1].trim());
  const details = [...text.matchAll(/#\d+: .* in ([A-Za-z0-9_]+)\(\): (.+)/g)].map((m) => m[2].trim());
  if (details.length > 0) return `${details[details.length - 1]}${minors.length > 0 ? ` (${minors[minors.length - 1]})` : ''}`;
  return text.split('\n')[0].slice(0, 300);
}

function readGroup(lib: H5Lib, group: H5GroupHandle, source: string, path: string, depth: number): H5Group {
  if (depth > MAX_DEPTH) throw new NirError(`nir: ${source}: groups nested deeper than ${MAX_DEPTH} at ${path}`);
  const entries = new Map<string, H5Entry>();
  for (const key of group.keys()) {
    const where = `${path}/${key}`;
    const item = group.get(key);
    if (item instanceof lib.Group) entries.set(key, readGroup(lib, item, source, where, depth + 1));
    else if (item instanceof lib.Dataset) entries.set(key, readDataset(item, source, where));
    // Links, named datatypes and references carry nothing NIR uses: left out.
  }
  return { kind: 'group', entries };
}

function readDataset(d: H5Dataset, source: string, where: string): H5Entry {
  const m = d.metadata;
  const shape = m.shape ?? [];
  const count = shape.reduce((a, b) => a * b, 1);
  if (!(count <= MAX_DATASET_ELEMENTS))
    throw new NirError(
      `nir: ${source}: dataset ${where} has shape [${shape.join(', ')}] (${count} elements), more than the ${MAX_DATASET_ELEMENTS} this reader accepts`,
    );
  const value = d.value;
  if (m.type === 3) {
    const values = typeof value === 'string' ? [value] : Array.isArray(value) ? value.flat(Infinity) : null;
    if (values === null || values.some((v) => typeof v !== 'string'))
      throw new NirError(`nir: ${source}: dataset ${where} is a string dataset whose value could not be read as strings`);
    return { kind: 'string', shape, values: values as string[] };
  }
  const dtype = numericDType(m);
  if (dtype === null)
    throw new NirError(
      `nir: ${source}: dataset ${where} has an HDF5 type (class ${m.type}, ${m.size} bytes) that NIR does not use; expected floats, integers or strings`,
    );
  const values = new Float64Array(count);
  if (typeof value === 'number' || typeof value === 'bigint') values[0] = toNumber(value, source, where);
  else if (ArrayBuffer.isView(value) && 'length' in value) {
    const arr = value as unknown as ArrayLike<number | bigint>;
    if (arr.length !== count)
      throw new NirError(`nir: ${source}: dataset ${where} holds ${arr.length} values for shape [${shape.join(', ')}]`);
    for (let i = 0; i < count; i++) values[i] = toNumber(arr[i], source, where);
  } else throw new NirError(`nir: ${source}: dataset ${where} could not be read as numbers`);
  return { kind: 'numeric', dtype, shape, values };
}

function toNumber(v: number | bigint, source: string, where: string): number {
  if (typeof v === 'number') return v;
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
    throw new NirError(`nir: ${source}: dataset ${where} holds the integer ${v}, beyond 2^53`);
  return Number(v);
}

function numericDType(m: H5Dataset['metadata']): H5NumericDType | null {
  if (m.type === 1) return m.size === 4 ? 'float32' : m.size === 8 ? 'float64' : null;
  if (m.type === 0) {
    const bits = m.size * 8;
    if (![8, 16, 32, 64].includes(bits)) return null;
    return `${m.signed ? 'int' : 'uint'}${bits}` as H5NumericDType;
  }
  return null;
}

const WRITE_DTYPE: Record<H5NumericDType, string> = {
  float32: '<f',
  float64: '<d',
  int8: '<b',
  int16: '<h',
  int32: '<i',
  int64: '<q',
  uint8: '<B',
  uint16: '<H',
  uint32: '<I',
  uint64: '<Q',
};

/** A tree as the bytes of an HDF5 file. */
export async function writeHdf5(root: H5Group): Promise<Uint8Array> {
  const lib = await h5lib();
  const name = scratchName();
  const file = new lib.File(name, 'w');
  let closed = false;
  try {
    writeGroup(file, root);
    file.close();
    closed = true;
    return lib.FS.readFile(name).slice();
  } finally {
    if (!closed) {
      try {
        file.close();
      } catch {
        /* the write's own error matters more */
      }
    }
    lib.FS.unlink(name);
  }
}

function writeGroup(target: H5GroupHandle, group: H5Group): void {
  for (const [key, entry] of group.entries) {
    if (entry.kind === 'group') writeGroup(target.create_group(key), entry);
    else if (entry.kind === 'string') {
      // A scalar string is written as one variable-length string (h5py's string_dtype()).
      const data = entry.shape.length === 0 ? entry.values[0] : [...entry.values];
      target.create_dataset({ name: key, data, shape: entry.shape.length === 0 ? null : [...entry.shape] });
    } else {
      const data = typedFor(entry.dtype, entry.values);
      target.create_dataset({ name: key, data, shape: [...entry.shape], dtype: WRITE_DTYPE[entry.dtype] });
    }
  }
}

/** Values in the typed array of the dtype h5wasm writes (it takes the bytes as they are). */
function typedFor(dtype: H5NumericDType, values: Float64Array): ArrayBufferView {
  const big = (): bigint[] => Array.from(values, (v) => BigInt(v));
  switch (dtype) {
    case 'float32':
      return Float32Array.from(values);
    case 'float64':
      return values;
    case 'int8':
      return Int8Array.from(values);
    case 'int16':
      return Int16Array.from(values);
    case 'int32':
      return Int32Array.from(values);
    case 'int64':
      return BigInt64Array.from(big());
    case 'uint8':
      return Uint8Array.from(values);
    case 'uint16':
      return Uint16Array.from(values);
    case 'uint32':
      return Uint32Array.from(values);
    case 'uint64':
      return BigUint64Array.from(big());
  }
}

type FsPromises = typeof FsPromisesModule;
function nodeFs(caller: string): { fsp: FsPromises; path: typeof PathModule } {
  const fsp = nodeBuiltin<FsPromises>('node:fs/promises');
  const path = nodeBuiltin<typeof PathModule>('node:path');
  if (fsp === undefined || path === undefined)
    throw new NirError(`${caller}: file paths need Node's fs; in a browser pass the file's bytes (a Uint8Array) instead`);
  return { fsp, path };
}

/** A file's bytes (Node). */
export async function readFileBytes(filePath: string, caller: string): Promise<Uint8Array> {
  const { fsp } = nodeFs(caller);
  try {
    return new Uint8Array(await fsp.readFile(filePath));
  } catch (e) {
    throw new NirError(`${caller}: could not read ${filePath}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Writes bytes to `filePath` atomically: a temporary file in the same directory, fsynced, then
 * renamed over the target; on failure the temporary file is removed and an existing file is kept.
 */
export async function writeFileAtomic(filePath: string, bytes: Uint8Array, caller: string): Promise<void> {
  const { fsp, path } = nodeFs(caller);
  const tmp = path.join(
    path.dirname(filePath),
    `.${path.basename(filePath)}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`,
  );
  let created = false;
  try {
    const fh = await fsp.open(tmp, 'wx');
    created = true;
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, filePath);
    created = false;
  } catch (e) {
    if (created) await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw new NirError(`${caller}: could not write ${filePath}: ${(e as Error).message}`, { cause: e });
  }
}
