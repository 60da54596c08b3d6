import t, { type Test } from 'tap';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  array,
  broadcastTo,
  fromTyped,
  NDArray,
  reshape,
  scalar,
  slice,
  Tensor,
  transpose,
  zeros,
  type DType,
  type Tree,
  type TypedArray,
} from '../../core/index.js';
import {
  loadTensors,
  loadTensorsSync,
  readTensorMetadata,
  readTensorMetadataSync,
  SafetensorsError,
  saveTensors,
  saveTensorsSync,
  tensorMetadataFromBytes,
  tensorsFromBytes,
  tensorsToBytes,
  TREE_METADATA_KEY,
} from '../../nn/serialize.js';

// ----------------------------------------------------------------------------- helpers

const CTOR = { float32: Float32Array, float64: Float64Array, int32: Int32Array, uint32: Uint32Array, bool: Uint8Array } as const;

function bytesOf(x: TypedArray): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Deterministic values of every kind (NaN, -0, infinities, subnormals, extremes). */
function makeTensor(dtype: DType, shape: readonly number[], seed: number): NDArray {
  const size = shape.reduce((a, d) => a * d, 1);
  const data = new CTOR[dtype](size);
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const specials = [NaN, -0, Infinity, -Infinity, 1e-40, 5e-324, 3.4e38, -1.5];
  for (let i = 0; i < size; i++) {
    const r = next();
    if (dtype === 'bool') data[i] = r & 1;
    else if (dtype === 'int32' || dtype === 'uint32') data[i] = r;
    else data[i] = r % 5 === 0 ? specials[r % specials.length] : (r / 2 ** 32 - 0.5) * 2 ** ((r % 40) - 20);
  }
  return fromTyped(data, shape, dtype);
}

/** Describes the first difference between two records (tensors compared bit for bit), or null. */
function treeDiff(a: unknown, b: unknown, path = 'root'): string | null {
  if (a instanceof Tensor || b instanceof Tensor) {
    if (!(a instanceof Tensor) || !(b instanceof Tensor)) return `${path}: tensor vs ${typeof (a instanceof Tensor ? b : a)}`;
    if (a.dtype !== b.dtype) return `${path}: dtype ${a.dtype} vs ${b.dtype}`;
    if (a.shape.join() !== b.shape.join() || a.shape.length !== b.shape.length) return `${path}: shape [${a.shape}] vs [${b.shape}]`;
    if (!bytesEqual(bytesOf(a.toTyped()), bytesOf(b.toTyped()))) return `${path}: values differ`;
    return null;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return `${path}: array vs ${JSON.stringify(b)}`;
    for (let i = 0; i < a.length; i++) {
      const d = treeDiff(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return null;
  }
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    if (JSON.stringify(ka) !== JSON.stringify(kb)) return `${path}: keys ${JSON.stringify(ka)} vs ${JSON.stringify(kb)}`;
    for (const k of ka) {
      const d = treeDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
      if (d) return d;
    }
    return null;
  }
  return Object.is(a, b) ? null : `${path}: ${String(a)} vs ${String(b)}`;
}

/** Every tensor in a loaded record: a contiguous NDArray owning exactly its values. */
function loadedLeaves(tree: unknown, out: NDArray[] = []): NDArray[] {
  if (tree instanceof Tensor) {
    if (!(tree instanceof NDArray)) throw new Error('loaded leaf is not an NDArray');
    out.push(tree);
  } else if (Array.isArray(tree)) tree.forEach((c) => loadedLeaves(c, out));
  else if (typeof tree === 'object' && tree !== null) Object.values(tree).forEach((c) => loadedLeaves(c, out));
  return out;
}

function checkLoaded(t: Test, tree: unknown): void {
  for (const leaf of loadedLeaves(tree)) {
    t.ok(leaf.isContiguous() && leaf.offset === 0 && leaf.data.length === leaf.size, 'loaded tensor is contiguous and owns its values');
  }
}

const enc = new TextEncoder();

/** A safetensors file built by hand from header text and raw data bytes (padding optional). */
function handFile(header: string, data: readonly number[] | Uint8Array, pad = true): Uint8Array {
  let h = enc.encode(header);
  if (pad && h.length % 8 !== 0) h = enc.encode(header + ' '.repeat(8 - (h.length % 8)));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'spiketrace-serialize-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const record = (): Tree => ({
  params: {
    dense: { kernel: makeTensor('float32', [3, 4], 1), bias: makeTensor('float32', [4], 2) },
    embed: [makeTensor('float64', [2, 2], 3), makeTensor('int32', [5], 4)],
    mask: makeTensor('bool', [2, 3], 5),
  },
  opt: {
    mu: { dense: { kernel: makeTensor('float32', [3, 4], 6) } },
    count: scalar(7, 'int32'),
    seed: makeTensor('uint32', [2], 8),
  },
  config: { lr: 0.001, name: 'adam', nesterov: false, decay: null, clip: undefined, eps: -0, limit: Infinity, bad: NaN },
  empty: zeros([0, 3]),
  list: [1, 'two', [zeros([])]],
});

// ----------------------------------------------------------------------------- layout

t.test('byte layout of a tiny file matches a hand-computed sequence', async (t) => {
  const bytes = tensorsToBytes({ w: array([1, -2]), n: scalar(7, 'int32') });
  // Header written out by hand: metadata first, then tensors in leaf order (keys sorted), compact JSON.
  const header =
    '{"__metadata__":{"spiketrace.tree":"{\\"kind\\":\\"object\\",\\"keys\\":[\\"n\\",\\"w\\"],\\"children\\":[{\\"kind\\":\\"leaf\\",\\"name\\":\\"n\\"},{\\"kind\\":\\"leaf\\",\\"name\\":\\"w\\"}]}"},' +
    '"n":{"dtype":"I32","shape":[],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}';
  t.equal(header.length, 274, 'hand-counted header length');
  const expected = [
    ...[0x18, 0x01, 0, 0, 0, 0, 0, 0], // 280 = 274 + 6 spaces, u64 little-endian
    ...Array.from(header, (c) => c.charCodeAt(0)),
    ...[0x20, 0x20, 0x20, 0x20, 0x20, 0x20],
    ...[0x07, 0x00, 0x00, 0x00], // int32 7
    ...[0x00, 0x00, 0x80, 0x3f], // float32 1
    ...[0x00, 0x00, 0x00, 0xc0], // float32 -2
  ];
  t.equal(bytes.length, 300);
  t.same(Array.from(bytes), expected);
  t.equal((8 + 280) % 8, 0, 'data starts 8-aligned');
});

t.test('header is padded with spaces to a multiple of 8 and tensors tile the data in header order', async (t) => {
  for (let k = 0; k < 10; k++) {
    const tree: Record<string, Tree> = {};
    for (let i = 0; i < k; i++) tree[`t${'x'.repeat(i)}`] = makeTensor(i % 2 ? 'bool' : 'float64', [i], i);
    const bytes = tensorsToBytes(tree, { k: 'v'.repeat(k) });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    t.equal((8 + n) % 8, 0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    t.match(text, /^\{.*\} *$/);
    const header = JSON.parse(text) as Record<string, { data_offsets: [number, number] }>;
    let pos = 0;
    for (const [name, info] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      t.equal(info.data_offsets[0], pos, `${name} starts where the previous ended`);
      pos = info.data_offsets[1];
    }
    t.equal(8 + n + pos, bytes.length, 'no trailing bytes');
  }
});

t.test('integer-like names keep header order = data order', async (t) => {
  const tree = [makeTensor('float32', [2], 1), makeTensor('int32', [3], 2)];
  const bytes = tensorsToBytes({ b: tree, a: { '10': scalar(1), '2': scalar(2) } });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const order = [...text.matchAll(/"([^"\\]+)":\{"dtype"/g)].map((m) => m[1]);
  t.same(order, ['a.10', 'a.2', 'b.0', 'b.1']);
  t.equal(treeDiff(tensorsFromBytes(bytes), { b: tree, a: { '10': scalar(1), '2': scalar(2) } }), null);
});

// ----------------------------------------------------------------------------- round trips

t.test('round trip of a nested record with every dtype, statics, scalars, empty and zero-size tensors', async (t) => {
  const rec = record();
  const back = tensorsFromBytes(tensorsToBytes(rec, { epoch: '3' }));
  t.equal(treeDiff(back, rec), null);
  checkLoaded(t, back);
  const b = back as { config: { eps: number; bad: number; clip: unknown }; list: unknown[] };
  t.ok(
    Object.is(b.config.eps, -0) && Number.isNaN(b.config.bad) && 'clip' in b.config && b.config.clip === undefined,
    'special statics survive',
  );
  t.same(tensorMetadataFromBytes(tensorsToBytes(rec, { epoch: '3' })), { epoch: '3' });
  t.same(tensorMetadataFromBytes(tensorsToBytes(rec)), {});
});

t.test('leaf names are the dotted paths', async (t) => {
  const bytes = tensorsToBytes(record());
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  t.same(
    Object.keys(header).sort(),
    [
      '__metadata__',
      'empty',
      'list.2.0',
      'opt.count',
      'opt.mu.dense.kernel',
      'opt.seed',
      'params.dense.bias',
      'params.dense.kernel',
      'params.embed.0',
      'params.embed.1',
      'params.mask',
    ].sort(),
  );
  t.same(header['opt.count'], { dtype: 'I32', shape: [], data_offsets: (header['opt.count'] as { data_offsets: number[] }).data_offsets });
  t.same((header['empty'] as { shape: number[] }).shape, [0, 3]);
});

t.test('roots: a single tensor, a static, an empty record', async (t) => {
  const x = makeTensor('float64', [2, 1], 9);
  t.equal(treeDiff(tensorsFromBytes(tensorsToBytes(x)), x), null);
  t.equal(tensorsFromBytes(tensorsToBytes(null)), null);
  t.equal(tensorsFromBytes(tensorsToBytes(3.5)), 3.5);
  t.same(tensorsFromBytes(tensorsToBytes({})), {});
  t.same(tensorsFromBytes(tensorsToBytes([])), []);
  t.same(tensorsFromBytes(tensorsToBytes({ a: [] })), { a: [] });
});

t.test('unusual keys (__proto__, empty, unicode, integer-like) round trip as own properties', async (t) => {
  const tree: Record<string, Tree> = {
    ['__proto__']: { x: scalar(1) },
    '': scalar(2),
    'é ü': scalar(3),
    '0': scalar(4),
    constructor: scalar(5),
  };
  t.ok(Object.prototype.hasOwnProperty.call(tree, '__proto__'));
  const back = tensorsFromBytes(tensorsToBytes(tree)) as Record<string, Tree>;
  t.ok(Object.prototype.hasOwnProperty.call(back, '__proto__'), '__proto__ is an own key');
  t.equal(Object.getPrototypeOf(back), Object.prototype);
  t.equal(treeDiff(back, tree), null);
});

t.test('views are written as their row-major values', async (t) => {
  const x = array([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  const views = {
    transposed: transpose(x),
    broadcast: broadcastTo(array([1, 2, 3], { dtype: 'int32' }), [4, 3]),
    sliced: slice(x, [0, 1], [2, 2]),
    row: reshape(slice(x, [1, 0], [1, 3]), [3]),
    boolT: transpose(
      array(
        [
          [1, 0, 1],
          [0, 0, 1],
        ],
        { dtype: 'bool' },
      ),
    ),
  };
  for (const v of Object.values(views))
    t.notOk((v as NDArray).isContiguous() && (v as NDArray).offset === 0 && (v as NDArray).data.length === v.size, 'really a view');
  const back = tensorsFromBytes(tensorsToBytes(views)) as Record<string, NDArray>;
  t.same(Array.from(back.transposed.toTyped()), [1, 4, 2, 5, 3, 6]);
  t.same(back.transposed.shape, [3, 2]);
  t.same(Array.from(back.broadcast.toTyped()), [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
  t.same(Array.from(back.sliced.toTyped()), [2, 3, 5, 6]);
  t.same(Array.from(back.row.toTyped()), [4, 5, 6]);
  t.same(back.boolT.toNested(), [
    [1, 0],
    [0, 0],
    [1, 1],
  ]);
  t.equal(treeDiff(back, views), null);
  checkLoaded(t, back);
});

const dtypeArb = fc.constantFrom<DType>('float32', 'float64', 'int32', 'uint32', 'bool');
const tensorArb = fc
  .record({ dtype: dtypeArb, shape: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }), seed: fc.integer() })
  .map(({ dtype, shape, seed }) => makeTensor(dtype, shape, seed) as Tree);
const staticArb: fc.Arbitrary<Tree> = fc.oneof(
  fc.constant(null),
  fc.constant(undefined),
  fc.double(),
  fc.integer(),
  fc.string({ maxLength: 4 }),
  fc.boolean(),
);
const keyArb = fc.oneof(
  fc.constantFrom('kernel', 'bias', 'mu', '0', '12', '__proto__', '', 'é', 'a b'),
  fc.string({ maxLength: 4 }).filter((s) => !s.includes('.')),
);
const { tree: treeArb } = fc.letrec<{ tree: Tree; leaf: Tree; obj: Tree; arr: Tree }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('obj'), tie('arr')),
  leaf: fc.oneof(tensorArb, tensorArb, staticArb),
  obj: fc.dictionary(keyArb, tie('tree'), { maxKeys: 4 }) as fc.Arbitrary<Tree>,
  arr: fc.array(tie('tree'), { maxLength: 3 }) as fc.Arbitrary<Tree>,
}));

t.test('property: random records round trip exactly, with and without a template', async (t) => {
  fc.assert(
    fc.property(treeArb, (tree) => {
      const bytes = tensorsToBytes(tree);
      const back = tensorsFromBytes(bytes);
      const d1 = treeDiff(back, tree);
      if (d1) throw new Error(`no template: ${d1}`);
      const viaTemplate = tensorsFromBytes(bytes, tree);
      const d2 = treeDiff(viaTemplate, tree);
      if (d2) throw new Error(`template: ${d2}`);
      for (const leaf of loadedLeaves(back))
        if (!(leaf.isContiguous() && leaf.offset === 0 && leaf.data.length === leaf.size)) throw new Error('not contiguous');
    }),
    { numRuns: 150 },
  );
  t.pass('150 random records');
});

// ----------------------------------------------------------------------------- files

t.test('saveTensors / loadTensors and the sync variants', async (t) => {
  const dir = tmp(t);
  const rec = record();
  const p1 = join(dir, 'a.safetensors');
  await saveTensors(p1, rec, { note: 'async' });
  t.equal(treeDiff(await loadTensors(p1), rec), null);
  t.equal(treeDiff(loadTensorsSync(p1), rec), null);
  t.same(await readTensorMetadata(p1), { note: 'async' });
  const p2 = join(dir, 'b.safetensors');
  saveTensorsSync(p2, rec, { note: 'sync' });
  t.same(
    readFileSync(p2).subarray(readFileSync(p2).length - 100),
    readFileSync(p1).subarray(readFileSync(p1).length - 100),
    'same data bytes',
  );
  t.equal(treeDiff(await loadTensors(p2, rec), rec), null);
  t.same(readTensorMetadataSync(p2), { note: 'sync' });
  // overwrite
  await saveTensors(p1, { only: scalar(1) });
  t.equal(treeDiff(await loadTensors(p1), { only: scalar(1) }), null);
  t.same(readdirSync(dir).sort(), ['a.safetensors', 'b.safetensors'], 'no temp files left');
});

t.test('typed template: the result has the template type', async (t) => {
  const fresh = { dense: { kernel: zeros([3, 4]), bias: zeros([4]) } };
  const trained = { dense: { kernel: makeTensor('float32', [3, 4], 1), bias: makeTensor('float32', [4], 2) } };
  const dir = tmp(t);
  const p = join(dir, 'p.safetensors');
  await saveTensors(p, trained);
  const loaded = await loadTensors(p, fresh);
  const kernel: Tensor = loaded.dense.kernel; // typed as the template
  t.equal(treeDiff(kernel, trained.dense.kernel), null);
});

// ----------------------------------------------------------------------------- files from other tools

t.test('a file written by hand per the spec (no spiketrace metadata, unaligned offsets) loads', async (t) => {
  // Like a PyTorch state dict: dotted names, a BOOL first so the F32 data starts at an odd offset.
  const header =
    '{"__metadata__":{"format":"pt"},' +
    '"flags":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]},' +
    '"layers.0.weight":{"dtype":"F32","shape":[2,1],"data_offsets":[3,11]},' +
    '"layers.0.bias":{"dtype":"F64","shape":[],"data_offsets":[11,19]},' +
    '"step":{"dtype":"I32","shape":[],"data_offsets":[19,23]},' +
    '"ids":{"dtype":"U32","shape":[0],"data_offsets":[23,23]}}';
  const data = [
    ...[1, 0, 7], // BOOL (7 reads as true)
    ...[0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x40, 0xc0], // F32 1, -3
    ...[0, 0, 0, 0, 0, 0, 0xe0, 0x3f], // F64 0.5
    ...[0xff, 0xff, 0xff, 0xff], // I32 -1
  ];
  for (const pad of [true, false]) {
    const bytes = handFile(header, data, pad);
    const back = tensorsFromBytes(bytes, undefined, 'hand.safetensors') as {
      flags: NDArray;
      layers: { '0': { weight: NDArray; bias: NDArray } };
      step: NDArray;
      ids: NDArray;
    };
    t.same(Object.keys(back).sort(), ['flags', 'ids', 'layers', 'step']);
    t.equal(back.flags.dtype, 'bool');
    t.same(Array.from(back.flags.toTyped()), [1, 0, 1]);
    t.equal(back.layers['0'].weight.dtype, 'float32');
    t.same(back.layers['0'].weight.shape, [2, 1]);
    t.same(back.layers['0'].weight.toNested(), [[1], [-3]]);
    t.equal(back.layers['0'].bias.item(), 0.5);
    t.equal(back.layers['0'].bias.dtype, 'float64');
    t.equal(back.step.item(), -1);
    t.same(back.ids.shape, [0]);
    t.equal(back.ids.dtype, 'uint32');
    checkLoaded(t, back);
    t.same(tensorMetadataFromBytes(bytes), { format: 'pt' });
    // with a template whose structure differs from the dotted split
    const template = {
      flags: zeros([3], 'bool'),
      layers: [{ weight: zeros([2, 1]), bias: scalar(0, 'float64') }],
      step: scalar(0, 'int32'),
      ids: zeros([0], 'uint32'),
    };
    const viaTemplate = tensorsFromBytes(bytes, template);
    t.ok(Array.isArray(viaTemplate.layers));
    t.same(viaTemplate.layers[0].weight.toNested(), [[1], [-3]]);
  }
  // the bytes themselves may sit at an odd offset in a larger buffer
  const inner = handFile(header, data);
  const outer = new Uint8Array(inner.length + 3);
  outer.set(inner, 3);
  const back = tensorsFromBytes(outer.subarray(3)) as { layers: { '0': { weight: NDArray } } };
  t.same(back.layers['0'].weight.toNested(), [[1], [-3]]);
  // empty file (no tensors, no metadata)
  t.same(tensorsFromBytes(handFile('{}', [])), {});
});

t.test('dotted names that do not nest are refused without a template', async (t) => {
  const bytes = handFile(
    '{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a.b":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}',
    new Array<number>(8).fill(0),
  );
  t.throws(() => tensorsFromBytes(bytes, undefined, 'nest.st'), {
    name: 'SafetensorsError',
    message: /nest\.st: tensor "a" is also a prefix of tensor "a\.b"/,
  });
  const reversed = handFile(
    '{"a.b":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}',
    new Array<number>(8).fill(0),
  );
  t.throws(() => tensorsFromBytes(reversed, undefined, 'nest.st'), { message: /nest\.st: tensor "a" is also a prefix/ });
  // a template makes it loadable
  const ok = tensorsFromBytes(bytes, { a: scalar(0), 'a.b': scalar(0) }) as Record<string, Tensor>;
  t.same(Object.keys(ok).sort(), ['a', 'a.b']);
});

// Independent cross-check with numpy, when available: a reader and a writer following the spec,
// in one python process (importing numpy is the slow part).
const PY = `
import json, struct, sys
try:
    import numpy as np
except ImportError:
    print('NO_NUMPY')
    sys.exit(0)

# --- read ours
b = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', b[:8])
assert (8 + n) % 8 == 0, 'header not padded'
hdr = json.loads(b[8:8 + n].decode('utf-8'))
data = b[8 + n:]
dt = {'F32': '<f4', 'F64': '<f8', 'I32': '<i4', 'U32': '<u4', 'BOOL': '?'}
out, pos = {}, 0
for name, info in hdr.items():
    if name == '__metadata__':
        continue
    s, e = info['data_offsets']
    assert s == pos, 'gap or not in header order'
    pos = e
    a = np.frombuffer(data[s:e], dtype=dt[info['dtype']]).reshape(info['shape'])
    out[name] = {'dtype': info['dtype'], 'shape': list(a.shape), 'values': a.astype(np.float64).ravel().tolist()}
assert pos == len(data), 'trailing bytes'
out['__metadata__'] = hdr.get('__metadata__', {})

# --- write theirs
tensors = {
  'model.fc1.weight': np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5,
  'model.fc1.bias': np.array([0.25, -1, 1e30], dtype=np.float64),
  'model.mask': np.array([[True, False]], dtype=np.bool_),
  'step': np.array(123456789, dtype=np.int32),
  'ids': np.array([0, 4294967295], dtype=np.uint32),
}
code = {np.dtype('float32'): 'F32', np.dtype('float64'): 'F64', np.dtype('int32'): 'I32', np.dtype('uint32'): 'U32', np.dtype('bool'): 'BOOL'}
# like the reference writer: larger alignment first, then by name
order = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))
theirs, pos, blobs = {'__metadata__': {'format': 'np'}}, 0, []
for k in order:
    raw = np.ascontiguousarray(tensors[k]).astype(tensors[k].dtype.newbyteorder('<')).tobytes()
    theirs[k] = {'dtype': code[tensors[k].dtype], 'shape': list(tensors[k].shape), 'data_offsets': [pos, pos + len(raw)]}
    pos += len(raw)
    blobs.append(raw)
h = json.dumps(theirs, separators=(',', ':')).encode('utf-8')
h += b' ' * ((8 - len(h) % 8) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
print(json.dumps(out))
`;

t.test('numpy reads what we write and we read what numpy writes', async (t) => {
  const dir = tmp(t);
  const p = join(dir, 'ours.safetensors');
  const q = join(dir, 'numpy.safetensors');
  const rec = {
    params: {
      w: transpose(
        array([
          [1, 2, 3],
          [4, 5, 6],
        ]),
      ),
      b: array([0.5, -1.25], { dtype: 'float64' }),
    },
    opt: { count: scalar(42, 'int32'), mask: array([1, 0, 1], { dtype: 'bool' }), key: array(new Uint32Array([0, 4294967295])) },
  };
  await saveTensors(p, rec, { epoch: '3' });
  const r = spawnSync('python3', ['-c', PY, p, q], { encoding: 'utf8' });
  if (r.error || r.stdout.trim() === 'NO_NUMPY') {
    t.skip('python3 with numpy not available', async () => undefined);
    return;
  }
  t.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout) as Record<string, { dtype: string; shape: number[]; values: number[] }> & {
    __metadata__: Record<string, string>;
  };
  t.same(got['params.w'], { dtype: 'F32', shape: [3, 2], values: [1, 4, 2, 5, 3, 6] });
  t.same(got['params.b'], { dtype: 'F64', shape: [2], values: [0.5, -1.25] });
  t.same(got['opt.count'], { dtype: 'I32', shape: [], values: [42] });
  t.same(got['opt.mask'], { dtype: 'BOOL', shape: [3], values: [1, 0, 1] });
  t.same(got['opt.key'], { dtype: 'U32', shape: [2], values: [0, 4294967295] });
  t.equal(got.__metadata__.epoch, '3');
  t.ok(TREE_METADATA_KEY in got.__metadata__);

  const back = (await loadTensors(q)) as { model: { fc1: { weight: NDArray; bias: NDArray }; mask: NDArray }; step: NDArray; ids: NDArray };
  t.same(back.model.fc1.weight.toNested(), [
    [-2.5, -1.5, -0.5],
    [0.5, 1.5, 2.5],
  ]);
  t.same(Array.from(back.model.fc1.bias.toTyped()), [0.25, -1, 1e30]);
  t.equal(back.model.mask.dtype, 'bool');
  t.same(back.model.mask.toNested(), [[1, 0]]);
  t.equal(back.step.item(), 123456789);
  t.same(Array.from(back.ids.toTyped()), [0, 4294967295]);
  t.same(await readTensorMetadata(q), { format: 'np' });
});

// ----------------------------------------------------------------------------- corruption

const F = 'bad.safetensors';
const refused = (t: Test, bytes: Uint8Array, re: RegExp, what: string): void => {
  t.throws(
    () => tensorsFromBytes(bytes, undefined, F),
    { name: 'SafetensorsError', message: new RegExp(`${F.replace('.', '\\.')}: .*${re.source}`) },
    what,
  );
};
const T1 = '"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';
const eight = [0, 0, 128, 63, 0, 0, 0, 64];

t.test('corrupt files are refused with the file name and expected vs found', async (t) => {
  t.doesNotThrow(() => tensorsFromBytes(handFile(`{${T1}}`, eight), undefined, F), 'the base file is fine');
  for (let n = 0; n < 8; n++) refused(t, new Uint8Array(n), /file is \d bytes; expected at least 8/, `${n} bytes`);

  const long = handFile(`{${T1}}`, eight);
  new DataView(long.buffer).setBigUint64(0, 1000n, true);
  refused(t, long, /header length is 1000 bytes, but only \d+ bytes follow/, 'header length beyond the file');
  const huge = handFile(`{${T1}}`, eight);
  new DataView(huge.buffer).setBigUint64(0, 0xffffffffffffffffn, true);
  refused(t, huge, /header length is 18446744073709551615 bytes/, 'u64 beyond 2^53');
  refused(t, handFile('', []), /header length is 0 bytes; expected at least 2/, 'empty header');

  refused(t, handFile(`{${T1},}`, eight), /header is not valid JSON/, 'trailing comma');
  refused(t, handFile(`{${T1}`, eight), /header is not valid JSON/, 'unterminated');
  refused(t, handFile('[1, 2]', []), /header must start with '\{'/, 'array header');
  refused(t, handFile(' {}', []), /header must start with '\{'/, 'leading space');
  const badUtf8 = handFile(`{"\u00e9":1}`, []);
  badUtf8[10] = 0xff;
  refused(t, badUtf8, /not valid UTF-8/, 'invalid UTF-8');

  refused(
    t,
    handFile('{"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', [0, 0, 0, 0]),
    /tensor "x": unknown dtype "F16"; expected one of F32, F64, I32, U32, BOOL/,
    'unknown dtype',
  );
  refused(t, handFile('{"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', eight), /unknown dtype "I64"/, 'I64');
  refused(
    t,
    handFile('{"x":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}', eight),
    /shape must be an array of non-negative integers/,
    'fractional shape',
  );
  refused(t, handFile('{"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', eight), /shape must be/, 'negative shape');
  refused(t, handFile('{"x":{"dtype":"F32","data_offsets":[0,8]}}', eight), /shape must be/, 'missing shape');
  refused(t, handFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', eight), /data_offsets must be \[begin, end\]/, 'one offset');
  refused(
    t,
    handFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', eight),
    /data_offsets \[8, 0\] end before they begin/,
    'reversed',
  );
  refused(t, handFile('{"x":[1]}', []), /tensor "x": expected \{dtype, shape, data_offsets\}, found an array/, 'not an object');
  refused(
    t,
    handFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}', eight),
    /data_offsets \[0, 16\] run past the end of the data; expected at most 8 bytes .* 8 bytes missing/,
    'out of range',
  );
  refused(
    t,
    handFile('{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', eight),
    /shape \[3\] of F32 needs 12 bytes, but data_offsets \[0, 8\] span 8/,
    'size mismatch',
  );
  refused(
    t,
    handFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight),
    /tensors "x" \[0, 8\] and "y" \[4, 8\] overlap/,
    'overlap',
  );
  refused(
    t,
    handFile('{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight),
    /4 unused bytes before tensor "x": expected it to begin at 0, found 4/,
    'gap',
  );
  refused(
    t,
    handFile(`{${T1}}`, [...eight, 1, 2, 3]),
    /3 trailing bytes after the tensors: the tensors cover 8 bytes, but 11 follow the header/,
    'trailing',
  );
  refused(t, handFile(`{${T1}}`, eight.slice(0, 5)), /run past the end of the data; expected at most 5 bytes/, 'missing bytes');
  refused(t, handFile('{"__metadata__":{"a":1}}', []), /__metadata__\["a"\] must be a string, found number 1/, 'metadata value');
  refused(t, handFile('{"__metadata__":[]}', []), /__metadata__ must be an object of strings/, 'metadata array');
});

t.test('a corrupt stored structure is refused, never half-applied', async (t) => {
  const meta = (tree: string): string => `{"__metadata__":{${JSON.stringify(TREE_METADATA_KEY)}:${JSON.stringify(tree)}},${T1}}`;
  const cases: [string, RegExp][] = [
    ['{"kind":"leaf","name":"y"}', /leaf "y" is not a tensor in the header/],
    ['{"kind":"object","keys":["a","b"],"children":[{"kind":"leaf","name":"x"},{"kind":"leaf","name":"x"}]}', /leaf "x" appears twice/],
    [
      '{"kind":"object","keys":["a","a"],"children":[{"kind":"leaf","name":"x"},{"kind":"static","value":1}]}',
      /object node repeats keys "a"/,
    ],
    ['{"kind":"object","keys":["a"],"children":[]}', /object node has 1 keys but 0 children/],
    ['{"kind":"static","value":null}', /the header has tensors the stored structure does not place: "x"/],
    ['{"kind":"static","value":{}}', /static value must be null, a number, a string or a boolean/],
    ['{"kind":"static","special":"NaNx"}', /unknown special static/],
    ['{"kind":"tuple"}', /unknown node kind "tuple"/],
    ['{"kind":"array"}', /array node without children/],
    ['{"kind":', /not valid JSON/],
  ];
  for (const [tree, re] of cases)
    refused(t, handFile(meta(tree), eight), new RegExp(`__metadata__\\["spiketrace\\.tree"\\]: ${re.source}`), tree);
  const deep = '{"kind":"array","children":['.repeat(3000) + '{"kind":"leaf","name":"x"}' + ']}'.repeat(3000);
  refused(t, handFile(meta(deep), eight), /nested deeper than/, 'deep nesting');
});

t.test('loadTensors names the file path in its errors', async (t) => {
  const dir = tmp(t);
  const p = join(dir, 'short.safetensors');
  writeFileSync(p, new Uint8Array([1, 2, 3]));
  await t.rejects(loadTensors(p), {
    name: 'SafetensorsError',
    message: `${p}: file is 3 bytes; expected at least 8 (the little-endian u64 header length)`,
  });
  t.throws(() => loadTensorsSync(p), { message: new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: file is 3 bytes`) });
  await t.rejects(readTensorMetadata(p), { message: /file is 3 bytes/ });
});

// ----------------------------------------------------------------------------- fuzzing

/** Header tensor count, read independently, for files the loader accepted. */
function headerTensorCount(bytes: Uint8Array): number {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as object;
  return Object.keys(header).filter((k) => k !== '__metadata__').length;
}

t.test('property: truncated or extended files are always refused, naming the file', async (t) => {
  const nonEmpty = treeArb.filter((tr) => tensorsToBytes(tr).length > 8);
  fc.assert(
    fc.property(nonEmpty, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 }), (tree, cutSeed, extra) => {
      const bytes = tensorsToBytes(tree);
      const cut = cutSeed % bytes.length;
      const truncated = bytes.slice(0, cut);
      const extended = new Uint8Array(bytes.length + extra.length);
      extended.set(bytes);
      extended.set(extra, bytes.length);
      for (const bad of [truncated, extended]) {
        try {
          tensorsFromBytes(bad, undefined, 'fuzz.safetensors');
        } catch (e) {
          if (!(e instanceof SafetensorsError) || !e.message.startsWith('fuzz.safetensors: ')) throw e;
          continue;
        }
        throw new Error(
          `accepted a ${bad === truncated ? `truncation to ${cut} of ${bytes.length}` : `file with ${extra.length} extra bytes`}`,
        );
      }
    }),
    { numRuns: 200 },
  );
  t.pass('200 truncations and extensions refused');
});

t.test('property: mutated files either throw naming the file or load every tensor intact', async (t) => {
  let accepted = 0;
  let refusedCount = 0;
  const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 });
  // Mostly mutate the header (where the structure lives), sometimes anywhere.
  fc.assert(
    fc.property(treeArb, mutation, fc.boolean(), (tree, muts, headerOnly) => {
      const bytes = tensorsToBytes(tree);
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const bad = bytes.slice();
      for (const [pos, v] of muts) bad[pos % (headerOnly ? 8 + n : bad.length)] = v;
      for (const template of [undefined, tree]) {
        let out: Tree;
        try {
          out = tensorsFromBytes(bad, template, 'mut.safetensors');
        } catch (e) {
          if (!(e instanceof SafetensorsError) || !e.message.startsWith('mut.safetensors')) throw e;
          refusedCount++;
          continue;
        }
        accepted++;
        const leaves = loadedLeaves(out);
        for (const leaf of leaves)
          if (leaf.data.length !== leaf.size || !leaf.isContiguous()) throw new Error('tensor size does not match its shape');
        if (leaves.length !== headerTensorCount(bad))
          throw new Error(`partial result: ${leaves.length} tensors of ${headerTensorCount(bad)}`);
        if (template !== undefined) {
          const want = loadedLeaves(tensorsFromBytes(bytes));
          if (leaves.length !== want.length) throw new Error('template result has a different leaf count');
        }
      }
    }),
    { numRuns: 400 },
  );
  t.ok(refusedCount > 0 && accepted > 0, `refused ${refusedCount}, accepted ${accepted}`);
});

// ----------------------------------------------------------------------------- templates

t.test('template mismatches are refused listing missing/extra names and shape/dtype differences', async (t) => {
  const saved = { dense: { kernel: zeros([3, 4]), bias: zeros([4]) }, extraLayer: { w: zeros([2]) }, step: scalar(1, 'int32') };
  const bytes = tensorsToBytes(saved);
  const template = { dense: { kernel: zeros([4, 3]), bias: zeros([4]), gamma: zeros([4]) }, step: scalar(1, 'float32') };
  const err = t.throws(() => tensorsFromBytes(bytes, template, 'ckpt.safetensors')) as Error;
  t.equal(err.name, 'SafetensorsError');
  t.match(err.message, /^ckpt\.safetensors does not match the template: /);
  t.match(err.message, /missing from the file \(in the template\): "dense\.gamma"/);
  t.match(err.message, /extra in the file \(not in the template\): "extraLayer\.w"/);
  t.match(err.message, /shapes differ: "dense\.kernel": file \[3, 4\], template \[4, 3\]/);
  t.match(err.message, /dtypes differ: "step": file I32 \(int32\), template float32/);

  const dir = tmp(t);
  const p = join(dir, 'c.safetensors');
  await saveTensors(p, saved);
  await t.rejects(loadTensors(p, template), {
    message: new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not match the template`),
  });
  t.throws(() => loadTensorsSync(p, { step: scalar(0, 'int32') }), {
    message: /extra in the file \(not in the template\): "dense\.bias", "dense\.kernel", "extraLayer\.w"/,
  });

  // A template that is not a pytree is refused naming the file.
  t.throws(() => tensorsFromBytes(bytes, { w: new Date() } as unknown as Tree, 'ckpt.safetensors'), {
    name: 'SafetensorsError',
    message: /^ckpt\.safetensors: pytree: unsupported value at \.w/,
  });
  // Long lists are capped.
  const many: Record<string, Tensor> = {};
  for (let i = 0; i < 30; i++) many[`p${i}`] = scalar(i);
  t.throws(() => tensorsFromBytes(tensorsToBytes(many), {}), { message: /and 10 more/ });
  // A template whose statics differ still loads (the template's structure is used).
  const back = tensorsFromBytes(tensorsToBytes({ w: scalar(2), lr: 0.1 }), { w: scalar(0), lr: 0.5 });
  t.equal(back.lr, 0.5);
  t.equal(back.w.item(), 2);
});

// ----------------------------------------------------------------------------- saving errors and atomicity

t.test('unsavable records are refused before anything is written', async (t) => {
  t.throws(() => tensorsToBytes({ 'a.b': scalar(1), a: { b: scalar(2) } }), {
    name: 'SafetensorsError',
    message: /several leaves get the same name: "a\.b"/,
  });
  t.throws(() => tensorsToBytes({ __metadata__: scalar(1) }), { message: /reserves/ });
  t.throws(() => tensorsToBytes({ w: scalar(1) }, { [TREE_METADATA_KEY]: 'x' }), { message: /reserved/ });
  t.throws(() => tensorsToBytes({ w: scalar(1) }, { n: 3 } as unknown as Record<string, string>), {
    message: /metadata value for "n" must be a string/,
  });
  t.throws(() => tensorsToBytes({ w: new Date() } as unknown as Tree), { message: /unsupported value at \.w: Date/ });
});

t.test('a failing save leaves the previous file intact and no temp files', async (t) => {
  const dir = tmp(t);
  const p = join(dir, 'model.safetensors');
  const original = { w: makeTensor('float32', [4], 1) };
  await saveTensors(p, original);
  const before = readFileSync(p);
  const bad = { w: new Date() } as unknown as Tree;

  await t.rejects(saveTensors(p, bad), {
    name: 'SafetensorsError',
    message: new RegExp(`saveTensors: ${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*unsupported value`),
  });
  t.throws(() => saveTensorsSync(p, bad), { message: /saveTensorsSync: .*unsupported value/ });
  t.same(readFileSync(p), before, 'previous file untouched');
  t.same(readdirSync(dir), ['model.safetensors']);

  // A target directory that has disappeared.
  const gone = join(dir, 'gone');
  mkdirSync(gone);
  rmSync(gone, { recursive: true });
  await t.rejects(saveTensors(join(gone, 'x.safetensors'), original), { message: /saveTensors: could not write .*gone.*ENOENT/ });
  t.throws(() => saveTensorsSync(join(gone, 'x.safetensors'), original), { message: /saveTensorsSync: could not write .*ENOENT/ });
  t.notOk(existsSync(gone));

  // The rename fails after the temp file was written (the target is a directory): the temp goes.
  const blocked = join(dir, 'blocked.safetensors');
  mkdirSync(blocked);
  writeFileSync(join(blocked, 'keep'), 'x');
  await t.rejects(saveTensors(blocked, original), { message: /saveTensors: could not write .*blocked\.safetensors/ });
  t.throws(() => saveTensorsSync(blocked, original), { message: /saveTensorsSync: could not write .*blocked\.safetensors/ });
  t.same(readdirSync(dir).sort(), ['blocked.safetensors', 'model.safetensors'], 'no temp files left behind');
  t.same(readdirSync(blocked), ['keep']);
  t.equal(treeDiff(await loadTensors(p), original), null);
});

t.test('concurrent saves to one path leave one complete file', async (t) => {
  const dir = tmp(t);
  const p = join(dir, 'race.safetensors');
  const trees = Array.from({ length: 8 }, (_, i) => ({ w: makeTensor('float64', [64 * (i + 1)], i), i: scalar(i, 'int32') }));
  await Promise.all(trees.map((tr) => saveTensors(p, tr)));
  const back = (await loadTensors(p)) as { w: Tensor; i: Tensor };
  t.equal(treeDiff(back, trees[back.i.item()]), null);
  t.same(readdirSync(dir), ['race.safetensors']);
});

t.test('without Node built-ins (a browser), the file functions say what to use; bytes still work', async (t) => {
  const proc = process as unknown as { getBuiltinModule?: unknown };
  const saved = proc.getBuiltinModule;
  proc.getBuiltinModule = undefined;
  try {
    const tree = { w: array([1, 2, 3]) };
    t.throws(
      () => saveTensorsSync('/tmp/never.safetensors', tree),
      /saveTensorsSync: needs Node's node:fs \(file access\); without it, use tensorsToBytes \/ tensorsFromBytes/,
    );
    await t.rejects(loadTensors('/tmp/never.safetensors'), /loadTensors: needs Node's node:fs\/promises/);
    const back = tensorsFromBytes(tensorsToBytes(tree)) as { w: NDArray };
    t.same(Array.from(back.w.toTyped()), [1, 2, 3], 'bytes round trip');
  } finally {
    proc.getBuiltinModule = saved;
  }
});
