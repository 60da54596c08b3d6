/**
 * Checkpoint files under stress (issue 16): reads and writes go in chunks (Node's single calls
 * stop at 2 GiB), checked with a 7-byte chunk so the test stays small, against the bytes of
 * tensorsToBytes and the saved tree; repeated keys anywhere in a safetensors header are refused
 * (the reference's rule; JSON.parse alone keeps the last); temporary files are named
 * `.<file>.spiketrace-<pid>-<hex>.tmp`, and those of killed saves (their process gone) are
 * removed by the next save to the same path, while a running process's and other files stay;
 * a save killed with SIGKILL midway leaves the previous file intact, and the next save cleans up.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arange, array, scalar, type Tensor } from '../../core/index.js';
import {
  loadTensors,
  loadTensorsSync,
  readTensorMetadata,
  saveTensors,
  saveTensorsSync,
  SafetensorsError,
  setSafetensorsIoChunkBytes,
  tensorsFromBytes,
  tensorsToBytes,
} from '../../nn/index.js';

const dir = mkdtempSync(join(tmpdir(), 'spiketrace-ckpt-'));
t.teardown(() => {
  setSafetensorsIoChunkBytes(undefined);
  rmSync(dir, { recursive: true, force: true });
});
const values = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>, Number);

t.test('files are written and read in chunks no larger than the chunk size, and round-trip', async (t) => {
  const fs = process.getBuiltinModule('node:fs');
  const tree = { w: arange(0, 100).astype('float64'), b: array([1.5, -2]), n: scalar(7, 'int32') };
  const expected = tensorsToBytes(tree, { note: 'chunks' });
  const writes: number[] = [];
  const reads: number[] = [];
  const { writeSync, readSync } = fs;
  fs.writeSync = ((fd: number, buf: Uint8Array, offset: number, length: number, ...rest: unknown[]) => {
    writes.push(length);
    return (writeSync as (...a: unknown[]) => number)(fd, buf, offset, length, ...rest);
  }) as typeof fs.writeSync;
  fs.readSync = ((fd: number, buf: Uint8Array, offset: number, length: number, ...rest: unknown[]) => {
    reads.push(length);
    return (readSync as (...a: unknown[]) => number)(fd, buf, offset, length, ...rest);
  }) as typeof fs.readSync;
  setSafetensorsIoChunkBytes(7);
  try {
    const sync = join(dir, 'sync.safetensors');
    saveTensorsSync(sync, tree, { note: 'chunks' });
    t.same(readFileSync(sync), Buffer.from(expected), 'the file holds exactly tensorsToBytes');
    t.ok(writes.length >= Math.ceil(expected.length / 7) && Math.max(...writes) <= 7, `${writes.length} writes of at most 7 bytes`);
    reads.length = 0;
    const back = loadTensorsSync(sync) as typeof tree;
    t.ok(reads.length >= Math.ceil(expected.length / 7) && Math.max(...reads) <= 7, `${reads.length} reads of at most 7 bytes`);
    t.same([values(back.w), values(back.b), values(back.n)], [values(tree.w), values(tree.b), [7]], 'sync round trip');
    const async = join(dir, 'async.safetensors');
    await saveTensors(async, tree, { note: 'chunks' });
    t.same(readFileSync(async), Buffer.from(expected), 'the async save writes the same bytes');
    const backAsync = (await loadTensors(async)) as typeof tree;
    t.same(values(backAsync.w), values(tree.w), 'async round trip');
    t.same(await readTensorMetadata(async), { note: 'chunks' });
  } finally {
    fs.writeSync = writeSync;
    fs.readSync = readSync;
    setSafetensorsIoChunkBytes(undefined);
  }
  t.throws(() => setSafetensorsIoChunkBytes(0), /setSafetensorsIoChunkBytes: expected a positive integer, got 0/);
});

/** A safetensors file from a header text and data bytes. */
function file(header: string, data: number[]): Uint8Array {
  const text = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

t.test('repeated keys in a safetensors header are refused, wherever they are', async (t) => {
  const a = '{"dtype":"U32","shape":[1],"data_offsets":[0,4]}';
  const b = '{"dtype":"U32","shape":[1],"data_offsets":[4,8]}';
  const data = [1, 0, 0, 0, 2, 0, 0, 0];
  const attempt = (header: string): unknown => {
    try {
      return tensorsFromBytes(file(header, data), undefined, 'dup.st');
    } catch (e) {
      return e;
    }
  };
  const cases: [string, RegExp][] = [
    [`{"w":${a},"w":${b}}`, /dup\.st: header repeats the key "w"; every key must appear once/],
    [`{"w":${a},"v":{"dtype":"U32","dtype":"U32","shape":[1],"data_offsets":[4,8]}}`, /header repeats the key "dtype" inside "v"/],
    [`{"__metadata__":{"k":"1","k":"2"},"w":${a},"v":${b}}`, /header repeats the key "k" inside "__metadata__"/],
  ];
  for (const [header, message] of cases) {
    const e = attempt(header);
    t.ok(e instanceof SafetensorsError, `a SafetensorsError for ${header.slice(0, 40)}...`);
    t.match(String((e as Error).message), message);
  }
  const fine = attempt(`{"__metadata__":{"k":"\\"w\\":","w":"x"},"w":${a},"v":${b}}`) as Record<string, Tensor>;
  t.same(values(fine.w), [1], 'a key inside a string value, or one repeated in another object, is not a repeat');
});

/** The id of a process that has exited (spawned and awaited here). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

t.test("temporary files are recognisable, and killed saves' leftovers are removed by the next save", async (t) => {
  for (const [kind, save] of [
    ['saveTensorsSync', async (p: string) => saveTensorsSync(p, { w: array([1]) })],
    ['saveTensors', (p: string) => saveTensors(p, { w: array([1]) })],
  ] as const) {
    const sub = mkdtempSync(join(dir, 'tmp-'));
    const dead = deadPid();
    const stale = [`.m.safetensors.spiketrace-${dead}-0123456789ab.tmp`, `.m.safetensors.${dead}.a1b2c3d4e5f6.tmp`];
    const kept = [
      `.m.safetensors.spiketrace-${process.pid}-0123456789ab.tmp`, // this process: maybe a concurrent save
      `.m.safetensors.spiketrace-${process.ppid}-0123456789ab.tmp`, // a running process
      `.other.safetensors.spiketrace-${dead}-0123456789ab.tmp`, // another file's
      `.m.safetensors.tmp`,
      'notes.tmp',
    ];
    for (const name of [...stale, ...kept]) writeFileSync(join(sub, name), 'partial');
    const fs = process.getBuiltinModule('node:fs');
    const fsp = process.getBuiltinModule('node:fs/promises');
    const { renameSync } = fs;
    const { rename } = fsp;
    const temps: string[] = [];
    fs.renameSync = ((from: string, to: string) => (temps.push(from), renameSync(from, to))) as typeof fs.renameSync;
    fsp.rename = ((from: string, to: string) => (temps.push(from), rename(from, to))) as typeof fsp.rename;
    try {
      await save(join(sub, 'm.safetensors'));
    } finally {
      fs.renameSync = renameSync;
      fsp.rename = rename;
    }
    t.equal(temps.length, 1, `${kind}: one temporary file`);
    t.match(
      temps[0],
      new RegExp(`/\\.m\\.safetensors\\.spiketrace-${process.pid}-[0-9a-f]{12}\\.tmp$`),
      `${kind}: named .<file>.spiketrace-<pid>-<hex>.tmp`,
    );
    t.same(readdirSync(sub).sort(), [...kept, 'm.safetensors'].sort(), `${kind}: the dead process's leftovers are gone, the rest stay`);
  }
});

t.test('kill -9 during a save: the previous file stays intact, and the next save removes the leftover', async (t) => {
  const sub = mkdtempSync(join(dir, 'kill-'));
  const target = join(sub, 'ckpt.safetensors');
  const original = { w: array([1, 2, 3]) };
  saveTensorsSync(target, original);
  const before = readFileSync(target);
  // The child writes 4 MB one byte per write call, so it is surely mid-save when killed.
  const child = join(sub, 'child.ts');
  const nnIndex = fileURLToPath(new URL('../../nn/index.ts', import.meta.url));
  const coreIndex = fileURLToPath(new URL('../../core/index.ts', import.meta.url));
  writeFileSync(
    child,
    `import { saveTensorsSync, setSafetensorsIoChunkBytes } from ${JSON.stringify(nnIndex)};\n` +
      `import { zeros } from ${JSON.stringify(coreIndex)};\n` +
      `setSafetensorsIoChunkBytes(1);\nsaveTensorsSync(${JSON.stringify(target)}, { w: zeros([1 << 20]) });\n`,
  );
  const proc = spawn(process.execPath, ['--import', 'tsx', child], { stdio: 'ignore' });
  const tempOf = (): string | undefined => readdirSync(sub).find((n) => n.startsWith('.ckpt.safetensors.spiketrace-'));
  const deadline = Date.now() + 60_000;
  while (tempOf() === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100));
  const exited = new Promise((r) => proc.on('exit', r));
  proc.kill('SIGKILL');
  await exited;
  const leftover = tempOf();
  t.ok(leftover !== undefined, `the killed save left its temp file (${leftover})`);
  t.same(readFileSync(target), before, 'the previous checkpoint is intact');
  t.same(values((loadTensorsSync(target) as typeof original).w), [1, 2, 3]);
  await saveTensors(target, { w: array([4]) });
  t.notOk(existsSync(join(sub, leftover ?? 'none')), 'the next save removed the leftover');
  t.same(values((loadTensorsSync(target) as typeof original).w), [4]);
});
