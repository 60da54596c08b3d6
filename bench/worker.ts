/**
 * One benchmark job in its own process, so that each peer's peak RSS is its own:
 * `node --import tsx bench/worker.ts '<job json>'` (the inputs folder must hold writeInputs' files). Only the job's library is imported. The report
 * goes to the parent over IPC (bench/run.ts forks this file), or to stdout as a
 * `BENCH_REPORT {json}` line when run by hand.
 */
import { readFileSync } from 'node:fs';
import {
  bestOf,
  hashArrays,
  MATMUL,
  readInputs,
  StepClock,
  sum,
  type Job,
  type MatmulResult,
  type PeerName,
  type WorkerReport,
} from './lib/common.js';
import type { Peer } from './lib/peer.js';

async function createPeer(name: PeerName, training: boolean): Promise<Peer> {
  switch (name) {
    case 'spiketrace':
      return (await import('./peers/spiketrace.js')).createPeer();
    case 'jax-js':
      return (await import('./peers/jax-js.js')).createPeer();
    case 'tfjs-wasm':
      return (await import('./peers/tfjs.js')).createPeer('wasm', training);
    case 'tfjs-cpu':
      return (await import('./peers/tfjs.js')).createPeer('cpu', training);
    case 'pytorch':
      throw new Error('worker: the pytorch peer runs in Python (bench/peers/pytorch.py, started by bench/lib/python.ts)');
  }
}

async function runJob(job: Job): Promise<Omit<WorkerReport, 'peakRssMB'>> {
  let backend = '?';
  let weightsHash = '';
  let dataSource = '-';
  try {
    const inputs = readInputs(job.inputsDir, job.case !== 'matmul');
    const peer = await createPeer(job.peer, job.case !== 'matmul');
    backend = peer.backend;
    if (job.case === 'matmul') {
      const { a, b } = inputs.matmul;
      weightsHash = hashArrays([a, b]);
      const run = peer.matmul(a, b, MATMUL.m, MATMUL.k, MATMUL.n);
      const { bestMs, callsPerRep } = bestOf(run, job.reps, job.repMs);
      const gflops = (2 * MATMUL.m * MATMUL.k * MATMUL.n) / (bestMs * 1e6);
      const checksum = sum(run());
      // The machine's SIMD peak, the matmul row's denominator: measured once, by spiketrace's job.
      const simdPeak =
        job.peer === 'spiketrace' ? await (await import('./lib/simd-peak.js')).measureSimdPeak(job.reps, job.repMs / 5) : undefined;
      const result: MatmulResult = { kind: 'matmul', bestMs, gflops, reps: job.reps, callsPerRep, checksum, simdPeak };
      return { job, ok: true, result, backend, weightsHash, dataSource };
    }
    const w = job.case === 'lifNet' ? inputs.lifWeights : inputs.weights;
    weightsHash = hashArrays([w.w1, w.b1, w.w2, w.b2]);
    if (!inputs.data) throw new Error('worker: the inputs hold no training data');
    dataSource = inputs.data.source;
    const clock = new StepClock(job);
    peer.train(job.case, w, inputs.data, clock, job.seed, inputs.lifSpikes0);
    return { job, ok: true, result: clock.result(), backend, weightsHash, dataSource };
  } catch (e) {
    const error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return { job, ok: false, error, backend, weightsHash, dataSource };
  }
}

/**
 * This process's peak resident set (MB). On Linux, getrusage's maxRSS (`process.resourceUsage()`)
 * survives exec: a child forked from the parent starts with the parent's high-water mark, inputs
 * and all. VmHWM in /proc/self/status belongs to this process image alone, so it is preferred.
 */
function peakRssMB(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // No /proc (macOS, Windows): fall back to getrusage.
  }
  return process.resourceUsage().maxRSS / 1024;
}

const job = JSON.parse(process.argv[2] ?? '') as Job;
const partial = await runJob(job);
const report: WorkerReport = { ...partial, peakRssMB: peakRssMB() };
if (process.send) process.send(report, () => process.exit(0));
else {
  console.log(`BENCH_REPORT ${JSON.stringify(report)}`);
  process.exit(0);
}
