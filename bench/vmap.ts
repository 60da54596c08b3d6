/**
 * The vmap case (issue 13): per-example gradients of the M1 MLP (Dense(128, relu) -> Dense(10) on
 * 784 inputs, batch 32, softmax cross-entropy) against one batched gradient of the same batch,
 * spiketrace only. Rows:
 *   - batched: jit(grad(mean loss)) over the batch (the reference time);
 *   - per-example (vmap): jit(vmap(grad(loss of one example))), every per-example gradient returned
 *     ([32, 784, 128] for the first kernel: 32x the batched gradient's memory);
 *   - per-example, clipped and summed: the same inside one jit that clips each example's gradient
 *     to norm 1 and sums them (a DP-SGD step; the per-example gradients stay inside the program);
 *   - per-example (loop): jit(grad) called once per example, the workaround vmap replaces;
 *   - per-example, previous results donated: as the vmap row, the previous call's gradients passed
 *     back donated (JAX's donate_argnums), so their memory holds the new ones. Without it every call
 *     returns 12.8 MB of fresh memory, whose page faults cost more than the arithmetic here
 *     (docs/architecture.md, vmap section);
 *   - per-example, previous results disposed: the plain vmap row's function, with the previous
 *     call's gradients disposed (`dispose`) before each call, so the new ones reuse their memory
 *     (the target row).
 * The variants take turns (A B C D A B C D ...) for `--rounds` rounds, each block of calls after a
 * full garbage collection (so no row pays for the previous row's garbage), and each row reports
 * its median, so a machine whose speed drifts slows every row alike.
 *
 *   npx tsx bench/vmap.ts [--rounds N] [--calls N] [--json]     (or npm run bench -- --only vmap)
 */
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  add,
  dispose,
  div,
  fromTyped,
  grad,
  indexAxis,
  jit,
  logSoftmax,
  matmul,
  mean,
  minimum,
  mul,
  neg,
  relu,
  reshape,
  sqrt,
  sum,
  vmap,
  type Tensor,
} from '../core/index.js';
import { BATCH, CLASSES, HIDDEN, IMAGE, glorotUniform, rng } from './lib/common.js';
import { vmapTable, type VmapRow } from './lib/vmap-report.js';

type Params = { W1: Tensor; b1: Tensor; W2: Tensor; b2: Tensor };

const logits = (p: Params, x: Tensor): Tensor => add(matmul(relu(add(matmul(x, p.W1), p.b1)), p.W2), p.b2);
/** Mean softmax cross-entropy of a batch (x: [B, 784], y one-hot [B, 10]). */
const batchLoss = (p: Params, x: Tensor, y: Tensor): Tensor => neg(mean(sum(mul(y, logSoftmax(logits(p, x))), -1)));
/** The loss of one example (x: [784], y: [10]). */
const exampleLoss = (p: Params, x: Tensor, y: Tensor): Tensor => neg(sum(mul(y, logSoftmax(logits(p, reshape(x, [1, IMAGE]))))));

const perExample = vmap(grad(exampleLoss), { inAxes: [null, 0, 0] });

/** Each example's gradient scaled to norm at most 1, summed over the batch. */
function clippedSum(p: Params, x: Tensor, y: Tensor): Params {
  const g = perExample(p, x, y) as Params;
  const sq = add(add(sum(mul(g.W1, g.W1), [1, 2]), sum(mul(g.b1, g.b1), 1)), add(sum(mul(g.W2, g.W2), [1, 2]), sum(mul(g.b2, g.b2), 1)));
  const scale = minimum(div(1, sqrt(sq)), 1);
  const scaled = (leaf: Tensor): Tensor => sum(mul(leaf, reshape(scale, [BATCH, ...leaf.shape.slice(1).map(() => 1)])), 0);
  return { W1: scaled(g.W1), b1: scaled(g.b1), W2: scaled(g.W2), b2: scaled(g.b2) };
}

export function runVmapBench(rounds: number, calls: number, seed = 0): VmapRow[] {
  const next = rng(seed);
  const params: Params = {
    W1: fromTyped(glorotUniform(next, IMAGE, HIDDEN), [IMAGE, HIDDEN]),
    b1: fromTyped(
      Float32Array.from({ length: HIDDEN }, () => 0.1 * (next() - 0.5)),
      [HIDDEN],
    ),
    W2: fromTyped(glorotUniform(next, HIDDEN, CLASSES), [HIDDEN, CLASSES]),
    b2: fromTyped(new Float32Array(CLASSES), [CLASSES]),
  };
  const x = fromTyped(
    Float32Array.from({ length: BATCH * IMAGE }, () => next()),
    [BATCH, IMAGE],
  );
  const labels = Array.from({ length: BATCH }, () => Math.floor(next() * CLASSES));
  const y = fromTyped(
    Float32Array.from({ length: BATCH * CLASSES }, (_, i) => (labels[Math.floor(i / CLASSES)] === i % CLASSES ? 1 : 0)),
    [BATCH, CLASSES],
  );
  const batched = jit(grad(batchLoss));
  const vmapped = jit(perExample);
  const clipped = jit(clippedSum);
  const single = jit(grad(exampleLoss));
  const donating = jit((p: Params, xs: Tensor, ys: Tensor, _previous: Params) => perExample(p, xs, ys) as Params, { donateArgnums: [3] });
  let previous = vmapped(params, x, y) as Params;
  let kept = vmapped(params, x, y) as Params;
  // Results left in the kernels' arena (the training-loop idiom, as fit and the lifNet case do):
  // the per-example kernel then writes its 12.8 MB in place instead of staging it and copying it
  // out to host memory. The batched gradient gets the same treatment for a like-for-like row.
  const batchedResident = batched.donating([], { keepInBackend: true });
  const vmappedResident = vmapped.donating([], { keepInBackend: true });
  let keptBatched = batchedResident(params, x, y) as Params;
  let keptResident = vmappedResident(params, x, y) as Params;
  const xs = Array.from({ length: BATCH }, (_, i) => indexAxis(x, 0, i));
  const ys = Array.from({ length: BATCH }, (_, i) => indexAxis(y, 0, i));
  const variants: [string, () => unknown][] = [
    ['batched gradient: jit(grad(mean loss))', () => batched(params, x, y)],
    ['per-example gradients: jit(vmap(grad(loss)))', () => vmapped(params, x, y)],
    ['per-example gradients clipped and summed, one jit', () => clipped(params, x, y)],
    ['per-example gradients: jit(grad) per example (loop)', () => xs.map((xi, i) => single(params, xi, ys[i]))],
    [
      'per-example gradients, previous results donated: jit(vmap(grad(loss)), { donateArgnums })',
      () => (previous = donating(params, x, y, previous)),
    ],
    [
      'per-example gradients, previous results disposed: dispose(previous); jit(vmap(grad(loss)))',
      () => {
        dispose(kept);
        kept = vmapped(params, x, y) as Params;
      },
    ],
    [
      'batched gradient kept in backend memory, previous disposed: jit(grad(mean loss)).donating([], { keepInBackend: true })',
      () => {
        dispose(keptBatched);
        keptBatched = batchedResident(params, x, y) as Params;
      },
    ],
    [
      'per-example gradients kept in backend memory, previous disposed: jit(vmap(grad(loss))).donating([], { keepInBackend: true })',
      () => {
        dispose(keptResident);
        keptResident = vmappedResident(params, x, y) as Params;
      },
    ],
  ];
  const runs = variants.map(() => [] as number[]);
  for (const [, f] of variants) for (let i = 0; i < 3; i++) f();
  // A full collection before each timed block: the per-example rows leave 12.8 MB of garbage per
  // call, whose collection would otherwise land in whichever row runs next.
  setFlagsFromString('--expose-gc');
  const collect = runInNewContext('gc') as () => void;
  for (let r = 0; r < rounds; r++) {
    variants.forEach(([, f], v) => {
      collect();
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) f();
      runs[v].push((performance.now() - t0) / calls);
    });
  }
  const median = (v: readonly number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const base = median(runs[0]);
  return variants.map(([name], v) => ({ name, medianMs: median(runs[v]), ratio: median(runs[v]) / base, runsMs: runs[v] }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '9' },
      calls: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
    },
  });
  const rows = runVmapBench(Number(values.rounds), Number(values.calls));
  if (values.json) console.log(`VMAP_REPORT ${JSON.stringify(rows)}`);
  else console.log(vmapTable(rows));
}
