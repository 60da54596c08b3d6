// The LIF example's --quick run: trains with the surrogate gradient, reports accuracy, silent
// outputs and rates, writes the raster (PNG + SVG) and results.json whose numbers match the log.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const haveData = existsSync('/usr/share/datasets/fashion-mnist') || process.env.FASHION_MNIST_DIR !== undefined;
t.test('npm run example:lif -- --quick', { skip: haveData ? false : 'no Fashion-MNIST files here' }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'spiketrace-lif-'));
  const log = execFileSync(process.execPath, ['--import', 'tsx', 'examples/lif-fashion-mnist.ts', '--quick', '--out', out], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  const acc = /Test accuracy: (\d+\.\d\d)%/.exec(log);
  t.ok(acc, 'prints the test accuracy');
  t.match(log, /Silent outputs \(no output spike at all\): \d+\.\d% of test images/);
  t.match(log, /Spikes per neuron per step: hidden \d\.\d{4}, output \d\.\d{4}/);
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
    accuracy: number;
    silentFraction: number;
    hiddenSpikesPerStep: number;
    epochs: number;
  };
  t.equal((100 * results.accuracy).toFixed(2), acc?.[1], 'results.json holds the printed accuracy');
  // Ten classes: two epochs on 512 images already beat chance clearly (38% with this seed).
  t.ok(results.accuracy > 0.2, `accuracy ${results.accuracy} above chance (0.1)`);
  t.ok(results.hiddenSpikesPerStep > 0 && results.hiddenSpikesPerStep < 1, 'the hidden layer spikes, not always');
  t.same([...readFileSync(join(out, 'raster.png')).subarray(0, 4)], [137, 80, 78, 71], 'raster PNG');
  t.ok(readFileSync(join(out, 'raster.svg'), 'utf8').includes('<svg'), 'raster SVG');
});
