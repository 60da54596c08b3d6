/**
 * Device arrays and asynchronous reads (core/backends.ts DeviceMemory, NDArray.read): checked on a
 * backend registered here whose memory reads only asynchronously, as a WebGPU buffer does (its
 * kernels are the CPU's). Values must round-trip exactly through its memory; synchronous use
 * before a read must fail with a message that says what to do; host arrays read at once.
 */
import t from 'tap';
import { add, array, dispose, fromTyped, NDArray, toDevice, ShapeError } from '../../core/index.js';
import { cpuBackend, registerBackend, type DeviceBuffer, type DeviceMemory } from '../../core/internal.js';

interface MockBuffer extends DeviceBuffer {
  values: Float64Array | null;
}
const counts = { malloc: 0, read: 0, free: 0 };
const asyncMemory: DeviceMemory = {
  malloc(dtype, size, initial) {
    counts.malloc++;
    // Kept as float64 so that the read has to convert back to the dtype's array type.
    const buffer: MockBuffer = { dtype, size, values: initial ? Float64Array.from(initial) : new Float64Array(size) };
    return buffer;
  },
  async read(buffer) {
    counts.read++;
    await new Promise((resolve) => setTimeout(resolve, 1));
    const b = buffer as MockBuffer;
    if (b.values === null) throw new Error('read after free');
    const Ctor = { float32: Float32Array, float64: Float64Array, int32: Int32Array, uint32: Uint32Array, bool: Uint8Array }[b.dtype];
    return Ctor.from(b.values);
  },
  free(buffer) {
    counts.free++;
    (buffer as MockBuffer).values = null;
  },
};
registerBackend({ name: 'async-mock', run: cpuBackend.run, compile: cpuBackend.compile, memory: asyncMemory });

t.test('a device array reads back asynchronously with its exact values', async (t) => {
  for (const [dtype, values] of [
    ['float32', [1.5, -0, NaN, Infinity, 3.4e38, 1e-45]],
    ['int32', [-2147483648, 7, 0, 2147483647]],
    ['bool', [1, 0, 0, 1]],
  ] as const) {
    const x = array([...values], { dtype });
    const y = toDevice(x, 'async-mock');
    t.equal(y.device, 'async-mock', `${dtype}: lives on the device`);
    t.same(y.shape, x.shape, `${dtype}: shape known without a read`);
    t.equal(y.dtype, dtype);
    const got = await y.toTypedAsync();
    t.equal(got.constructor, x.toTyped().constructor, `${dtype}: typed array of its dtype`);
    t.ok(
      Array.from(got).every((v, i) => Object.is(v, x.toTyped()[i])),
      `${dtype}: values round-trip exactly`,
    );
  }
});

t.test('synchronous use before a read fails and names the fix; after read() everything works', async (t) => {
  const y = toDevice(fromTyped(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]), 'async-mock');
  t.throws(() => y.toTyped(), /async-mock.*reads asynchronously; await x\.read\(\)/);
  t.throws(() => add(y, 1), /await x\.read\(\)/, 'an op on the unread array says the same');
  const readsBefore = counts.read;
  const same = await y.read();
  t.equal(same, y, 'read() resolves to the array itself');
  await y.read();
  t.equal(counts.read, readsBefore + 1, 'a second read() does not read the device again');
  t.same(Array.from(add(y, 1).toTyped()), [2, 3, 4, 5, 6, 7], 'ops run on the values read');
  t.equal(y.device, 'async-mock', 'it still names where its values came from');
});

t.test('host arrays read at once; bad device requests are clear errors', async (t) => {
  const x = array([1, 2, 3]);
  t.equal(await x.read(), x);
  t.same(Array.from(await x.toTypedAsync()), [1, 2, 3]);
  t.equal(x.device, null);
  t.throws(() => toDevice(x, 'cpu'), /toDevice: backend 'cpu' keeps arrays in host memory/);
  t.throws(() => toDevice(x, 'nowhere'), /toDevice: unknown backend 'nowhere'/);
  const buffer = asyncMemory.malloc('float32', 4);
  t.throws(() => NDArray.fromDevice('async-mock', buffer, [5]), ShapeError);
  asyncMemory.free(buffer);
  t.equal(counts.free, 1);
});

t.test("dispose: a device array goes to its backend's release hook once no array over its buffer is held", async (t) => {
  const released: DeviceBuffer[] = [];
  registerBackend({
    name: 'async-mock-release',
    run: cpuBackend.run,
    compile: cpuBackend.compile,
    memory: asyncMemory,
    release: (arrays) => {
      for (const x of arrays) {
        if (x.device !== 'async-mock-release' || x.deviceBuffer === null) continue;
        released.push(x.deviceBuffer);
        asyncMemory.free(x.deviceBuffer);
      }
    },
  });
  const y = toDevice(fromTyped(Float32Array.from([1, 2, 3, 4]), [2, 2]), 'async-mock-release');
  const alias = NDArray.fromDevice('async-mock-release', y.deviceBuffer!, [4]);
  dispose(y);
  t.same(released, [], 'not released while another array over the buffer is held');
  await t.rejects(y.read(), /^NDArray\.read: this float32\[2, 2\] array was disposed/, 'the disposed one is deleted');
  t.same(Array.from(await alias.toTypedAsync()), [1, 2, 3, 4], 'the other reads its values');
  dispose(alias);
  t.equal(released.length, 1, 'released once the last array over it is disposed');
  t.equal(released[0], y.deviceBuffer, 'its buffer');
  dispose([y, alias]);
  t.equal(released.length, 1, 'disposing again releases nothing');

  // A backend without the hook: dispose only deletes.
  const frees = counts.free;
  const z = toDevice(fromTyped(Float32Array.from([5, 6]), [2]), 'async-mock');
  dispose(z);
  t.ok(z.isDeleted);
  t.equal(counts.free, frees, 'no release hook: the memory is left alone');
});
