// The spiking CNN example's --quick run: trains a few batches, reports accuracy and both spiking
// layers' rates, writes results.json and the figure; its CPU energy total equals the spec's closed
// form (8.6e-9 J per synop and per neuron update) for the layer counts worked out here.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const haveData = existsSync('/usr/share/datasets/fashion-mnist') || process.env.FASHION_MNIST_DIR !== undefined;
t.test('npm run example:cnn -- --quick', { skip: haveData ? false : 'no Fashion-MNIST files here' }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'spiking-cnn-'));
  const log = execFileSync(process.execPath, ['--import', 'tsx', 'examples/spiking-cnn.ts', '--quick', '--out', out], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  // Both training phases ran, the rate-based one on one time step, and the reported accuracy is
  // the spiking network's.
  t.match(log, /Phase 1 done in \d+ s: test accuracy \d+\.\d\d% non-spiking, \d+\.\d\d% spiking \(10 steps of 10 ms\)/);
  t.match(log, /Phases run: rate-based 1 epoch\(s\) at 1 step\(s\), \d+ s; spiking-aware 1 epoch\(s\) at 10 step\(s\), \d+ s/);
  t.match(log, /Test accuracy: \d+\.\d\d% \(spiking, 10 steps of 10 ms\)/);
  t.match(log, /Spike rate per neuron \(Hz\), spikes1: min=\d+\.\d\d mean=\d+\.\d\d max=\d+\.\d\d/);
  t.match(log, /Spike rate per neuron \(Hz\), spikes2: min=\d+\.\d\d mean=\d+\.\d\d max=\d+\.\d\d/);
  const total = /^total\s+(\d+)\s+(\d+)\s+([\d.e+-]+)\s+([\d.e+-]+)/m.exec(log);
  t.ok(total, 'an energy total row');
  if (!total) return;
  const [connections, neurons, cpu, loihi] = [Number(total[1]), Number(total[2]), Number(total[3]), Number(total[4])];
  // conv1: 26*26*32 outputs x 3*3*1; pool1: 13*13*32 outputs x 4 taps; conv2: 11*11*64 x 3*3*32;
  // pool2: 5*5*64 x 4; readout 1600 x 10. Neurons: the two spiking layers.
  t.equal(connections, 26 * 26 * 32 * 9 + 13 * 13 * 32 * 4 + 11 * 11 * 64 * 9 * 32 + 5 * 5 * 64 * 4 + 1600 * 10);
  t.equal(neurons, 26 * 26 * 32 + 11 * 11 * 64);
  t.ok(Math.abs(cpu - 8.6e-9 * (connections + neurons)) < 1e-3 * cpu, `cpu total ${cpu} = 8.6e-9 J x (synops + neuron updates)`);
  t.ok(loihi > 0 && loihi < cpu, 'loihi below cpu');
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
    testAccuracy: number;
    quick: boolean;
    phases: { phase: string; steps: number; testAccuracy: { spiking?: number } }[];
  };
  t.ok(results.quick && results.testAccuracy >= 0 && results.testAccuracy <= 1, 'results.json');
  t.same(
    results.phases.map((p) => [p.phase, p.steps]),
    [
      ['rate-based', 1],
      ['spiking-aware', 10],
    ],
    'results.json lists both phases',
  );
  t.equal(results.phases[1].testAccuracy.spiking, results.testAccuracy, 'the last phase ends at the reported (spiking) accuracy');
  t.ok(existsSync(join(out, 'spiking-cnn-0.png')) || existsSync(join(out, 'spiking-cnn-0.svg')), 'the figure');
});
