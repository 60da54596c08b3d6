// The NIR example's --quick run: a trained LIF network exported to NIR and loaded back gives the
// same test accuracy (outputs equal bit for bit); the Rockpool fixture runs and is plotted.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const haveData = existsSync('/usr/share/datasets/fashion-mnist') || process.env.FASHION_MNIST_DIR !== undefined;
t.test('npm run example:nir -- --quick', { skip: haveData ? false : 'no Fashion-MNIST files here' }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'nir-example-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const log = execFileSync(process.execPath, ['--import', 'tsx', 'examples/nir.ts', '--quick', '--out', out], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  const m = /Test accuracy: spiketrace (\d+\.\d\d)%, after NIR export and import (\d+\.\d\d)%; outputs identical bit for bit/.exec(log);
  t.ok(m, 'both accuracies, outputs identical');
  if (m) t.equal(m[2], m[1], 'the same accuracy');
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
    accuracyBefore: number;
    accuracyAfter: number;
    identicalOutputs: boolean;
    fixture: { spikeSteps: number[]; figures: string[] } | null;
  };
  t.equal(results.accuracyAfter, results.accuracyBefore);
  t.ok(results.accuracyBefore > 0.2, `above chance (${results.accuracyBefore})`);
  t.ok(existsSync(join(out, 'fashion-lif.nir')));
  if (results.fixture) {
    t.ok(
      results.fixture.spikeSteps.length > 0 && results.fixture.spikeSteps[0] >= 50,
      'the fixture neuron fires only after the current starts',
    );
    for (const f of results.fixture.figures) t.ok(existsSync(f), `wrote ${f}`);
  }
});
