// Smoke test of the benchmark harness (bench/run.ts): a tiny synthetic run of two peers, checking
// the report's shape and that both peers trained the same problem (same first-step loss).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pytorchMissing } from '../../bench/lib/python.js';

t.test('bench/run.ts --quick --synthetic writes the tables and the targets', async (t) => {
  const out = join(mkdtempSync(join(tmpdir(), 'spiketrace-bench-test-')), 'results.md');
  const args = [
    '--import',
    'tsx',
    'bench/run.ts',
    '--quick',
    '--synthetic',
    '--only',
    'matmul,m1',
    '--peers',
    'spiketrace,jax-js',
    '--out',
    out,
  ];
  const log = execFileSync(process.execPath, args, { encoding: 'utf8', timeout: 240_000 });
  t.match(log, /matmul\s+spiketrace\s+\d+\.\d+ GFLOP\/s/);
  const md = readFileSync(join(out), 'utf8');
  t.match(md, /## 1\. matmul 320x784x128/);
  t.match(md, /## 2\. M1/);
  t.match(md, /every peer received the same bytes/);
  t.match(md, /first-step losses: every peer agrees with spiketrace/);
  t.match(md, /\| M1 epoch <= 0\.5x jax-js M1 \| .* \| (met|not met) \|/);
  t.match(md, /\| matmul GFLOP\/s >= 1\.0x tfjs-wasm \| needs matmul of spiketrace and tfjs-wasm \| n\/a \|/);
  // The first step's loss: same weights, same batch, so equal to float32 rounding.
  const m1 = md.slice(md.indexOf('## 2. M1'));
  const firstLoss = (peer: string): number => Number(new RegExp(`^\\| ${peer} \\|(?:[^|]*\\|){6} ([\\d.]+) \\|`, 'm').exec(m1)?.[1]);
  t.ok(Number.isFinite(firstLoss('spiketrace')), 'spiketrace row has a first-step loss');
  t.ok(Math.abs(firstLoss('spiketrace') - firstLoss('jax-js')) < 1e-4, 'spiketrace and jax-js start from the same loss');
});

t.test(
  'the PyTorch peer trains M1 and LIF from the same weights and first batch as spiketrace',
  { skip: pytorchMissing() ?? false },
  async (t) => {
    const out = join(mkdtempSync(join(tmpdir(), 'spiketrace-bench-test-')), 'results.md');
    const args = [
      '--import',
      'tsx',
      'bench/run.ts',
      '--quick',
      '--synthetic',
      '--only',
      'm1,lifNet',
      '--peers',
      'spiketrace,pytorch',
      '--out',
      out,
    ];
    const log = execFileSync(process.execPath, args, { encoding: 'utf8', timeout: 240_000 });
    t.match(log, /m1\s+pytorch\s+\d+\.\d+ s\/epoch/);
    const md = readFileSync(out, 'utf8');
    t.match(md, /every peer received the same bytes/);
    // M1: torch's first-step loss agrees with spiketrace's to float32 rounding (the report fails otherwise).
    t.match(md, /first-step losses: every peer agrees with spiketrace/);
    t.match(md, /\| M1 epoch <= 0\.7x PyTorch M1 \| .* \| (met|not met) \|/);
    // LIF: spiketrace's leaky network and PyTorch's agree on the first (shared) batch's loss.
    const lif = md.slice(md.indexOf('## 8. LIF example'));
    t.match(lif, /^\| pytorch \| torch [^|]* \| [\d.]+ \|/m);
    t.match(lif, /^\| spiketrace \| cpu backend[^|]* \| [\d.]+ \|/m);
    t.match(md, /\| LIF example epoch <= 0\.5x PyTorch LIF example \| .* \| (met|not met) \|/);
  },
);
