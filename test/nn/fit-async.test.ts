/**
 * fitAsync: the same losses, metrics and final variables as fit, bit for bit (a spiking model with
 * a regularizer, shuffled batches, two epochs); it yields to the event loop between steps (other
 * tasks run while it trains), honours yieldEveryMs and an AbortSignal, and rejects a bad option.
 * sharedMemoryArena() reports the kernels' shared memory (Node has SharedArrayBuffer).
 */
import t from 'tap';
import { random, sharedMemoryArena, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import {
  accuracy,
  adam,
  dense,
  fit,
  fitAsync,
  resetLayerNames,
  sequential,
  sparseCategoricalCrossentropy,
  type FitOptions,
  type FitResult,
} from '../../nn/index.js';
import { spikingActivation } from '../../spiking/index.js';
import { arenaResidentCapable } from '../../core/backend/wasm/kernel-cache.js';

const [kx, ky] = random.split(random.key(5));
const x = random.normal(kx, [96, 4, 6]) as NDArray;
const y = random.randint(ky, [96], 0, 3) as NDArray;

function setup(): { model: ReturnType<typeof sequential>; vars: { params: Tree; state: Tree } } {
  resetLayerNames();
  const model = sequential([dense(16), spikingActivation('relu', { spikingAwareTraining: true, returnSequences: false }), dense(3)]);
  return { model, vars: model.init(random.key(1), [4, 6]) };
}

function options(losses: number[]): FitOptions {
  return {
    optimizer: adam(),
    loss: sparseCategoricalCrossentropy({ fromLogits: true }),
    metrics: [accuracy],
    epochs: 2,
    batchSize: 16,
    verbose: 0,
    key: random.key(2),
    callbacks: [{ onBatchEnd: (_b, logs) => void losses.push(logs.batchLoss) }],
  };
}

const flat = (r: FitResult): number[] =>
  [r.params, r.state, r.optState].flatMap((tree) => {
    const out: number[] = [];
    const walk = (v: unknown): void => {
      if (v !== null && typeof v === 'object' && 'toTyped' in v) out.push(...Array.from((v as Tensor).toTyped() as ArrayLike<number>));
      else if (v !== null && typeof v === 'object') for (const k of Object.keys(v).sort()) walk((v as Record<string, unknown>)[k]);
    };
    walk(tree);
    return out;
  });

t.test('fitAsync equals fit bit for bit', async (t) => {
  const syncLosses: number[] = [];
  const a = setup();
  const sync = fit(a.model, a.vars, x, y, options(syncLosses));
  const asyncLosses: number[] = [];
  const b = setup();
  let ticks = 0;
  let ticking = true;
  const tick = (): void => {
    ticks++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const result = await fitAsync(b.model, b.vars, x, y, options(asyncLosses)).finally(() => (ticking = false));
  t.equal(asyncLosses.length, 12, '2 epochs x 6 steps');
  t.same(asyncLosses, syncLosses, 'the same loss at every step');
  t.same(result.history, sync.history, 'the same epoch logs');
  const fa = flat(result);
  const fs = flat(sync);
  t.equal(fa.length, fs.length);
  t.ok(
    fa.every((v, i) => Object.is(v, fs[i])),
    'the same final variables',
  );
  t.ok(ticks >= 10, `other tasks ran while it trained (${ticks} ticks over 12 steps)`);
});

t.test('yieldEveryMs spaces the yields; an AbortSignal stops after the current step', async (t) => {
  const c = setup();
  let ticks = 0;
  let ticking = true;
  const tick = (): void => {
    ticks++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  await fitAsync(c.model, c.vars, x, y, { ...options([]), yieldEveryMs: 60_000 }).finally(() => (ticking = false));
  t.ok(ticks <= 2, `no yields within the interval (${ticks} ticks)`);

  const losses: number[] = [];
  const controller = new AbortController();
  const d = setup();
  const opts = options(losses);
  const r = await fitAsync(d.model, d.vars, x, y, {
    ...opts,
    signal: controller.signal,
    callbacks: [...(opts.callbacks ?? []), { onBatchEnd: (b) => (b === 2 ? controller.abort() : undefined) }],
  });
  t.equal(losses.length, 3, 'stopped after the third step');
  t.same(r.history.epochs, [0], 'within the first epoch');
  await t.rejects(
    fitAsync(d.model, d.vars, x, y, { ...options([]), yieldEveryMs: -1 }),
    /fitAsync: yieldEveryMs must be a number >= 0, got -1/,
  );
});

t.test('sharedMemoryArena says whether the kernels share memory', async (t) => {
  t.equal(sharedMemoryArena(), arenaResidentCapable());
  t.equal(sharedMemoryArena(), typeof SharedArrayBuffer !== 'undefined', 'Node has SharedArrayBuffer');
});
