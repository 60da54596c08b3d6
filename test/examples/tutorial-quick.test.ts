// The tutorial's --quick run end to end: every figure written as a valid PNG of the right size.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pngSize } from '../../examples/lib/figures.js';

const haveData = existsSync('/usr/share/datasets/fashion-mnist') || process.env.FASHION_MNIST_DIR !== undefined;
t.test(
  'npm run tutorial -- --quick writes every figure and the results',
  { skip: haveData ? false : 'no Fashion-MNIST files here' },
  async (t) => {
    const out = mkdtempSync(join(tmpdir(), 'spiketrace-tutorial-'));
    const log = execFileSync(process.execPath, ['--import', 'tsx', 'examples/fashion-mnist.ts', '--quick', '--out', out], {
      encoding: 'utf8',
      timeout: 600_000,
    });
    t.match(log, /Test accuracy: \d+\.\d+%/);
    t.match(log, /Spike rate per neuron \(Hz\): min=\d+\.\d\d mean=\d+\.\d\d max=\d+\.\d\d/);
    const files = readdirSync(out);
    // 1 sample grid + 7 check_output runs x 4 images, each as PNG and SVG.
    t.equal(files.filter((f) => f.endsWith('.png')).length, 1 + 7 * 4);
    t.equal(files.filter((f) => f.endsWith('.svg')).length, 1 + 7 * 4);
    for (const f of files.filter((f) => f.endsWith('.png'))) {
      const png = readFileSync(join(out, f));
      t.same([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], `${f} has the PNG signature`);
      const { width, height } = pngSize(png);
      if (f.startsWith('samples')) t.ok(width > 700 && height > 700, `${f} is a 5x5 grid (${width}x${height})`);
      else t.ok(width > 1000 && height > 300 && height < 500, `${f} is a 1x3 figure (${width}x${height})`);
    }
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { rows: { accuracy: number }[] };
    t.equal(results.rows.length, 8, 'the eight rows of the seed table');
    for (const r of results.rows) t.ok(r.accuracy >= 0 && r.accuracy <= 1);
    // Longer simulated time must not lose accuracy on the same trained model (rows 2..5: dt 0.001 .. 1).
    t.ok(results.rows[4].accuracy > results.rows[1].accuracy, 'dt 1 beats dt 0.001');

    // The same run with the five trainings in five processes (--jobs, the full run's default):
    // the same rows to full precision and the same figures.
    const outJobs = mkdtempSync(join(tmpdir(), 'spiketrace-tutorial-jobs-'));
    const logJobs = execFileSync(
      process.execPath,
      ['--import', 'tsx', 'examples/fashion-mnist.ts', '--quick', '--jobs', '5', '--out', outJobs],
      {
        encoding: 'utf8',
        timeout: 600_000,
      },
    );
    t.match(logJobs, /5 trainings in 5 processes/);
    t.match(logJobs, /^model 3, Epoch 1\/1: 16\/16 \[=+\] - .*loss: /m, 'live progress lines');
    const resultsJobs = JSON.parse(readFileSync(join(outJobs, 'results.json'), 'utf8')) as { rows: unknown[] };
    t.same(resultsJobs.rows, results.rows, '--jobs 5 gives the rows of the one-process run');
    for (const f of files.filter((f) => f.endsWith('.png')))
      t.ok(readFileSync(join(outJobs, f)).equals(readFileSync(join(out, f))), `${f}: the same figure`);
  },
);
