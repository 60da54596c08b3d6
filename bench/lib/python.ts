/**
 * The PyTorch peer runs in Python (bench/peers/pytorch.py), started by the parent in place of a
 * Node worker. Debian's python3-torch links the system BLAS: with the reference BLAS its matmul
 * runs at about 4 GFLOP/s, and the pthread OpenBLAS starts its own threads that fight torch's for
 * the two cores, so the command points the loader at the OpenMP build of OpenBLAS and drops the
 * OPENBLAS_* tuning variables this machine's environment sets (for this command only).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Job, WorkerReport } from './common.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', 'peers', 'pytorch.py');
/** Debian's interpreter: python3-torch is installed for it, not for a pyenv or venv python on PATH. */
const PYTHON = process.env.SPIKETRACE_BENCH_PYTHON ?? '/usr/bin/python3';
const OPENBLAS_OPENMP = '/usr/lib/x86_64-linux-gnu/openblas-openmp';

/** The environment of the Python peer: OpenMP OpenBLAS first on the loader path, no OPENBLAS_* overrides. */
export function pythonEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (existsSync(OPENBLAS_OPENMP)) env.LD_LIBRARY_PATH = [OPENBLAS_OPENMP, env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return env;
}

/** Null when PyTorch can be imported by the peer's interpreter, else why not (the peer is then skipped). */
export function pytorchMissing(): string | null {
  try {
    execFileSync(PYTHON, ['-c', 'import torch, numpy'], { env: pythonEnv(), stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    return null;
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n').filter(Boolean).slice(-1)[0] : String(e);
    return `${PYTHON} cannot import torch and numpy (install Debian's python3-torch and libopenblas0-openmp): ${why}`;
  }
}

/** Runs one job in the Python peer; resolves with its report (a failed report if it crashed). */
export function runPythonJob(job: Job, timeoutS: number): Promise<WorkerReport> {
  return new Promise((resolve) => {
    const child = spawn(PYTHON, [SCRIPT, JSON.stringify(job)], { env: pythonEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000);
    const fail = (why: string): WorkerReport => {
      const tail = output.trim().split('\n').slice(-3).join(' / ');
      return {
        job,
        ok: false,
        error: `${why}${tail ? `: ${tail}` : ''}`,
        peakRssMB: NaN,
        backend: 'torch',
        weightsHash: '',
        dataSource: '-',
      };
    };
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve(fail(`could not start ${PYTHON}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = output.split('\n').find((l) => l.startsWith('BENCH_REPORT '));
      if (line) return resolve(JSON.parse(line.slice('BENCH_REPORT '.length)) as WorkerReport);
      resolve(fail(signal === 'SIGKILL' ? `killed after ${timeoutS} s` : `exited with ${code ?? signal}`));
    });
  });
}
