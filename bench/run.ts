/**
 * Issues 6 and 17's benchmark: spiketrace against PyTorch, jax-js and TensorFlow.js (wasm and cpu
 * backends) on the same data, the same initial weights and the same batch order.
 *
 *   npx tsx bench/run.ts [--quick] [--only matmul,m1,m2,spiking,poisson,lif,lifStopGradient,lifNet,conv,convEveryStep]
 *                        [--peers spiketrace,pytorch,jax-js,tfjs-wasm,tfjs-cpu] [--synthetic] [--seed N] [--out FILE]
 *
 * Every (peer, case) runs in its own child process (bench/worker.ts), one after another, so each
 * reports its own peak RSS and no two share the CPU (PyTorch's jobs are Python processes:
 * bench/lib/python.ts). The parent builds the inputs once and writes
 * them to a temporary folder that every child reads. Results are printed and written as markdown
 * to bench/results.md (or --out).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  CASES,
  CASE_PEERS,
  PEERS,
  TRAIN_ROWS,
  batchOf,
  hashArrays,
  stepsPerEpoch,
  writeInputs,
  type CaseName,
  type Job,
  type WorkerReport,
} from './lib/common.js';
import { buildInputs } from './lib/inputs.js';
import { pytorchMissing, runPythonJob } from './lib/python.js';
import { key, lossMismatches, renderReport, secondsPerEpoch, targets } from './lib/report.js';
import { vmapTable, type VmapRow } from './lib/vmap-report.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Cases outside the peer table: `vmap` (spiketrace only, its own interleaved rows; bench/vmap.ts). */
const EXTRA_CASES = ['vmap'] as const;

const USAGE = `usage: npx tsx bench/run.ts [--quick] [--only ${[...CASES, ...EXTRA_CASES].join(',')}] [--peers ${PEERS.join(',')}] [--synthetic] [--seed N] [--repeat N] [--out FILE]`;

function parseList<T extends string>(flag: string, value: string | undefined, all: readonly T[]): T[] {
  if (value === undefined) return [...all];
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = items.filter((s) => !(all as readonly string[]).includes(s));
  if (bad.length) throw new RangeError(`${flag}: unknown ${bad.map((b) => `'${b}'`).join(', ')}; choose from ${all.join(', ')}`);
  // Keep the canonical order, whatever order was asked for.
  return all.filter((a) => items.includes(a));
}

/** How long each kind of job runs, per mode. */
interface Plan {
  readonly warmupSteps: number;
  readonly maxSteps: number;
  readonly budgetS: number | null;
  readonly reps: number;
  readonly repMs: number;
  /** A child running longer than this is killed and reported as failed. */
  readonly timeoutS: number;
}

/** Seconds of measured steps per training job in a --quick run. */
const QUICK_BUDGET_S = 1.5;

function planFor(c: CaseName, quick: boolean): Plan {
  if (!quick) return { warmupSteps: 0, maxSteps: stepsPerEpoch(c), budgetS: null, reps: 10, repMs: 500, timeoutS: 4 * 3600 };
  // Quick: 10 warm-up steps (JS kernels need a few to reach V8's optimizing tier), then up to a
  // few hundred steps or 1.5 s, whichever comes first (the whole --quick run must stay under a
  // minute). The spiking cases run fewer steps in that time, and so does the Poisson case, which
  // draws its spikes inside each step. A LIF step (batch 128, 25 steps,
  // 1000 units) takes a few hundred ms: 2 warm-up steps; a conv step tens to hundreds of ms: 3.
  if (c === 'lifNet') return { warmupSteps: 2, maxSteps: 20, budgetS: QUICK_BUDGET_S, reps: 5, repMs: 50, timeoutS: 180 };
  const maxSteps =
    c === 'poisson'
      ? 24
      : c === 'spiking' || c === 'lif' || c === 'lifStopGradient'
        ? 100
        : c === 'conv' || c === 'convEveryStep'
          ? 20
          : 300;
  return {
    warmupSteps: c === 'conv' || c === 'convEveryStep' ? 3 : 10,
    maxSteps,
    budgetS: QUICK_BUDGET_S,
    reps: 5,
    repMs: 50,
    timeoutS: 120,
  };
}

/** Runs one job in a child process; resolves with its report (a failed report if it crashed). */
function runChild(job: Job, timeoutS: number): Promise<WorkerReport> {
  if (job.peer === 'pytorch') return runPythonJob(job, timeoutS);
  return new Promise((resolve) => {
    const child = fork(join(here, 'worker.ts'), [JSON.stringify(job)], {
      execArgv: process.execArgv,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let output = '';
    let report: WorkerReport | undefined;
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    child.on('message', (m) => (report = m as WorkerReport));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (report) return resolve(report);
      const why = signal === 'SIGKILL' ? `killed after ${timeoutS} s` : `exited with ${code ?? signal}`;
      const tail = output.trim().split('\n').slice(-3).join(' / ');
      resolve({
        job,
        ok: false,
        error: `${why}${tail ? `: ${tail}` : ''}`,
        peakRssMB: NaN,
        backend: '?',
        weightsHash: '',
        dataSource: '-',
      });
    });
  });
}

/**
 * The vmap case in its own child process (bench/vmap.ts): its variants take turns in one process,
 * so the rows share the machine's drift; the parent renders the table.
 */
function runVmapCase(quick: boolean): Promise<string> {
  return new Promise((resolve) => {
    const args = ['--json', '--rounds', quick ? '5' : '11', '--calls', quick ? '5' : '10'];
    const child = fork(join(here, 'vmap.ts'), args, { execArgv: process.execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    child.on('exit', (code) => {
      const line = output.split('\n').find((l) => l.startsWith('VMAP_REPORT '));
      if (line === undefined) return resolve(`FAILED (exit ${code}): ${output.trim().split('\n').slice(-3).join(' / ')}`);
      const rows = JSON.parse(line.slice('VMAP_REPORT '.length)) as VmapRow[];
      const disposed = rows.find((r) => r.name.includes('disposed'));
      console.log(
        `vmap     spiketrace  per-example ${rows[1].ratio.toFixed(2)}x the batched gradient` +
          (disposed === undefined ? '' : `, previous results disposed ${disposed.ratio.toFixed(2)}x`),
      );
      resolve(vmapTable(rows));
    });
  });
}

function describe(r: WorkerReport): string {
  const head = `${r.job.case.padEnd(8)} ${r.job.peer.padEnd(11)}`;
  if (!r.ok || !r.result) return `${head} FAILED: ${r.error}`;
  const rss = `${r.peakRssMB.toFixed(0)} MB`;
  if (r.result.kind === 'matmul') return `${head} ${r.result.gflops.toFixed(2)} GFLOP/s (${r.result.bestMs.toFixed(3)} ms), ${rss}`;
  const t = r.result;
  const loss = t.losses.length ? t.losses[t.losses.length - 1].toFixed(4) : '-';
  return `${head} ${secondsPerEpoch(t).toFixed(2)} s/epoch, ${t.measuredSteps} steps in ${t.measuredS.toFixed(2)} s, first step ${t.firstStepS.toFixed(2)} s, loss after ${t.losses.length} steps ${loss}, ${rss}`;
}

/** A run's figure: s/epoch of a training job, GFLOP/s of the matmul (NaN for a failed run). */
function runFigure(r: WorkerReport): number {
  if (!r.ok || !r.result) return NaN;
  return r.result.kind === 'matmul' ? r.result.gflops : secondsPerEpoch(r.result);
}

function runSummary(r: WorkerReport): string {
  const v = runFigure(r);
  if (Number.isNaN(v)) return 'failed';
  return r.result?.kind === 'matmul' ? `${v.toFixed(1)} GFLOP/s` : `${v.toFixed(2)} s`;
}

/** The median of repeated runs by their figure (a failed run, if any, so that it is reported). */
function medianRun(list: readonly WorkerReport[]): WorkerReport {
  const failed = list.find((r) => !r.ok || !r.result);
  if (failed) return failed;
  const sorted = [...list].sort((a, b) => runFigure(a) - runFigure(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      peers: { type: 'string' },
      synthetic: { type: 'boolean', default: false },
      seed: { type: 'string', default: '0' },
      repeat: { type: 'string', default: '1' },
      out: { type: 'string', default: join(here, 'results.md') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const quick = values.quick ?? false;
  const peers = parseList('--peers', values.peers, PEERS);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new RangeError(`--seed: expected an integer, got '${values.seed}'`);
  const out = values.out ?? join(here, 'results.md');
  const asked = parseList<string>('--only', values.only, [...CASES, ...EXTRA_CASES]);
  const cases = CASES.filter((c) => asked.includes(c));
  const vmapSection = asked.includes('vmap') ? await runVmapCase(quick) : null;
  if (cases.length === 0 && vmapSection !== null) {
    const report = [
      '# spiketrace benchmark: vmap',
      '',
      `- load average ${loadavg()[0].toFixed(2)}`,
      '',
      '## Per-example gradients (vmap)',
      '',
      vmapSection,
      '',
    ].join('\n');
    atomicWrite(out, report);
    console.log(`\n${report}\nwritten to ${out}`);
    return 0;
  }
  const repeat = Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1) throw new RangeError(`--repeat: expected an integer >= 1, got '${values.repeat}'`);

  // With --repeat N the peers of a case take turns N times (A B A B ...), so that a machine whose
  // speed drifts (shared cores) slows every peer alike; each row reports its median run.
  const skipped: string[] = [];
  if (peers.includes('pytorch')) {
    const missing = pytorchMissing();
    if (missing) {
      skipped.push(`pytorch skipped: ${missing}`);
      peers.splice(peers.indexOf('pytorch'), 1);
    }
  }
  const jobs: { job: Omit<Job, 'inputsDir'>; timeoutS: number }[] = [];
  // The two LIF cases compare one model's surrogate written two ways: they take turns as well.
  const groups: CaseName[][] = [];
  for (const c of cases) {
    const paired = c === 'lifStopGradient' && groups.length > 0 && groups[groups.length - 1][0] === 'lif';
    if (paired) groups[groups.length - 1].push(c);
    else groups.push([c]);
  }
  for (const group of groups) {
    for (let r = 0; r < repeat; r++) {
      for (const c of group) {
        for (const peer of peers) {
          if (!CASE_PEERS[c].includes(peer)) continue;
          const { timeoutS, ...plan } = planFor(c, quick);
          jobs.push({ job: { peer, case: c, seed, ...plan }, timeoutS });
        }
      }
    }
  }
  if (!jobs.length) throw new RangeError(`nothing to run: the cases ${cases.join(', ')} have no job for the peers ${peers.join(', ')}`);

  const started = Date.now();
  const loadBefore = loadavg()[0];
  const rows = Math.min(
    TRAIN_ROWS,
    Math.max(0, ...jobs.filter((j) => j.job.case !== 'matmul').map((j) => (j.job.warmupSteps + j.job.maxSteps) * batchOf(j.job.case))),
  );
  const inputs = await buildInputs(rows, seed, values.synthetic ?? false);
  const inputsDir = mkdtempSync(join(tmpdir(), 'spiketrace-bench-'));
  const runs = new Map<string, WorkerReport[]>();
  try {
    writeInputs(inputsDir, inputs);
    console.log(
      `spiketrace benchmark (${quick ? 'quick' : 'full'}): ${jobs.length} jobs, one child process each; data ${inputs.data?.source ?? '-'}, ${rows} rows`,
    );
    for (const s of skipped) console.log(s);
    for (const { job, timeoutS } of jobs) {
      const t = Date.now();
      const report = await runChild({ ...job, inputsDir }, timeoutS);
      const k = key(job.peer, job.case);
      runs.set(k, [...(runs.get(k) ?? []), report]);
      console.log(`${describe(report)} [child ${((Date.now() - t) / 1000).toFixed(1)} s]`);
    }
  } finally {
    rmSync(inputsDir, { recursive: true, force: true });
  }
  const wallS = (Date.now() - started) / 1000;
  const loadAfter = loadavg()[0];
  const results = new Map<string, WorkerReport>();
  for (const [k, list] of runs) results.set(k, medianRun(list));
  const spread =
    repeat > 1 ? [...runs.values()].map((list) => `${list[0].job.case} ${list[0].job.peer}: ${list.map(runSummary).join(', ')}`) : [];

  // Every peer must have trained from the same bytes.
  const dense = (w: typeof inputs.weights): string => hashArrays([w.w1, w.b1, w.w2, w.b2]);
  const expected = {
    weights: dense(inputs.weights),
    lif: dense(inputs.lifWeights),
    matmul: hashArrays([inputs.matmul.a, inputs.matmul.b]),
  };
  const expectedHash = (c: CaseName): string => (c === 'matmul' ? expected.matmul : c === 'lifNet' ? expected.lif : expected.weights);
  const mismatched = [...runs.values()].flat().filter((r) => r.ok && r.weightsHash !== expectedHash(r.job.case));
  const lossDiffs = lossMismatches(results);
  const cpu = cpus();
  const busy = Math.max(loadBefore, loadAfter) > 0.5 * cpu.length;
  const notes = [
    `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${quick ? '`--quick`' : 'full'} run, ${wallS.toFixed(0)} s wall; Node ${process.version}, ${cpu.length} x ${cpu[0]?.model.trim() ?? '?'}`,
    `load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after${busy ? ' **(the machine was busy: timings are unreliable)**' : ''}`,
    `data: ${inputs.data ? `${inputs.data.source}, one seeded shuffle (seed ${seed}), batch 32 (128 for lifNet), the same batches in the same order for every peer` : '-'}`,
    ...skipped,
    `initial weights: glorot-uniform kernels, zero biases, seed ${seed}, hash ${expected.weights} (lifNet ${expected.lif}); ${mismatched.length ? `**MISMATCH in ${mismatched.map((r) => `${r.job.peer}/${r.job.case}`).join(', ')}**` : 'every peer received the same bytes'}`,
    'optimizer: Adam (lr 1e-3, 5e-4 for lifNet; beta1 0.9, beta2 0.999, epsilon 1e-7); loss: sparse softmax cross-entropy from logits (lifNet: of the output spike counts)',
    lossDiffs.length
      ? `**first-step losses differ (same weights, same batch): ${lossDiffs.join('; ')}**`
      : 'first-step losses: every peer agrees with spiketrace (same weights, same batch)',
    quick
      ? `s/epoch is extrapolated to ${stepsPerEpoch('m1')} steps (${stepsPerEpoch('lifNet')} for lifNet) from the steps measured after ${planFor('m1', true).warmupSteps} warm-up steps (2 for lifNet; at most ${planFor('m1', true).maxSteps} steps, fewer for the spiking cases, or ${QUICK_BUDGET_S} s); samples/s over the measured steps`
      : `s/epoch is one measured epoch of ${stepsPerEpoch('m1')} steps (${stepsPerEpoch('lifNet')} for lifNet), the first (compiling) step included`,
    'peak RSS: the high-water mark of the child process of that row (VmHWM; the shared inputs it read included)',
    ...(repeat > 1
      ? [
          `--repeat ${repeat}: the peers of each case took turns ${repeat} times; every row is its median run. All runs: ${spread.join('; ')}`,
        ]
      : []),
  ];
  const report =
    renderReport(results, { title: `spiketrace benchmark${quick ? ' (--quick)' : ''}`, notes, cases, peers }) +
    (vmapSection === null ? '' : `\n## Per-example gradients (vmap, spiketrace only)\n\n${vmapSection}\n`);
  atomicWrite(out, report);
  console.log(`\n${report}`);
  console.log(`written to ${out}`);
  for (const t of targets(results)) console.log(`target: ${t.text}: ${t.measured} -> ${t.status}`);
  for (const d of lossDiffs) console.log(`WARNING: first-step loss differs, ${d}`);
  return [...runs.values()].flat().some((r) => !r.ok) || mismatched.length || lossDiffs.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    console.error(USAGE);
    process.exit(2);
  },
);
