/**
 * The kernels' arena (core/backend/wasm/kernel-cache.ts) and resident arrays: the block allocator
 * (alignment, no overlap, reuse, views surviving growth); kernels reading operands and writing
 * results in place give the same bits as with ordinary arrays (elementwise with every layout,
 * reductions, matmuls with row-major, transposed and offset operands); a program's outermost call
 * hands back ordinary arrays unless asked to keep them resident; fit and scans do not leak arena
 * memory over many steps.
 */
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { firstBitDifference } from './fixtures/compare.js';
import {
  add,
  broadcastTo,
  toHost,
  fromTyped,
  jit,
  matmul,
  maximum,
  random,
  reshape,
  scan,
  slice,
  sqrt,
  sum,
  tanh,
  transpose,
  where,
  greater,
  type NDArray,
  type Tensor,
} from '../../core/index.js';
import {
  arenaAlloc,
  arenaF32,
  arenaFree,
  arenaResidentCapable,
  arenaStats,
  releaseResidentArray,
  residentArray,
  residentOffset,
} from '../../core/backend/wasm/kernel-cache.js';
import { isResident, poolStats } from '../../core/backend/pool.js';
import * as nn from '../../nn/index.js';

const randomF32 = (n: number, next: () => number): Float32Array => Float32Array.from({ length: n }, () => next() * 2 - 1);
const bits = (x: Tensor): Float32Array => Float32Array.from((x as NDArray).toTyped() as Float32Array);

t.test('the allocator: 64-byte aligned blocks that never overlap, reused by size', async (t) => {
  const next = rng(5);
  const live: { at: number; bytes: number; tag: number }[] = [];
  let tag = 1;
  let bad = '';
  for (let step = 0; step < 3000 && !bad; step++) {
    if (live.length > 0 && next() < 0.45) {
      const i = Math.floor(next() * live.length);
      const [b] = live.splice(i, 1);
      // Its contents are still its own tag when freed (nobody else wrote them).
      const h = arenaF32();
      for (let k = 0; k < b.bytes >> 2; k++) if (h[(b.at >> 2) + k] !== b.tag) bad = `block ${b.at} overwritten`;
      arenaFree(b.at, b.bytes);
      continue;
    }
    const bytes = 4 * (1 + Math.floor(next() * (next() < 0.1 ? 200_000 : 2000)));
    const at = arenaAlloc(bytes);
    if (at <= 0 || at % 64 !== 0) bad = `bad offset ${at}`;
    const h = arenaF32();
    h.fill(tag, at >> 2, (at + bytes) >> 2);
    live.push({ at, bytes, tag: tag++ });
  }
  for (const b of live) arenaFree(b.at, b.bytes);
  t.equal(bad, '', 'no block was written by another allocation');
  const a = arenaAlloc(1000);
  arenaFree(a, 1000);
  t.equal(arenaAlloc(1000), a, 'a freed block of the same size is handed out again');
  arenaFree(a, 1000);
});

t.test('resident views survive the memory growing', { skip: !arenaResidentCapable() && 'no shared WebAssembly memory here' }, async (t) => {
  const view = residentArray('float32', 1000) as Float32Array;
  view.forEach((_, i) => (view[i] = i * 0.5));
  t.ok(residentOffset(view) > 0, 'lives in the arena');
  const grows = arenaStats.grows;
  const big = arenaAlloc(64 * 1024 * 1024);
  t.ok(arenaStats.grows > grows, 'the memory grew');
  t.equal(view.length, 1000, 'not detached');
  t.equal(view[999], 499.5, 'contents intact');
  view[3] = 7;
  t.equal(arenaF32()[(view.byteOffset >> 2) + 3], 7, 'still the same memory');
  arenaFree(big, 64 * 1024 * 1024);
});

/** Arrays in the arena: outputs of a program asked to keep them resident. */
const resident = jit((x: Tensor) => x.mul(1)).donating([], { keepInBackend: true });

t.test(
  'kernels on resident operands give the bits they give on ordinary arrays',
  { skip: !arenaResidentCapable() && 'no shared WebAssembly memory here' },
  async (t) => {
    const next = rng(11);
    const plain = (shape: number[]): NDArray =>
      fromTyped(
        randomF32(
          shape.reduce((a, c) => a * c, 1),
          next,
        ),
        shape,
      );
    const cases: [string, (...xs: Tensor[]) => Tensor, number[][]][] = [
      [
        'elementwise, same shapes',
        (a, b) => sqrt(a.mul(a).add(b.mul(b))).sub(a.div(b)),
        [
          [37, 53],
          [37, 53],
        ],
      ],
      [
        'elementwise, broadcast row and column',
        (a, b, c) => maximum(a.mul(b), c),
        [
          [41, 30],
          [1, 30],
          [41, 1],
        ],
      ],
      [
        'elementwise, transposed operand',
        (a, b) => transpose(a).mul(b).add(1),
        [
          [30, 41],
          [41, 30],
        ],
      ],
      ['elementwise, sliced rows', (a) => slice(a, [3, 2], [40, 29]).mul(2), [[50, 33]]],
      [
        'elementwise, rank 3, mask boundary',
        (a, b) => where(greater(a, 0), a, b.mul(0.5)),
        [
          [6, 17, 23],
          [6, 17, 23],
        ],
      ],
      ['elementwise, one scalar', (a, b) => a.mul(b), [[300], []]],
      [
        'reduction over rows',
        (a, b) => sum(a.mul(b), 0),
        [
          [64, 48],
          [64, 48],
        ],
      ],
      ['reduction over time, rank 3', (a) => sum(a, 1), [[8, 20, 36]]],
      [
        'matmul row-major',
        (a, b) => matmul(a, b),
        [
          [37, 70],
          [70, 29],
        ],
      ],
      [
        'matmul A transposed',
        (a, b) => matmul(transpose(a), b),
        [
          [70, 37],
          [70, 29],
        ],
      ],
      [
        'matmul B transposed',
        (a, b) => matmul(a, transpose(b)),
        [
          [37, 70],
          [29, 70],
        ],
      ],
      [
        'matmul of an offset view, m not a multiple of the tile',
        (a, b) => matmul(slice(a, [1, 0], [34, 70]), b),
        [
          [40, 70],
          [70, 64],
        ],
      ],
      [
        'matmul, broadcast left rows',
        (a, b) => matmul(broadcastTo(a, [9, 70]), b),
        [
          [1, 70],
          [70, 16],
        ],
      ],
      [
        'matmul over a batch',
        (a, b) => matmul(a, b),
        [
          [3, 11, 20],
          [3, 20, 13],
        ],
      ],
    ];
    for (const [name, f, shapes] of cases) {
      const ins = shapes.map(plain);
      const want = bits(jit(f)(...ins));
      const res = ins.map((x) => resident(x) as NDArray);
      t.ok(
        res.every((x) => x.size < 256 || isResident(x.data)),
        `${name}: operands of 256+ elements are resident`,
      );
      const kept = jit(f).donating([], { keepInBackend: true })(...res) as NDArray;
      const got = jit(f)(...res) as NDArray;
      t.equal(firstBitDifference(bits(got), want), -1, `${name}: same bits`);
      t.equal(firstBitDifference(bits(kept), want), -1, `${name}: same bits, result kept resident`);
      t.notOk(isResident(got.data), `${name}: the outermost call returns an ordinary array`);
      t.equal(firstBitDifference(bits(reshape(toHost(kept), [-1])), want), -1, `${name}: toHost copies the values`);
    }
  },
);

t.test(
  'toHost gives ordinary arrays and keeps views sharing one copy',
  { skip: !arenaResidentCapable() && 'no shared WebAssembly memory here' },
  async (t) => {
    const [a, aT] = jit((x: Tensor) => {
      const y = x.add(1);
      return [y, transpose(y)] as const;
    }).donating([], { keepInBackend: true })(
      fromTyped(
        Float32Array.from({ length: 600 }, (_, i) => i),
        [20, 30],
      ),
    ) as unknown as [NDArray, NDArray];
    t.ok(isResident(a.data) && a.data === aT.data, 'resident, and the transpose is a view');
    const tree = toHost({ a, aT, n: 3 });
    t.notOk(isResident(tree.a.data), 'copied out');
    t.equal(tree.a.data, tree.aT.data, 'the two views share their copy');
    t.same(tree.aT.shape, [30, 20]);
    t.equal((tree.aT.toTyped() as Float32Array)[1], 31, 'the view reads the right element');
    t.equal(tree.n, 3, 'other leaves pass through');
  },
);

t.test('no arena memory leaks over many steps: fit, a scan inside jit, callbacks reading params', async (t) => {
  const next = rng(3);
  const x = fromTyped(randomF32(64 * 20, next), [64, 20]);
  const y = fromTyped(
    Int32Array.from({ length: 64 }, (_, i) => i % 4),
    [64],
    'int32',
  );
  const model = nn.sequential([nn.dense(300, { activation: 'relu' }), nn.dense(4)]);
  const vars = model.init(random.key(0), [20]);
  const train = (epochs: number, callbacks: nn.Callback[] = []) =>
    nn.fit(model, vars, x, y, {
      optimizer: nn.adam(),
      loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
      epochs,
      batchSize: 16,
      verbose: 0,
      key: random.key(1),
      callbacks,
    });
  train(1);
  const before = poolStats.residentBytes;
  const result = train(30);
  t.ok(
    poolStats.residentBytes <= before + 4 * 300 * 20 * 8,
    `resident bytes stay flat over 120 steps (${before} -> ${poolStats.residentBytes})`,
  );
  const leaves = [result.params, result.optState].flatMap((tr) => Object.values(tr as Record<string, unknown>));
  t.ok(leaves.length > 0);
  const kernel = (result.params as Record<string, Record<string, NDArray>>)[Object.keys(result.params as object)[0]].kernel;
  t.notOk(isResident(kernel.data), 'fit returns ordinary arrays');
  // A callback that reads the parameters every batch gets ordinary arrays, and nothing piles up.
  let residentSeen = false;
  const mid = poolStats.residentBytes;
  train(30, [
    {
      onBatchEnd: (_b, _logs, ctl) => {
        const p = ctl.params as Record<string, Record<string, NDArray>>;
        for (const layer of Object.values(p)) for (const v of Object.values(layer)) if (isResident(v.data)) residentSeen = true;
      },
    },
  ]);
  t.notOk(residentSeen, 'ctl.params holds ordinary arrays');
  t.ok(
    poolStats.residentBytes <= mid + 4 * 300 * 20 * 8,
    `resident bytes stay flat with a reading callback (${mid} -> ${poolStats.residentBytes})`,
  );
  // A scan inside jit: each step's ys are copied out and their buffers recycled.
  const rnn = jit((h0: Tensor, xs: Tensor, w: Tensor) =>
    scan(
      (h: Tensor, xt: Tensor) => {
        const h2 = tanh(add(matmul(h, w), xt));
        return [h2, h2.mul(2)] as const;
      },
      h0,
      xs,
    ),
  ).donating([], { keepInBackend: true });
  // A body that returns its previous carry as y (a filter emitting the state before the update):
  // the donated input carry leaves as y and must be recycled after the copy; its final carry is
  // unused by the caller.
  const delayed = jit((c0: Tensor, xs: Tensor) => scan((c: Tensor, xt: Tensor) => [c.mul(0.9).add(xt), c] as const, c0, xs)[1]).donating(
    [],
    { keepInBackend: true },
  );
  const c0 = fromTyped(randomF32(16 * 64, next), [16, 64]);
  const xsD = fromTyped(randomF32(30 * 16 * 64, next), [30, 16, 64]);
  toHost(delayed(c0, xsD), { recycle: true });
  const d0 = poolStats.residentBytes;
  for (let i = 0; i < 10; i++) toHost(delayed(c0, xsD), { recycle: true });
  t.ok(
    poolStats.residentBytes <= d0,
    `a scan whose y is its previous carry, 10 calls: resident bytes flat (${d0} -> ${poolStats.residentBytes})`,
  );
  const h0 = fromTyped(randomF32(16 * 64, next), [16, 64]);
  const xs = fromTyped(randomF32(50 * 16 * 64, next), [50, 16, 64]);
  const w = fromTyped(
    randomF32(64 * 64, next).map((v) => v * 0.1),
    [64, 64],
  );
  toHost(rnn(h0, xs, w), { recycle: true });
  const s0 = poolStats.residentBytes;
  for (let i = 0; i < 10; i++) toHost(rnn(h0, xs, w), { recycle: true });
  t.ok(poolStats.residentBytes <= s0, `a scan of 50 steps, 10 calls: resident bytes flat (${s0} -> ${poolStats.residentBytes})`);
});

t.test('releaseResidentArray refuses an array outside the arena (its offset would be handed out again over live data)', async (t) => {
  const before = arenaStats.freeBytes;
  t.throws(
    () => releaseResidentArray(new Float32Array(16)),
    /releaseResidentArray: expected an array from residentArray, got a Float32Array outside the kernels' arena/,
  );
  t.equal(arenaStats.freeBytes, before, 'nothing filed as free');
  const resident = residentArray('float32', 16);
  if (resident === null) return;
  t.doesNotThrow(() => releaseResidentArray(resident));
});
