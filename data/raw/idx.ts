/**
 * Reading and writing IDX files, the format of MNIST and Fashion-MNIST.
 *
 * Layout (all integers big-endian):
 *
 * | bytes        | content                                                    |
 * | ------------ | ---------------------------------------------------------- |
 * | 0..1         | `0x00 0x00`                                                |
 * | 2            | element type: 0x08 ubyte, 0x09 sbyte, 0x0B short (int16),  |
 * |              | 0x0C int (int32), 0x0D float (float32), 0x0E double        |
 * | 3            | number of dimensions d                                     |
 * | 4..4+4d      | the d sizes, each an unsigned 32-bit integer               |
 * | then         | the elements in row-major order, big-endian                |
 *
 * Files are often shipped gzipped (`*.gz`); {@link parseIdx} accepts both.
 * The parser is strict on purpose: a truncated download or a file with extra
 * bytes is reported, never silently padded or cut, because a dataset that is
 * quietly wrong costs far more than one that fails to load.
 */
import type * as ZlibModule from 'node:zlib';
import { requireNodeBuiltin } from '../../core/node-builtin.js';

// zlib is looked up when a .gz file is read or written, so the parser loads in a browser.
const zlib = () => requireNodeBuiltin<typeof ZlibModule>('node:zlib', 'IDX gzip');
const gunzipSync = (bytes: Uint8Array, options: { maxOutputLength: number }): Uint8Array => zlib().gunzipSync(bytes, options);
const gzipSync = (bytes: Uint8Array): Uint8Array => zlib().gzipSync(bytes);
import { IdxFormatError } from './errors.js';

/** Element types an IDX file can hold, named as typed arrays name them. */
export type IdxDType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

/** The typed array that holds each {@link IdxDType}. */
export interface IdxDataMap {
  uint8: Uint8Array;
  int8: Int8Array;
  int16: Int16Array;
  int32: Int32Array;
  float32: Float32Array;
  float64: Float64Array;
}

/** Any of the typed arrays in {@link IdxDataMap}. */
export type IdxData = IdxDataMap[IdxDType];

/**
 * A decoded IDX file: its element type, its shape and its elements in
 * row-major order, in host byte order. `data.length` is always the product of
 * `shape`. Narrowing on `dtype` narrows `data` (`dtype === 'uint8'` gives a
 * `Uint8Array`).
 */
export type IdxArray = {
  [D in IdxDType]: { dtype: D; shape: number[]; data: IdxDataMap[D] };
}[IdxDType];

/** The type byte of each dtype, as written in byte 2 of an IDX file. */
export const IDX_TYPE_CODES: Readonly<Record<IdxDType, number>> = Object.freeze({
  uint8: 0x08,
  int8: 0x09,
  int16: 0x0b,
  int32: 0x0c,
  float32: 0x0d,
  float64: 0x0e,
});

/**
 * Most dimensions a file may declare. Real IDX files have 1 to 4; the cap only
 * exists so that a corrupt dims byte (up to 255) is reported as such instead
 * of as a puzzling truncation of the header.
 */
export const MAX_IDX_DIMS = 16;

/**
 * Default cap on the bytes of element data (and on what a gzip wrapper may
 * inflate to): 2 GiB. MNIST's largest file is 47 MB; the cap turns a corrupt
 * size field or a gzip bomb into an error instead of an out-of-memory crash.
 */
export const DEFAULT_MAX_IDX_DATA_BYTES = 2 ** 31;

/** Options of {@link parseIdx}. */
export interface ParseIdxOptions {
  /** Largest element data accepted, in bytes; defaults to {@link DEFAULT_MAX_IDX_DATA_BYTES}. */
  readonly maxDataBytes?: number;
}

interface TypeInfo {
  readonly dtype: IdxDType;
  readonly size: number;
  /** The IDX spec's own name, used in messages so they match the spec people read. */
  readonly specName: string;
}

const TYPE_BY_CODE: ReadonlyMap<number, TypeInfo> = new Map([
  [0x08, { dtype: 'uint8', size: 1, specName: 'unsigned byte' }],
  [0x09, { dtype: 'int8', size: 1, specName: 'signed byte' }],
  [0x0b, { dtype: 'int16', size: 2, specName: 'short' }],
  [0x0c, { dtype: 'int32', size: 4, specName: 'int' }],
  [0x0d, { dtype: 'float32', size: 4, specName: 'float' }],
  [0x0e, { dtype: 'float64', size: 8, specName: 'double' }],
]);

const SIZE_BY_DTYPE: Readonly<Record<IdxDType, number>> = {
  uint8: 1,
  int8: 1,
  int16: 2,
  int32: 4,
  float32: 4,
  float64: 8,
};

const KNOWN_CODES = [...TYPE_BY_CODE.entries()].map(([code, t]) => `${hexByte(code)} (${t.specName})`).join(', ');

/**
 * Whether `bytes` start with the gzip magic 0x1f 0x8b. An IDX file starts
 * with 0x00 0x00, so the two never collide.
 *
 * @example
 * ```ts
 * isGzip(readFileSync('t10k-labels-idx1-ubyte.gz')); // true
 * ```
 */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Returns `bytes` inflated if they are gzip, else `bytes` unchanged.
 * Exposed so that callers can hash the decompressed content (which is the
 * same whatever gzip header a distributor wrote) before parsing it.
 *
 * @example
 * ```ts
 * const plain = gunzipIfNeeded(readFileSync(path), path);
 * const idx = parseIdx(plain, path);
 * ```
 *
 * @throws IdxFormatError with code `'bad-gzip'` if the gzip stream is corrupt,
 *   truncated, or inflates past the limit.
 */
export function gunzipIfNeeded(bytes: Uint8Array, fileName: string, options?: ParseIdxOptions): Uint8Array {
  checkParseArguments('gunzipIfNeeded', bytes, fileName);
  const maxData = maxDataBytesOption('gunzipIfNeeded', options);
  if (!isGzip(bytes)) return bytes;
  // The largest legal file is the biggest header plus the data cap. zlib
  // inflates chunk by chunk and stops as soon as the output passes this, so
  // a bomb costs at most the cap (plus one chunk) of memory, never its full size.
  const maxOutputLength = 4 + 4 * MAX_IDX_DIMS + maxData;
  try {
    return gunzipSync(bytes, { maxOutputLength });
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    if (err instanceof RangeError || (err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new IdxFormatError(
        'bad-gzip',
        fileName,
        `gzip data inflates to more than ${maxOutputLength} bytes, the most an IDX file within the ${maxData}-byte data limit can have (${why})`,
      );
    }
    throw new IdxFormatError(
      'bad-gzip',
      fileName,
      `starts with the gzip magic 0x1f 0x8b but its ${bytes.length} bytes do not inflate: ${why}`,
    );
  }
}

/**
 * Decodes an IDX file, gzipped or plain.
 *
 * The returned typed array owns its memory (it never aliases `bytes` or a
 * zlib buffer), so wrapping `data.buffer` elsewhere is safe.
 *
 * @param bytes the file's bytes
 * @param fileName used only in error messages; pass the path or name the
 *   user would recognise
 *
 * @example
 * ```ts
 * import { readFileSync } from 'node:fs';
 * const labels = parseIdx(readFileSync('train-labels-idx1-ubyte.gz'), 'train-labels-idx1-ubyte.gz');
 * labels.shape; // [60000]
 * ```
 *
 * @throws IdxFormatError naming the file, what was expected and what was
 *   found, for: a corrupt gzip wrapper (`bad-gzip`), a first two bytes that
 *   are not zero (`bad-magic`), an unknown type byte (`unknown-type`), zero,
 *   too many or too large dimensions (`bad-dims`), a file shorter than its
 *   header says (`truncated`), and bytes after the data (`trailing-bytes`).
 */
export function parseIdx(bytes: Uint8Array, fileName: string, options?: ParseIdxOptions): IdxArray {
  checkParseArguments('parseIdx', bytes, fileName);
  const maxData = maxDataBytesOption('parseIdx', options);
  const raw = gunzipIfNeeded(bytes, fileName, options);

  if (raw.length < 4) {
    throw new IdxFormatError(
      'truncated',
      fileName,
      `is ${raw.length} bytes long, shorter than the 4-byte IDX magic (expected at least 4 bytes, got ${raw.length})`,
    );
  }
  if (raw[0] !== 0 || raw[1] !== 0) {
    throw new IdxFormatError(
      'bad-magic',
      fileName,
      `bad IDX magic: expected the first two bytes to be 0x00 0x00, got ${hexBytes(raw, 0, 4)}${guessFormat(raw)}`,
    );
  }
  const type = TYPE_BY_CODE.get(raw[2]);
  if (type === undefined) {
    throw new IdxFormatError('unknown-type', fileName, `unknown IDX type code ${hexByte(raw[2])}: expected one of ${KNOWN_CODES}`);
  }
  const ndims = raw[3];
  if (ndims === 0 || ndims > MAX_IDX_DIMS) {
    throw new IdxFormatError('bad-dims', fileName, `declares ${ndims} dimensions: expected 1 to ${MAX_IDX_DIMS}`);
  }
  const headerBytes = 4 + 4 * ndims;
  if (raw.length < headerBytes) {
    throw new IdxFormatError(
      'truncated',
      fileName,
      `header declares ${ndims} dimensions and so needs ${headerBytes} bytes, but the file has only ${raw.length} bytes`,
    );
  }

  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const shape: number[] = [];
  // Multiply in floating point: 16 sizes of up to 2^32 overflow any integer
  // type, but a double still ends up above the cap (or at Infinity), which is
  // all the check below needs.
  let elements = 1;
  for (let i = 0; i < ndims; i++) {
    const size = view.getUint32(4 + 4 * i, false);
    shape.push(size);
    elements *= size;
  }
  const dataBytes = elements * type.size;
  if (dataBytes > maxData) {
    throw new IdxFormatError(
      'bad-dims',
      fileName,
      `dimensions [${shape.join(', ')}] of ${type.dtype} mean ${dataBytes} bytes of data, more than the limit of ${maxData} bytes`,
    );
  }
  const got = raw.length - headerBytes;
  if (got < dataBytes) {
    throw new IdxFormatError(
      'truncated',
      fileName,
      `truncated: shape [${shape.join(', ')}] of ${type.dtype} needs ${dataBytes} bytes of data after the ${headerBytes}-byte header, got ${got} (${dataBytes - got} missing)`,
    );
  }
  if (got > dataBytes) {
    throw new IdxFormatError(
      'trailing-bytes',
      fileName,
      `trailing bytes: shape [${shape.join(', ')}] of ${type.dtype} needs ${dataBytes} bytes of data after the ${headerBytes}-byte header, got ${got} (${got - dataBytes} extra)`,
    );
  }
  return decode(type.dtype, shape, elements, raw, headerBytes);
}

/** Copies the big-endian element data out of `raw` into a fresh host-order typed array. */
function decode(dtype: IdxDType, shape: number[], n: number, raw: Uint8Array, offset: number): IdxArray {
  const view = new DataView(raw.buffer, raw.byteOffset + offset, n * SIZE_BY_DTYPE[dtype]);
  switch (dtype) {
    case 'uint8': {
      const data = new Uint8Array(n);
      data.set(raw.subarray(offset, offset + n));
      return { dtype, shape, data };
    }
    case 'int8': {
      const bytes = new Uint8Array(n);
      bytes.set(raw.subarray(offset, offset + n));
      return { dtype, shape, data: new Int8Array(bytes.buffer) };
    }
    case 'int16': {
      const data = new Int16Array(n);
      for (let i = 0; i < n; i++) data[i] = view.getInt16(2 * i, false);
      return { dtype, shape, data };
    }
    case 'int32': {
      const data = new Int32Array(n);
      for (let i = 0; i < n; i++) data[i] = view.getInt32(4 * i, false);
      return { dtype, shape, data };
    }
    case 'float32': {
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = view.getFloat32(4 * i, false);
      return { dtype, shape, data };
    }
    case 'float64': {
      const data = new Float64Array(n);
      for (let i = 0; i < n; i++) data[i] = view.getFloat64(8 * i, false);
      return { dtype, shape, data };
    }
  }
}

/** Options of {@link encodeIdx}. */
export interface EncodeIdxOptions {
  /** Wrap the result in gzip, as the published `*.gz` files are. Default `false`. */
  readonly gzip?: boolean;
}

const CTOR_BY_DTYPE = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
} as const;

/**
 * Encodes an array as an IDX file (big-endian), optionally gzipped; the
 * inverse of {@link parseIdx}.
 *
 * @example
 * ```ts
 * const bytes = encodeIdx({ dtype: 'uint8', shape: [2, 2], data: Uint8Array.of(0, 1, 2, 3) });
 * writeFileSync('tiny-idx2-ubyte', bytes);
 * parseIdx(bytes, 'tiny').shape; // [2, 2]
 * ```
 *
 * @throws TypeError if `data` is not the typed array of `dtype`;
 *   RangeError if the shape has 0 or more than {@link MAX_IDX_DIMS}
 *   dimensions, a size that is not an integer in [0, 2^32), or a product
 *   different from `data.length`. These are caller mistakes, not file errors,
 *   hence not {@link IdxFormatError}.
 */
export function encodeIdx(array: IdxArray, options?: EncodeIdxOptions): Uint8Array {
  const { dtype, shape, data } = array;
  const ctor = (CTOR_BY_DTYPE as Record<string, unknown>)[dtype];
  if (ctor === undefined) throw new TypeError(`encodeIdx: unknown dtype ${JSON.stringify(dtype)}`);
  if (!(data instanceof (ctor as typeof Uint8Array))) {
    throw new TypeError(`encodeIdx: dtype ${dtype} needs a ${(ctor as typeof Uint8Array).name}, got ${describe(data)}`);
  }
  if (shape.length === 0 || shape.length > MAX_IDX_DIMS) {
    throw new RangeError(`encodeIdx: shape must have 1 to ${MAX_IDX_DIMS} dimensions, got ${shape.length}`);
  }
  let elements = 1;
  for (const size of shape) {
    if (!Number.isInteger(size) || size < 0 || size > 0xffffffff) {
      throw new RangeError(`encodeIdx: shape [${shape.join(', ')}] has a size that is not an integer in [0, 2^32)`);
    }
    elements *= size;
  }
  if (elements !== data.length) {
    throw new RangeError(`encodeIdx: shape [${shape.join(', ')}] holds ${elements} elements but data has ${data.length}`);
  }
  const size = SIZE_BY_DTYPE[dtype];
  const headerBytes = 4 + 4 * shape.length;
  const out = new Uint8Array(headerBytes + elements * size);
  const view = new DataView(out.buffer);
  out[2] = IDX_TYPE_CODES[dtype];
  out[3] = shape.length;
  shape.forEach((s, i) => view.setUint32(4 + 4 * i, s, false));
  const o = headerBytes;
  switch (array.dtype) {
    case 'uint8':
      out.set(array.data, o);
      break;
    case 'int8':
      out.set(new Uint8Array(array.data.buffer, array.data.byteOffset, array.data.length), o);
      break;
    case 'int16':
      array.data.forEach((v, i) => view.setInt16(o + 2 * i, v, false));
      break;
    case 'int32':
      array.data.forEach((v, i) => view.setInt32(o + 4 * i, v, false));
      break;
    case 'float32':
      array.data.forEach((v, i) => view.setFloat32(o + 4 * i, v, false));
      break;
    case 'float64':
      array.data.forEach((v, i) => view.setFloat64(o + 8 * i, v, false));
      break;
  }
  if (options?.gzip) {
    const gz = gzipSync(out);
    // Copy out of zlib's Buffer so the result is a plain Uint8Array that owns its memory.
    return new Uint8Array(gz);
  }
  return out;
}

/** Caller mistakes (not file errors, hence TypeError / RangeError rather than IdxFormatError). */
function checkParseArguments(fn: string, bytes: unknown, fileName: unknown): void {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `${fn}: bytes must be a Uint8Array (a Node Buffer is one, e.g. from readFileSync), got ${typeof bytes === 'string' ? `the string ${JSON.stringify(bytes.slice(0, 20))}` : describe(bytes)}`,
    );
  }
  if (typeof fileName !== 'string') throw new TypeError(`${fn}: fileName must be a string (used in messages), got ${describe(fileName)}`);
}

function maxDataBytesOption(fn: string, options: ParseIdxOptions | undefined): number {
  const v = options?.maxDataBytes;
  if (v === undefined) return DEFAULT_MAX_IDX_DATA_BYTES;
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0)) {
    throw new RangeError(
      `${fn}: option maxDataBytes must be a non-negative integer number of bytes (default ${DEFAULT_MAX_IDX_DATA_BYTES}), got ${typeof v === 'number' ? v : describe(v)}`,
    );
  }
  return v;
}

function hexByte(b: number): string {
  return `0x${b.toString(16).padStart(2, '0').toUpperCase()}`;
}

function hexBytes(bytes: Uint8Array, from: number, to: number): string {
  return [...bytes.subarray(from, to)].map(hexByte).join(' ');
}

/** A hint for the common ways a file that is not IDX ends up where one was expected. */
function guessFormat(raw: Uint8Array): string {
  if (raw[0] === 0x3c) return ' (looks like HTML/XML text, e.g. an error page saved by a download)';
  if (raw[0] === 0x50 && raw[1] === 0x4b) return ' (looks like a zip archive; unzip it first)';
  if (raw[0] === 0x93 && raw[1] === 0x4e) return ' (looks like a NumPy .npy file, not IDX)';
  return '';
}

function describe(x: unknown): string {
  if (x === null || x === undefined) return String(x);
  const name = (x as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' ? name : typeof x;
}
