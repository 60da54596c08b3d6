/**
 * Error types of the raw dataset layer.
 *
 * Every failure that comes from the *content* of a file or from where the
 * data lives is one of these classes, so callers (and the fuzz tests) can tell
 * "this file is bad / missing" apart from a bug: anything else that escapes
 * this layer is a bug. Each error keeps the facts in fields as well as in the
 * message, so programs need not parse the text.
 */

/** What was wrong with an IDX file; see {@link IdxFormatError}. */
export type IdxErrorCode = 'bad-gzip' | 'bad-magic' | 'unknown-type' | 'bad-dims' | 'truncated' | 'trailing-bytes';

/**
 * An IDX file (or its gzip wrapper) that cannot be read. The message names the
 * file, what was expected and what was found.
 *
 * @example
 * ```ts
 * try { parseIdx(bytes, 'train-images-idx3-ubyte.gz'); }
 * catch (e) { if (e instanceof IdxFormatError && e.code === 'truncated') retryDownload(); }
 * ```
 */
export class IdxFormatError extends Error {
  override readonly name = 'IdxFormatError';

  constructor(
    /** Machine-readable reason. */
    readonly code: IdxErrorCode,
    /** The file name given to the parser. */
    readonly fileName: string,
    message: string,
  ) {
    super(`${fileName}: ${message}`);
  }
}

/** What went wrong while locating, downloading or checking a dataset; see {@link DatasetError}. */
export type DatasetErrorCode =
  /** No location holds the files and download was off or failed. */
  | 'not-found'
  /** A file is there but cannot be read (permissions, a directory, an I/O error); `cause` holds Node's error. */
  | 'unreadable'
  /** A file parsed but has the wrong dtype or shape for this dataset. */
  | 'bad-shape'
  /** A label is outside the dataset's classes. */
  | 'bad-label'
  /** The images file and the labels file of a split disagree on the count. */
  | 'count-mismatch'
  /** A file's sha256 is not the published one; see {@link ChecksumError}. */
  | 'checksum';

/**
 * A dataset that cannot be loaded: missing, of the wrong shape, or not the
 * published bytes.
 *
 * @example
 * ```ts
 * try { await loadFashionMnistRaw({ download: false }); }
 * catch (e) { if (e instanceof DatasetError && e.code === 'not-found') console.error(e.message); }
 * ```
 */
export class DatasetError extends Error {
  override readonly name: string = 'DatasetError';

  constructor(
    /** Machine-readable reason. */
    readonly code: DatasetErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A file whose sha256 differs from the published one. Keeps the path and both
 * hashes so a caller can delete the file and retry.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof ChecksumError) await fs.rm(e.file); }
 * ```
 */
export class ChecksumError extends DatasetError {
  override readonly name: string = 'ChecksumError';

  constructor(
    /** The file (a path, or a URL for a download) whose bytes were hashed. */
    readonly file: string,
    /** The published sha256, lowercase hex. */
    readonly expected: string,
    /** The sha256 of the bytes that were found, lowercase hex. */
    readonly actual: string,
    /** What was hashed, for the message: e.g. 'downloaded archive', 'decompressed content'. */
    what: string,
    hint: string,
  ) {
    super('checksum', `${file}: sha256 mismatch for the ${what}: expected ${expected}, got ${actual}. ${hint}`);
  }
}
