/**
 * The generic time loop: a user's own cell gets dt scheduling, statistics and energy without
 * registering anything; bad input gives errors that name the layer.
 */
import t from 'tap';
import { add, array, cast, greater, mul, random, stopGradient, sub, zeros, type NDArray, type Tensor } from '../../core/index.js';
import { dense, fit, globalAveragePooling1d, meanSquaredError, resetLayerNames, sequential, sgd, timeDistributed } from '../../nn/index.js';
import {
  dtScheduler,
  leaky,
  modelEnergy,
  neuronLayer,
  readDt,
  setDt,
  spikeStats,
  synaptic,
  adaptiveLeaky,
  type NeuronCell,
} from '../../spiking/index.js';

resetLayerNames();

/** A user's neuron, as a user would write it: v += x dt / tau_fixed, spike over 1, reset to 0; one parameter. */
const userCell: NeuronCell<{ gain: Tensor }, { v: Tensor }> = {
  kind: 'MyNeuron',
  config: { note: 'a test neuron' },
  spiking: true,
  stateNames: ['v'],
  initParams: (_key, _unitShape, dtype) => ({ gain: zeros([], dtype).add(50) }),
  initialState: (_p, shape, dtype) => ({ v: zeros(shape, dtype) }),
  step(p, x, state, dt) {
    const v = add(state.v, mul(mul(x, p.gain), dt));
    const s = cast(greater(v, 1), v.dtype);
    return [s, { v: mul(v, sub(1, stopGradient(s))) }];
  },
  describe: (p) => ({ gain: p.gain }),
};

t.test("a user's cell gets dt scheduling, spike statistics and energy", async (t) => {
  const model = sequential([
    timeDistributed(dense(6, { name: 'd1' })),
    neuronLayer(userCell, { dt: 0.002, name: 'mine' }),
    globalAveragePooling1d(),
    dense(2, { name: 'd2' }),
  ]);
  const vars = model.init(random.key(0), [30, 4]);
  t.equal(readDt(model, vars.state), Math.fround(0.002), 'readDt finds the user layer');
  const s2 = setDt(model, vars.state, 0.01);
  t.equal(readDt(model, s2), Math.fround(0.01), 'setDt reaches it');
  // The dt changes the spikes: the user's step reads it.
  const x = random.uniform(random.key(1), [5, 30, 4], { minval: 0, maxval: 1 }) as NDArray;
  const st1 = spikeStats(model, vars, x);
  const st2 = spikeStats(model, { ...vars, state: s2 }, x);
  t.equal(st1.steps, 30);
  t.ok(st2.rateHz.mean !== st1.rateHz.mean, `spike rates follow dt (${st1.rateHz.mean.toFixed(2)} vs ${st2.rateHz.mean.toFixed(2)} Hz)`);
  // Counts: a 'count' layer's spikes are 0/1, so the total count equals the sum of spikes.
  const counts = st1.spikeCounts.toTyped() as Float32Array;
  t.ok(
    counts.every((c) => c === 0 || c === 1),
    'spike counts are 0 or 1 per step',
  );
  const rate = counts.reduce((a, c) => a + c, 0) / (5 * 6) / (30 * 0.002);
  t.ok(Math.abs(rate - st1.rateHz.mean) < 1e-3 * (1 + rate), `mean rate ${rate.toFixed(3)} Hz from the counts`);
  const energy = modelEnergy(model, vars, [30, 4]);
  const mine = energy.layers.find((l) => l.name === 'mine')!;
  t.equal(mine.kind, 'MyNeuron');
  t.equal(mine.neurons, 6, 'one neuron update per unit and step');
  t.equal(mine.spiking, true);
  // dtScheduler in fit changes the user layer's dt between batches.
  const sched = dtScheduler((step) => 0.001 * (step + 1));
  const y = random.uniform(random.key(2), [5, 2]) as NDArray;
  const trained = fit(model, vars, x, y, {
    optimizer: sgd(0.01),
    loss: meanSquaredError(),
    epochs: 1,
    batchSize: 5,
    callbacks: [sched],
    verbose: 0,
    key: random.key(3),
  });
  t.equal(readDt(model, trained.state), Math.fround(0.001), 'the scheduled dt persists in the state');
});

t.test('bad input names the layer', async (t) => {
  t.throws(
    () => leaky({ beta: 1.5, name: 'l1' }),
    /leaky 'l1': beta must be within \[0, 1\] \(a learned beta is clipped to \[0, 1\] in the step\), got 1.5/,
  );
  t.throws(() => leaky({ beta: -0.1, name: 'l1b' }), /leaky 'l1b': beta must be within \[0, 1\]/);
  t.throws(() => leaky({ threshold: 0, name: 'l2' }), /leaky 'l2': threshold must be positive, got 0/);
  t.throws(() => synaptic({ threshold: -1, name: 'l3' }), /synaptic 'l3': threshold must be positive, got -1/);
  t.throws(() => leaky({ reset: 'soft' as never, name: 'l4' }), /leaky 'l4': unknown reset mode 'soft'; expected subtract, zero or none/);
  t.throws(() => synaptic({ alpha: 2, name: 'l5' }), /synaptic 'l5': alpha must be within \[0, 1\]/);
  t.throws(
    () => leaky({ beta: 0.9, tau: 0.01, name: 'l6' }),
    /leaky 'l6': give beta \(discrete time\) or tau \(continuous time\), not both/,
  );
  t.throws(() => leaky({ surrogate: 'nope' as never, name: 'l7' }), /leaky 'l7': unknown surrogate 'nope'/);
  t.throws(() => leaky({ returnHidden: ['syn'], name: 'l8' }), /leaky 'l8': returnHidden names 'syn', but the Leaky cell's state has mem/);
  t.throws(() => adaptiveLeaky({ rho: 1.2, name: 'l9' }), /adaptiveLeaky 'l9': rho must be within \[0, 1\]/);
  const l = leaky({ beta: [0.5, 0.6], name: 'l10' });
  t.throws(() => l.init(random.key(0), [5, 3]), /leaky 'l10': beta has 2 values, the layer has 3 units/);
  // A stored state of the wrong shape (another batch size) in stateful mode.
  const st = leaky({ stateful: true, name: 'l11' });
  const vars = st.init(random.key(0), [4, 3]);
  const r = st.apply(vars.params, zeros([2, 4, 3]), { training: false }, vars.state);
  t.throws(
    () => st.apply(vars.params, zeros([5, 4, 3]), { training: false }, r.state),
    /leaky 'l11': stored state 'mem' has shape \[2, 3\], the input needs \[5, 3\] \(reset the state for a new batch size\)/,
  );
  t.throws(
    () => st.apply(vars.params, zeros([4, 3]), { training: false }, vars.state),
    /leaky 'l11': expected input \(batch, time, \.\.\.units\), got shape \[4, 3\]/,
  );
  t.throws(() => leaky({ dt: 0, name: 'l12' }), /leaky 'l12': dt must be a positive finite number, got 0/);
});

t.test('a learned beta outside [0, 1] is clipped in the step; hidden state and output selection', async (t) => {
  const l = leaky({ learnBeta: true, perUnit: true, returnHidden: ['mem'], name: 'lb' });
  const vars = l.init(random.key(0), [3, 2]);
  const params = { beta: array([1.7, -0.4]) };
  const x = array([1, 1, 0, 0, 0, 0], { shape: [1, 3, 2] }).mul(0.5);
  const r = l.apply(params, x, { training: false }, vars.state);
  const mem = Array.from((r.state.hidden as Record<string, Tensor>).mem.toTyped() as Float32Array);
  // beta 1.7 acts as 1 (the membrane holds 0.5), beta -0.4 as 0 (it drops to 0).
  t.same(mem, [0.5, 0.5, 0.5, 0, 0.5, 0]);
  const m = leaky({ beta: 0.5, output: 'mem', name: 'lo' });
  const mv = m.init(random.key(0), [3, 2]);
  t.same(
    Array.from(m.apply(mv.params, x, { training: false }, mv.state).y.toTyped() as Float32Array),
    [0.5, 0.5, 0.25, 0.25, 0.125, 0.125],
    "output: 'mem' returns the membrane",
  );
  t.equal(m.spikes, undefined, 'a membrane output is not spikes');
  t.equal(leaky().spikes, 'count');
});
