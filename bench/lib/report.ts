/** The benchmark's tables (markdown, also printed) and the issues' targets. */
import {
  CASE_PEERS,
  TRAIN_ROWS,
  batchOf,
  stepsPerEpoch,
  type CaseName,
  type MatmulResult,
  type PeerName,
  type TrainResult,
  type WorkerReport,
} from './common.js';

export const CASE_TITLES: Record<CaseName, string> = {
  matmul: '1. matmul 320x784x128 float32',
  m1: '2. M1: Dense(128, relu) -> Dense(10) on flattened 784 inputs',
  m2: '3. M2: 10 steps of the repeated image, TimeDistributed Dense(128) -> relu -> mean over time -> Dense(10)',
  spiking:
    "4. spiking-aware M2: spikingActivation('relu', { dt: 0.01 }) (PyTorch: a custom autograd function; jax-js and tfjs rows are their M2)",
  poisson: '5. spiking-aware M2 on Poisson spike input (time-varying; jax-js and tfjs rows are their M2)',
  lif: "6. M2 with leaky({ beta: 0.95 }) neurons, fast-sigmoid surrogate as a customVjp (spiketrace only; peers' rows are their M2)",
  lifStopGradient:
    "7. the same LIF model, its surrogate written with stopGradient (s + sg(H(u) - s)) (spiketrace only; peers' rows are their M2)",
  lifNet:
    '8. LIF example network: rate-coded images over 25 steps, Dense(1000) -> Leaky -> Dense(10) -> Leaky, cross-entropy on spike counts, batch 128',
  conv: '9. conv: the spiking CNN example with relu neurons, 10 steps of the repeated image, TimeDistributed Conv2D(32, 3x3) -> relu -> AvgPool(2) -> Conv2D(64, 3x3) -> relu -> AvgPool(2) -> mean over time -> Dense(10)',
  convEveryStep:
    "10. the conv network with every step computed (the repeated image materialized in the step, as time-varying input would be; spiketrace only, peers' rows are their conv runs, which compute every step)",
};

/** Seconds per 60k epoch: measured when a whole epoch ran, else extrapolated from the measured steps. */
export function secondsPerEpoch(r: TrainResult): number {
  if (r.warmupSteps === 0 && r.measuredSteps >= r.stepsPerEpoch) return r.measuredS;
  return (r.measuredS / r.measuredSteps) * r.stepsPerEpoch;
}

const f = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');
/** 3 significant digits, without exponent notation for the sizes we print. */
const g3 = (x: number): string =>
  !Number.isFinite(x) ? '-' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toPrecision(3);
const mean = (a: readonly number[]): number => a.reduce((s, v) => s + v, 0) / a.length;

type Results = ReadonlyMap<string, WorkerReport>;
export const key = (peer: PeerName, c: CaseName): string => `${peer}/${c}`;

function train(results: Results, peer: PeerName, c: CaseName): TrainResult | undefined {
  const r = results.get(key(peer, c));
  return r?.ok && r.result?.kind === 'train' ? r.result : undefined;
}
function matmul(results: Results, peer: PeerName): MatmulResult | undefined {
  const r = results.get(key(peer, 'matmul'));
  return r?.ok && r.result?.kind === 'matmul' ? r.result : undefined;
}

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function failedRows(results: Results, c: CaseName, width: number): string[][] {
  return [...results.values()]
    .filter((r) => r.job.case === c && !r.ok)
    .map((r) => [r.job.peer, `failed: ${(r.error ?? '?').replace(/\|/g, '/').slice(0, 160)}`, ...new Array<string>(width - 2).fill('')]);
}

function matmulTable(results: Results, peers: readonly PeerName[]): string {
  const st = matmul(results, 'spiketrace');
  const rows = peers.flatMap((p) => {
    const r = matmul(results, p);
    const rep = results.get(key(p, 'matmul'));
    if (!r || !rep) return [];
    const ratio = st && p !== 'spiketrace' ? `${f(st.gflops / r.gflops, 3)}x` : '-';
    const peak = st?.simdPeak;
    const ofPeak = peak ? `${f((100 * r.gflops) / peak.allThreads, 0)}%` : '-';
    return [
      [
        p,
        rep.backend,
        f(r.gflops, 2),
        f(r.bestMs, 3),
        `best of ${r.reps} x ${r.callsPerRep}`,
        f(rep.peakRssMB, 0),
        r.checksum.toFixed(1),
        ofPeak,
        ratio,
      ],
    ];
  });
  const peak = st?.simdPeak;
  const peakNote = peak ? `${f(peak.allThreads, 1)} GFLOP/s on ${peak.threads} threads (${f(peak.oneThread, 1)} on one)` : 'not measured';
  const header = [
    'peer',
    'backend',
    'GFLOP/s',
    'ms/matmul',
    'repetitions',
    'peak RSS MB',
    'sum of output',
    `of wasm SIMD peak (${peakNote})`,
    'spiketrace/peer GFLOP/s (higher is better)',
  ];
  return table(header, [...rows, ...failedRows(results, 'matmul', header.length)]);
}

/**
 * A training case: one row per peer. For the spiking cases the peers' rows are their M2 runs (the
 * peers have no spiking neuron), so the ratio compares spiketrace's spiking model with their M2.
 * Loss sanity check: from the same weights on the same batches, the first step's loss agrees to
 * float32 rounding, and the mean loss over the steps both ran stays close to spiketrace's.
 */
function trainTable(results: Results, c: Exclude<CaseName, 'matmul'>, peers: readonly PeerName[]): string {
  const spikingCase = c === 'spiking' || c === 'poisson' || c === 'lif' || c === 'lifStopGradient';
  const standIn: CaseName = c === 'convEveryStep' ? 'conv' : spikingCase ? 'm2' : c;
  const entries = peers.flatMap((p) => {
    const pc: CaseName = CASE_PEERS[c].includes(p) ? c : standIn;
    const r = train(results, p, pc);
    const rep = results.get(key(p, pc));
    return r && rep ? [{ peer: p, label: pc === c ? p : `${p} (${pc === 'm2' ? 'M2' : pc})`, sameModel: pc === c, r, rep }] : [];
  });
  const st = entries.find((e) => e.peer === 'spiketrace');
  const rows = entries.map(({ peer, label, sameModel, r, rep }) => {
    const s = secondsPerEpoch(r);
    const ratio = st && peer !== 'spiketrace' ? `${f(secondsPerEpoch(st.r) / s, 3)}x` : '-';
    const how =
      r.warmupSteps === 0 && r.measuredSteps >= r.stepsPerEpoch
        ? `full epoch (${r.measuredSteps} steps)`
        : `extrapolated from ${r.measuredSteps} steps`;
    const samples = (r.measuredSteps * batchOf(c)) / r.measuredS;
    // Steps shared with spiketrace (all of this row's steps for spiketrace itself).
    const k = st && sameModel ? Math.min(r.losses.length, st.r.losses.length) : r.losses.length;
    const stMean = st && sameModel && peer !== 'spiketrace' ? f(mean(st.r.losses.slice(0, k)), 4) : '-';
    return [
      label,
      rep.backend,
      g3(s),
      how,
      f(samples, 0),
      f(r.firstStepS, 2),
      f(rep.peakRssMB, 0),
      f(r.losses[0], 5),
      `${f(mean(r.losses.slice(0, k)), 4)} (1-${k})`,
      stMean,
      ratio,
    ];
  });
  const header = [
    'peer',
    'backend',
    's/epoch',
    'how',
    'samples/s',
    '1st step s',
    'peak RSS MB',
    'loss step 1',
    'mean loss (steps)',
    'spiketrace, same steps',
    'spiketrace/peer time (lower is better)',
  ];
  return table(header, [...rows, ...failedRows(results, c, header.length)]);
}

/**
 * Peers whose first-step loss differs from spiketrace's on the same model (M1, M2, LIF on the
 * parent's spikes): from the same weights on the same batch it must agree to float32 rounding, so a
 * difference means one side computed something else (a bug, or a different model). The spiking
 * and Poisson cases draw random initial voltages or spikes with each library's own generator.
 */
export function lossMismatches(results: Results, tolerance = 1e-3): string[] {
  const out: string[] = [];
  for (const c of ['m1', 'm2', 'lifNet'] as const) {
    const st = train(results, 'spiketrace', c);
    if (!st?.losses.length) continue;
    for (const r of results.values()) {
      if (r.job.case !== c || r.job.peer === 'spiketrace' || !r.ok || r.result?.kind !== 'train' || !r.result.losses.length) continue;
      const a = st.losses[0];
      const b = r.result.losses[0];
      if (!(Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(b)))) out.push(`${c}: spiketrace ${f(a, 5)} vs ${r.job.peer} ${f(b, 5)}`);
    }
  }
  return out;
}

export interface Target {
  readonly text: string;
  readonly measured: string;
  readonly status: 'met' | 'not met' | 'n/a';
}

/** The targets, each from spiketrace's and one peer's numbers. */
export function targets(results: Results): Target[] {
  const out: Target[] = [];
  const mmSt = matmul(results, 'spiketrace');
  const mmTf = matmul(results, 'tfjs-wasm');
  out.push(
    mmSt && mmTf
      ? {
          text: 'matmul GFLOP/s >= 1.0x tfjs-wasm',
          measured: `${f(mmSt.gflops, 2)} / ${f(mmTf.gflops, 2)} = ${f(mmSt.gflops / mmTf.gflops, 3)}x`,
          status: mmSt.gflops / mmTf.gflops >= 1 ? 'met' : 'not met',
        }
      : { text: 'matmul GFLOP/s >= 1.0x tfjs-wasm', measured: 'needs matmul of spiketrace and tfjs-wasm', status: 'n/a' },
  );
  const peak = mmSt?.simdPeak;
  out.push(
    mmSt && peak
      ? {
          text: 'matmul >= 60% of the WebAssembly SIMD peak (2 threads)',
          measured: `${f(mmSt.gflops, 2)} / ${f(peak.allThreads, 2)} = ${f((100 * mmSt.gflops) / peak.allThreads, 1)}%`,
          status: mmSt.gflops >= 0.6 * peak.allThreads ? 'met' : 'not met',
        }
      : { text: 'matmul >= 60% of the WebAssembly SIMD peak (2 threads)', measured: 'needs matmul of spiketrace', status: 'n/a' },
  );
  const timeTarget = (text: string, c: CaseName, peerCase: CaseName, limit: number, peer: PeerName = 'jax-js'): Target => {
    const a = train(results, 'spiketrace', c);
    const b = train(results, peer, peerCase);
    if (!a || !b) return { text, measured: `needs ${c} of spiketrace and ${peerCase} of ${peer}`, status: 'n/a' };
    const ratio = secondsPerEpoch(a) / secondsPerEpoch(b);
    return {
      text,
      measured: `${g3(secondsPerEpoch(a))} s / ${g3(secondsPerEpoch(b))} s = ${f(ratio, 3)}x`,
      status: ratio <= limit ? 'met' : 'not met',
    };
  };
  out.push(timeTarget('M1 epoch <= 0.5x jax-js M1', 'm1', 'm1', 0.5));
  out.push(timeTarget('spiking-aware epoch <= 0.25x jax-js M2', 'spiking', 'm2', 0.25));
  out.push(timeTarget('time-varying (Poisson) spiking epoch <= 1.0x jax-js M2', 'poisson', 'm2', 1.0));
  // Issue 17: against PyTorch 1.13 on the CPU (2 threads, OpenMP OpenBLAS).
  out.push(timeTarget('M1 epoch <= 0.7x PyTorch M1', 'm1', 'm1', 0.7, 'pytorch'));
  out.push(timeTarget('M1 epoch <= 0.4x jax-js M1', 'm1', 'm1', 0.4));
  out.push(timeTarget('M2 epoch <= 0.4x PyTorch M2', 'm2', 'm2', 0.4, 'pytorch'));
  out.push(timeTarget('spiking-aware epoch <= 0.4x PyTorch spiking', 'spiking', 'spiking', 0.4, 'pytorch'));
  out.push(timeTarget('LIF example epoch <= 0.5x PyTorch LIF example', 'lifNet', 'lifNet', 0.5, 'pytorch'));
  // Issue 13: the conv case, and (informative) the same network with every step computed.
  out.push(timeTarget('conv epoch <= 1.0x PyTorch conv', 'conv', 'conv', 1.0, 'pytorch'));
  out.push(timeTarget('conv epoch, every step computed <= 1.0x PyTorch conv', 'convEveryStep', 'conv', 1.0, 'pytorch'));
  // Issue 12: a surrogate written as a customVjp costs no more than the stopGradient form.
  const cv = train(results, 'spiketrace', 'lif');
  const sg = train(results, 'spiketrace', 'lifStopGradient');
  const text = 'LIF epoch, customVjp surrogate <= 1.2x the stopGradient form';
  if (!cv || !sg) out.push({ text, measured: 'needs lif and lifStopGradient of spiketrace', status: 'n/a' });
  else {
    const ratio = secondsPerEpoch(cv) / secondsPerEpoch(sg);
    out.push({
      text,
      measured: `${g3(secondsPerEpoch(cv))} s / ${g3(secondsPerEpoch(sg))} s = ${f(ratio, 3)}x`,
      status: ratio <= 1.2 ? 'met' : 'not met',
    });
  }
  return out;
}

export interface ReportContext {
  readonly title: string;
  readonly notes: readonly string[];
  readonly cases: readonly CaseName[];
  readonly peers: readonly PeerName[];
}

export function renderReport(results: Results, ctx: ReportContext): string {
  const parts = [`# ${ctx.title}`, '', ...ctx.notes.map((n) => `- ${n}`), ''];
  for (const c of ctx.cases) {
    parts.push(`## ${CASE_TITLES[c]}`, '', c === 'matmul' ? matmulTable(results, ctx.peers) : trainTable(results, c, ctx.peers), '');
  }
  parts.push(
    '## Targets (issues 6 and 17)',
    '',
    table(
      ['target', 'measured', 'status'],
      targets(results).map((t) => [t.text, t.measured, t.status]),
    ),
    '',
  );
  parts.push(
    `Epoch = ${TRAIN_ROWS} samples = ${stepsPerEpoch('m1')} steps of batch ${batchOf('m1')} (lifNet: ${stepsPerEpoch('lifNet')} steps of ${batchOf('lifNet')}). Ratios below 1 in the time columns mean spiketrace is faster.`,
    '',
  );
  return parts.join('\n');
}
