// Bad input to the spiking parts: each a clear error naming the part and the value.
import t from 'tap';
import { array, random, zeros } from '../../core/index.js';
import * as nn from '../../nn/index.js';
import { alpha, lowpass, modelEnergy, regularizers, spikingActivation } from '../../spiking/index.js';

t.test('dt <= 0 or not finite', async (t) => {
  for (const dt of [0, -0.01, NaN, Infinity]) {
    t.throws(() => spikingActivation('relu', { dt }), new RegExp(`spikingActivation '.*': dt must be a positive finite number, got ${dt}`));
    t.throws(() => lowpass(0.1, { dt }), /lowpass '.*': dt must be a positive finite number/);
  }
});

t.test('tau <= 0', async (t) => {
  t.throws(() => lowpass(-0.1), /lowpass '.*': tau must be positive, got -0.1/);
  t.throws(() => alpha(0), /alpha '.*': tau must be positive, got 0/);
});

t.test('percentile outside [0, 100]', async (t) => {
  t.throws(() => regularizers.percentile({ percentile: 101, l2: 1 }), /percentile must be within \[0, 100\], got 101/);
  t.throws(() => regularizers.percentile({ percentile: -1, l2: 1 }), /got -1/);
});

t.test('target ranges: low > high, or not two long', async (t) => {
  t.throws(() => regularizers.l2({ target: [20, 10] }), /low \(20\) exceeds high \(10\)/);
  t.throws(
    () => regularizers.l1({ target: [1, 2, 3] as unknown as [number, number] }),
    /target range must be \[low, high\], got \[1,2,3\]/,
  );
});

t.test('input without a time axis', async (t) => {
  const layer = spikingActivation('relu', { seed: 0 });
  const { state } = layer.init(random.key(0), [null, 4]);
  t.throws(
    () => layer.apply({}, zeros([2, 4]), { training: false }, state),
    /spikingActivation '.*': expected input \(batch, time, \.\.\.units\), got shape \[2, 4\]/,
  );
  t.throws(() => layer.init(random.key(0), [4]), /expected input \(batch, time, \.\.\.units\)/);
  const lp = lowpass(0.1);
  const v = lp.init(random.key(0), [null, 4]);
  t.throws(
    () => lp.apply(v.params, zeros([2, 4]), { training: false }, v.state),
    /lowpass '.*': expected input \(batch, time, \.\.\.units\), got shape \[2, 4\]/,
  );
});

t.test('unknown activation or device', async (t) => {
  t.throws(() => spikingActivation('relux' as 'relu'), /spikingActivation '.*': unknown activation 'relux'; known: relu, tanh/);
  const model = nn.sequential([nn.dense(4, { activation: 'relu' })]);
  const vars = model.init(random.key(0), [3]);
  const report = modelEnergy(model, vars, [3]);
  t.throws(() => report.energy('tpu'), /modelEnergy: unknown device 'tpu'; known: cpu, gpu, arm, loihi, spinnaker, spinnaker2/);
});

t.test('loihi energy doubles when timesteps double', async (t) => {
  const model = nn.sequential([
    nn.reshape([-1, 3]),
    nn.timeDistributed(nn.dense(4)),
    spikingActivation('relu', { dt: 0.01, seed: 0 }),
    nn.globalAveragePooling1d(),
  ]);
  const vars = model.init(random.key(0), [null, 3]);
  const frame = [[0.5, 1, 2]];
  const e10 = modelEnergy(model, vars, [null, 3], array([Array(10).fill(frame[0])])).energy('loihi').total;
  const e20 = modelEnergy(model, vars, [null, 3], array([Array(20).fill(frame[0])])).energy('loihi').total;
  t.ok(e10 > 0, `energy at 10 steps: ${e10}`);
  t.ok(Math.abs(e20 / e10 - 2) < 1e-9, `20 steps / 10 steps = ${e20 / e10}`);
});
