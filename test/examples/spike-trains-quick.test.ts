// The spike-train example's --quick run: trains on Poisson input drawn per batch, reports rates,
// and its CPU energy total equals the spec's closed form (8.6e-9 J per synop and per neuron).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const haveData = existsSync('/usr/share/datasets/fashion-mnist') || process.env.FASHION_MNIST_DIR !== undefined;
t.test('npm run example:spikes -- --quick', { skip: haveData ? false : 'no Fashion-MNIST files here' }, async (t) => {
  const log = execFileSync(process.execPath, ['--import', 'tsx', 'examples/spike-trains.ts', '--quick'], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  t.match(log, /Test accuracy on fresh spike trains: \d+\.\d\d%/);
  t.match(log, /Hidden spike rate per neuron \(Hz\): min=\d+\.\d\d mean=\d+\.\d\d max=\d+\.\d\d/);
  const total = /^total\s+(\d+)\s+(\d+)\s+([\d.e+-]+)\s+([\d.e+-]+)/m.exec(log);
  t.ok(total, 'an energy total row');
  if (!total) return;
  const [connections, neurons, cpu, loihi] = [Number(total[1]), Number(total[2]), Number(total[3]), Number(total[4])];
  // Dense 784 -> 128 and 128 -> 10; the spiking layer's 128 neurons.
  t.equal(connections, 784 * 128 + 128 * 10);
  t.equal(neurons, 128);
  t.ok(Math.abs(cpu - 8.6e-9 * (connections + neurons)) < 1e-3 * cpu, `cpu total ${cpu} = 8.6e-9 J x (synops + neuron updates)`);
  t.ok(loihi > 0 && loihi < cpu, 'loihi below cpu');
});
