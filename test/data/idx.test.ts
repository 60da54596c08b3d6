/**
 * IDX reading and writing: hand-written byte fixtures (the format spec, not
 * the encoder, is the reference), round trips through encode/parse, every
 * error the parser reports, and a fuzz over corrupted files.
 */
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { gzipSync } from 'node:zlib';
import { IdxFormatError, type IdxErrorCode } from '../../data/raw/errors.js';
import { encodeIdx, parseIdx, MAX_IDX_DIMS, type IdxArray, type IdxDType } from '../../data/raw/idx.js';

const bytes = (...xs: number[]): Uint8Array => Uint8Array.from(xs);

/** Runs `fn`, asserts it throws an IdxFormatError with `code`, and returns the message. */
function idxError(tt: Tap, fn: () => unknown, code: IdxErrorCode): string {
  try {
    fn();
  } catch (e) {
    tt.ok(e instanceof IdxFormatError, `throws IdxFormatError (got ${String(e)})`);
    if (e instanceof IdxFormatError) {
      tt.equal(e.code, code, 'error code');
      return e.message;
    }
    return '';
  }
  tt.fail(`expected an IdxFormatError ${code}, nothing was thrown`);
  return '';
}
type Tap = Test;

/** Asserts that every fragment appears in `msg`. */
function mentions(tt: Tap, msg: string, ...fragments: string[]): void {
  for (const f of fragments) tt.ok(msg.includes(f), `message mentions ${JSON.stringify(f)}: ${msg}`);
}

t.test('hand-written fixtures decode to the values the spec says', async (t) => {
  // uint8, shape [2, 3]: magic 00 00 08 02, dims 2 and 3, six bytes.
  const u8 = parseIdx(bytes(0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 250, 251, 255), 'u8');
  t.same(u8.shape, [2, 3]);
  t.equal(u8.dtype, 'uint8');
  t.same([...u8.data], [1, 2, 3, 250, 251, 255]);
  t.ok(u8.data instanceof Uint8Array);

  // int8: 0x80 is -128, 0xFF is -1.
  const i8 = parseIdx(bytes(0, 0, 0x09, 1, 0, 0, 0, 3, 0x80, 0xff, 0x7f), 'i8');
  t.same([...i8.data], [-128, -1, 127]);
  t.ok(i8.data instanceof Int8Array);

  // int16 big-endian: FF FE is -2, 01 02 is 258.
  const i16 = parseIdx(bytes(0, 0, 0x0b, 1, 0, 0, 0, 2, 0xff, 0xfe, 0x01, 0x02), 'i16');
  t.same([...i16.data], [-2, 258]);
  t.ok(i16.data instanceof Int16Array);

  // int32: FF FF FF FF is -1, 00 01 00 00 is 65536.
  const i32 = parseIdx(bytes(0, 0, 0x0c, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0), 'i32');
  t.same([...i32.data], [-1, 65536]);

  // float32: 3F C0 00 00 is 1.5, C0 49 0F DB is float32(-pi).
  const f32 = parseIdx(bytes(0, 0, 0x0d, 1, 0, 0, 0, 2, 0x3f, 0xc0, 0, 0, 0xc0, 0x49, 0x0f, 0xdb), 'f32');
  t.equal(f32.data[0], 1.5);
  t.equal(f32.data[1], Math.fround(-Math.PI));
  t.ok(f32.data instanceof Float32Array);

  // float64: BF D0 00.. is -0.25.
  const f64 = parseIdx(bytes(0, 0, 0x0e, 1, 0, 0, 0, 1, 0xbf, 0xd0, 0, 0, 0, 0, 0, 0), 'f64');
  t.same([...f64.data], [-0.25]);
  t.ok(f64.data instanceof Float64Array);

  // A zero-sized dimension is legal: no data bytes.
  const empty = parseIdx(bytes(0, 0, 0x08, 3, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28), 'empty');
  t.same(empty.shape, [0, 28, 28]);
  t.equal(empty.data.length, 0);
});

t.test('encodeIdx writes exactly the spec bytes', async (t) => {
  t.same([...encodeIdx({ dtype: 'int16', shape: [2], data: Int16Array.of(-2, 258) })], [0, 0, 0x0b, 1, 0, 0, 0, 2, 0xff, 0xfe, 0x01, 0x02]);
  t.same(
    [...encodeIdx({ dtype: 'float32', shape: [1, 1], data: Float32Array.of(1.5) })],
    [0, 0, 0x0d, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0x3f, 0xc0, 0, 0],
  );
  t.same([...encodeIdx({ dtype: 'int8', shape: [2], data: Int8Array.of(-128, -1) })], [0, 0, 0x09, 1, 0, 0, 0, 2, 0x80, 0xff]);
  const gz = encodeIdx({ dtype: 'uint8', shape: [3], data: Uint8Array.of(7, 8, 9) }, { gzip: true });
  t.same([gz[0], gz[1]], [0x1f, 0x8b], 'gzip option gzips');
  t.same([...parseIdx(gz, 'gz').data], [7, 8, 9]);
});

t.test('parsed data owns its memory (never a view of the input or of a zlib buffer)', async (t) => {
  const file = encodeIdx({ dtype: 'uint8', shape: [4], data: Uint8Array.of(1, 2, 3, 4) });
  const a = parseIdx(file, 'a');
  t.equal(a.data.byteOffset, 0);
  t.equal(a.data.buffer.byteLength, 4);
  file[8] = 99;
  t.equal(a.data[0], 1, 'mutating the input does not change the result');
  const b = parseIdx(gzipSync(encodeIdx({ dtype: 'int8', shape: [2], data: Int8Array.of(-1, 1) })), 'b');
  t.equal(b.data.buffer.byteLength, 2, 'not a slice of a pooled Buffer');
});

t.test('encodeIdx rejects inconsistent arrays', async (t) => {
  t.throws(() => encodeIdx({ dtype: 'uint8', shape: [2, 2], data: new Uint8Array(3) }), RangeError);
  t.throws(() => encodeIdx({ dtype: 'uint8', shape: [], data: new Uint8Array(1) }), RangeError);
  t.throws(() => encodeIdx({ dtype: 'uint8', shape: [1.5], data: new Uint8Array(1) }), RangeError);
  t.throws(() => encodeIdx({ dtype: 'int16', shape: [1], data: new Uint8Array(1) } as unknown as IdxArray), TypeError);
});

// ------------------------------------------------------------------ round trips

const dtypes: IdxDType[] = ['uint8', 'int8', 'int16', 'int32', 'float32', 'float64'];

/** An arbitrary IdxArray of any dtype with a small shape of 1 to 4 dims. */
const arbIdx: fc.Arbitrary<IdxArray> = fc
  .tuple(fc.constantFrom(...dtypes), fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 4 }))
  .chain(([dtype, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const arr = <T>(a: fc.Arbitrary<T>) => fc.array(a, { minLength: n, maxLength: n });
    switch (dtype) {
      case 'uint8':
        return arr(fc.integer({ min: 0, max: 255 })).map((v): IdxArray => ({ dtype, shape, data: Uint8Array.from(v) }));
      case 'int8':
        return arr(fc.integer({ min: -128, max: 127 })).map((v): IdxArray => ({ dtype, shape, data: Int8Array.from(v) }));
      case 'int16':
        return arr(fc.integer({ min: -32768, max: 32767 })).map((v): IdxArray => ({ dtype, shape, data: Int16Array.from(v) }));
      case 'int32':
        return arr(fc.integer()).map((v): IdxArray => ({ dtype, shape, data: Int32Array.from(v) }));
      case 'float32':
        return arr(fc.float()).map((v): IdxArray => ({ dtype, shape, data: Float32Array.from(v) }));
      case 'float64':
        return arr(fc.double()).map((v): IdxArray => ({ dtype, shape, data: Float64Array.from(v) }));
    }
  });

t.test('encode then parse gives back the same array, gzipped or not', async (t) => {
  fc.assert(
    fc.property(arbIdx, fc.boolean(), (a, gzip) => {
      const b = parseIdx(encodeIdx(a, { gzip }), 'roundtrip');
      if (b.dtype !== a.dtype) return false;
      if (b.shape.join() !== a.shape.join()) return false;
      if (b.data.constructor !== a.data.constructor || b.data.length !== a.data.length) return false;
      // Object.is: NaN equals NaN, and -0 must stay -0.
      for (let i = 0; i < a.data.length; i++) if (!Object.is(a.data[i], b.data[i])) return false;
      return true;
    }),
    { numRuns: 300 },
  );
  t.pass('300 random arrays round-tripped');
});

t.test('the size in the file follows the format: header 4 + 4*dims, then elements * width', async (t) => {
  const width: Record<IdxDType, number> = { uint8: 1, int8: 1, int16: 2, int32: 4, float32: 4, float64: 8 };
  fc.assert(
    fc.property(arbIdx, (a) => encodeIdx(a).length === 4 + 4 * a.shape.length + a.data.length * width[a.dtype]),
    { numRuns: 200 },
  );
  t.pass('sizes agree');
});

// ------------------------------------------------------------------ errors

t.test('bad magic names the file and the bytes found', async (t) => {
  const msg = idxError(t, () => parseIdx(bytes(0x01, 0x00, 0x08, 0x01, 0, 0, 0, 0), 'labels.idx'), 'bad-magic');
  mentions(t, msg, 'labels.idx', '0x00 0x00', '0x01 0x00 0x08 0x01');
  const html = new TextEncoder().encode('<html><body>403 Forbidden</body></html>');
  const msg2 = idxError(t, () => parseIdx(html, 'page.gz'), 'bad-magic');
  mentions(t, msg2, 'page.gz', 'HTML', '0x3C 0x68 0x74 0x6D');
});

t.test('unknown type code names the code and the known ones', async (t) => {
  const msg = idxError(t, () => parseIdx(bytes(0, 0, 0x07, 1, 0, 0, 0, 1, 5), 'weird.idx'), 'unknown-type');
  mentions(t, msg, 'weird.idx', '0x07', '0x08', '0x09', '0x0B', '0x0C', '0x0D', '0x0E');
});

t.test('zero or too many dimensions', async (t) => {
  const zero = idxError(t, () => parseIdx(bytes(0, 0, 0x08, 0), 'zero.idx'), 'bad-dims');
  mentions(t, zero, 'zero.idx', '0 dimensions', `1 to ${MAX_IDX_DIMS}`);
  const many = idxError(t, () => parseIdx(bytes(0, 0, 0x08, 200, ...new Array(800).fill(0)), 'many.idx'), 'bad-dims');
  mentions(t, many, 'many.idx', '200 dimensions', `1 to ${MAX_IDX_DIMS}`);
});

t.test('absurd sizes are rejected before any allocation', async (t) => {
  // 3 x 2^32-1 uint8 is ~7.9e28 bytes; a file this small could never hold it.
  const head = bytes(0, 0, 0x08, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
  const msg = idxError(t, () => parseIdx(head, 'huge.idx'), 'bad-dims');
  mentions(t, msg, 'huge.idx', '[4294967295, 4294967295, 4294967295]', String(2 ** 31));
  // The limit is an option: 10 int16 = 20 bytes against a limit of 16.
  const file = encodeIdx({ dtype: 'int16', shape: [10], data: new Int16Array(10) });
  const msg2 = idxError(t, () => parseIdx(file, 'cap.idx', { maxDataBytes: 16 }), 'bad-dims');
  mentions(t, msg2, 'cap.idx', '[10]', '20 bytes', '16 bytes');
});

t.test('truncated header and data say how many bytes were expected and found', async (t) => {
  const tiny = idxError(t, () => parseIdx(bytes(0, 0), 'tiny.idx'), 'truncated');
  mentions(t, tiny, 'tiny.idx', 'expected at least 4 bytes, got 2');

  // 3 dims need a 16-byte header; give 8 bytes.
  const head = idxError(t, () => parseIdx(bytes(0, 0, 0x08, 3, 0, 0, 0, 1), 'head.idx'), 'truncated');
  mentions(t, head, 'head.idx', '3 dimensions', 'needs 16 bytes', 'only 8 bytes');

  // uint8 [3, 4] needs 12 data bytes; give 10.
  const full = encodeIdx({ dtype: 'uint8', shape: [3, 4], data: new Uint8Array(12) });
  const data = idxError(t, () => parseIdx(full.subarray(0, full.length - 2), 'images.idx'), 'truncated');
  mentions(t, data, 'images.idx', '[3, 4]', 'needs 12 bytes', 'got 10', '2 missing');

  // int32 [3] needs 12 bytes; give 11: a partial element is still truncation.
  const i32 = encodeIdx({ dtype: 'int32', shape: [3], data: new Int32Array(3) });
  const partial = idxError(t, () => parseIdx(i32.subarray(0, i32.length - 1), 'i32.idx'), 'truncated');
  mentions(t, partial, 'i32.idx', 'int32', 'needs 12 bytes', 'got 11', '1 missing');
});

t.test('trailing bytes are an error, with the count', async (t) => {
  const full = encodeIdx({ dtype: 'uint8', shape: [3, 4], data: new Uint8Array(12) });
  const longer = new Uint8Array(full.length + 3);
  longer.set(full);
  const msg = idxError(t, () => parseIdx(longer, 'labels.idx'), 'trailing-bytes');
  mentions(t, msg, 'labels.idx', 'needs 12 bytes', 'got 15', '3 extra');
});

t.test('bad gzip: corrupt, truncated, or inflating past the limit', async (t) => {
  const good = encodeIdx({ dtype: 'uint8', shape: [64], data: new Uint8Array(64).map((_, i) => i) }, { gzip: true });
  const cut = good.subarray(0, good.length - 10);
  const msg = idxError(t, () => parseIdx(cut, 'cut.gz'), 'bad-gzip');
  mentions(t, msg, 'cut.gz', `${cut.length} bytes`);

  const garbage = bytes(0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff);
  mentions(
    t,
    idxError(t, () => parseIdx(garbage, 'garbage.gz'), 'bad-gzip'),
    'garbage.gz',
    '14 bytes',
  );

  // A flipped bit in the stored CRC: the deflate data is fine, the check is not.
  const crc = Uint8Array.from(good);
  crc[crc.length - 6] ^= 0x01;
  mentions(
    t,
    idxError(t, () => parseIdx(crc, 'crc.gz'), 'bad-gzip'),
    'crc.gz',
  );

  // 1 MB of zeros gzips to ~1 KB; with a 100-byte data limit it must not inflate fully.
  const bomb = gzipSync(new Uint8Array(1 << 20));
  const limit = 4 + 4 * MAX_IDX_DIMS + 100;
  mentions(
    t,
    idxError(t, () => parseIdx(bomb, 'bomb.gz', { maxDataBytes: 100 }), 'bad-gzip'),
    'bomb.gz',
    String(limit),
  );
});

// ------------------------------------------------------------------ fuzz

/** A mutation: overwrite some bytes, then maybe cut the file, maybe append bytes. */
interface Mutation {
  readonly writes: ReadonlyArray<readonly [number, number]>;
  readonly cut: number | null;
  readonly append: readonly number[];
}
// Weighted so that a fair share of files stay well-formed (no cut, nothing
// appended, writes only into the data), and the "parses" branch is exercised too.
const arbMutation: fc.Arbitrary<Mutation> = fc.record({
  writes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
  cut: fc.oneof({ arbitrary: fc.constant(null), weight: 2 }, { arbitrary: fc.nat(), weight: 1 }),
  append: fc.oneof(
    { arbitrary: fc.constant([]), weight: 2 },
    { arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 3 }), weight: 1 },
  ),
});

function mutate(file: Uint8Array, m: Mutation): Uint8Array {
  const out = Uint8Array.from(file);
  for (const [pos, v] of m.writes) if (out.length > 0) out[pos % out.length] = v;
  const cut = m.cut === null ? out : out.subarray(0, m.cut % (out.length + 1));
  const res = new Uint8Array(cut.length + m.append.length);
  res.set(cut);
  res.set(m.append, cut.length);
  return res;
}

const ctorOf: Record<IdxDType, unknown> = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
};

t.test('fuzz: corrupted files either parse consistently or throw IdxFormatError', async (t) => {
  let parsed = 0;
  let rejected = 0;
  fc.assert(
    fc.property(arbIdx, fc.boolean(), arbMutation, (a, gzip, m) => {
      const file = mutate(encodeIdx(a, { gzip }), m);
      let r: IdxArray;
      try {
        r = parseIdx(file, 'fuzz.idx');
      } catch (e) {
        if (!(e instanceof IdxFormatError)) throw e; // anything else is a bug
        if (!e.message.startsWith('fuzz.idx: ')) throw new Error(`message does not name the file: ${e.message}`);
        rejected++;
        return true;
      }
      parsed++;
      const n = r.shape.reduce((x, y) => x * y, 1);
      return r.data.length === n && r.data.constructor === ctorOf[r.dtype] && r.shape.length >= 1;
    }),
    { numRuns: 1000 },
  );
  // Both outcomes must occur, or the property was not exercising anything.
  t.ok(parsed > 0, `some mutated files still parse (${parsed})`);
  t.ok(rejected > 0, `some mutated files are rejected (${rejected})`);
});

t.test('fuzz: arbitrary bytes never escape as anything but IdxFormatError', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (raw, gz) => {
      const input = gz ? Uint8Array.from([0x1f, 0x8b, ...raw]) : raw;
      try {
        const r = parseIdx(input, 'noise');
        return r.data.length === r.shape.reduce((x, y) => x * y, 1);
      } catch (e) {
        if (e instanceof IdxFormatError) return true;
        throw e;
      }
    }),
    { numRuns: 1000 },
  );
  t.pass('no foreign exceptions');
});
