/**
 * Without a shared WebAssembly memory (a browser page that is not cross-origin isolated) nothing
 * lives in the kernel arena and every kernel copies its operands: the same training run must give
 * the same losses and weights, bit for bit, as with arrays in the arena.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';

const run = (flags: string[]): { resident: boolean; losses: number[]; sum: number } =>
  JSON.parse(
    execFileSync(process.execPath, ['--import', 'tsx', 'test/backend/fixtures/train-steps.ts', ...flags], {
      encoding: 'utf8',
      timeout: 120_000,
    })
      .trim()
      .split('\n')
      .pop()!,
  );

t.test('training without a shared memory equals training with arrays in the arena', async (t) => {
  const shared = run([]);
  const plain = run(['--no-shared-memory']);
  t.equal(shared.resident, true, 'Node: arrays may live in the arena');
  t.equal(plain.resident, false, 'without SharedArrayBuffer: nothing is resident');
  t.equal(plain.losses.length, 16, '16 steps');
  t.same(plain.losses, shared.losses, 'the same loss at every step');
  t.equal(plain.sum, shared.sum, 'the same final kernel');
});
