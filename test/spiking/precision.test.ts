/**
 * The spiking layers run in the input's precision and refuse a dt or tau that does not survive
 * their dtype (issue 16): float64 input to spikingActivation against a float64 loop written here
 * from the integrate-and-fire equations (same initial voltages as float32); lowpass / alpha with
 * dtype 'float64' against float64 recurrences and closed-form step responses to 1e-15 / 1e-13;
 * dt of 1e-50 or 1e39 (0 and Infinity in float32), tau = Infinity, setDt to such a dt, and
 * poissonEncode of intensities outside [0, 1] are errors naming the value.
 */
import t from 'tap';
import { broadcastTo, fromTyped, jit, random, type NDArray, type Tensor } from '../../core/index.js';
import { poissonEncode } from '../../data/index.js';
import { resetLayerNames, sequential } from '../../nn/index.js';
import { alpha, lowpass, setDt, spikingActivation } from '../../spiking/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>, Number);
const T = 40;
const UNITS = 3;

/** Rates (batch 1, time T, UNITS) in float64, varied per step and unit. */
function rates(): NDArray {
  const r = new Float64Array(T * UNITS);
  for (let s = 0; s < T; s++) for (let u = 0; u < UNITS; u++) r[s * UNITS + u] = 13.3 + 31.7 * Math.sin(0.37 * s + u) ** 2 + u * 0.1;
  return fromTyped(r, [1, T, UNITS], 'float64');
}

/** v += r dt; n = floor(v); v -= n; out = n / dt, in float64, from the given initial voltages. */
function integrateAndFire(r: number[], v0: number[], dt: number): number[] {
  const v = v0.slice();
  const out = new Array<number>(r.length);
  for (let s = 0; s < T; s++) {
    for (let u = 0; u < UNITS; u++) {
      const next = v[u] + r[s * UNITS + u] * dt;
      const n = Math.floor(next);
      v[u] = next - n;
      out[s * UNITS + u] = n / dt;
    }
  }
  return out;
}

t.test('spikingActivation on float64 input runs in float64, from the same initial voltages as float32', async (t) => {
  resetLayerNames();
  const x = rates();
  const v0 = vals(random.uniform(random.key(7), [1, UNITS])); // the layer draws these from its seed
  for (const [dtype, dtUsed] of [
    [undefined, Math.fround(0.01)],
    ['float64', 0.01],
  ] as const) {
    const layer = spikingActivation('relu', { dt: 0.01, seed: 7, dtype });
    const { params, state } = layer.init(random.key(0), [T, UNITS]);
    const y = layer.apply(params, x, { training: false }, state).y;
    t.equal(y.dtype, 'float64', `output is float64 (state dtype ${dtype ?? 'float32'})`);
    t.same(vals(y), integrateAndFire(vals(x), v0, dtUsed), `equals the float64 loop with dt = ${dtUsed}`);
    const jitted = jit((xx: Tensor) => layer.apply(params, xx, { training: false }, state).y)(x) as Tensor;
    t.same(vals(jitted), vals(y), 'and so does the jitted layer');
  }
  const stateful = spikingActivation('relu', { dt: 0.01, seed: 7, stateful: true });
  const s0 = stateful.init(random.key(0), [T, UNITS]);
  const first = stateful.apply(s0.params, x, { training: false }, s0.state);
  const second = stateful.apply(s0.params, x, { training: false }, first.state);
  t.equal(second.y.dtype, 'float64', 'a stateful layer carries its float64 voltage into the next call');
});

t.test("lowpass and alpha with dtype 'float64' use dt and tau exactly", async (t) => {
  resetLayerNames();
  const dt = 0.001;
  const tau = 0.1;
  const x = rates();
  const r = vals(x);
  const a = Math.exp(-dt / tau);
  const want = new Array<number>(r.length);
  const y = new Array<number>(UNITS).fill(0);
  for (let s = 0; s < T; s++) for (let u = 0; u < UNITS; u++) want[s * UNITS + u] = y[u] = (1 - a) * r[s * UNITS + u] + a * y[u];
  for (const [dtype, tol] of [
    ['float64', 1e-15],
    [undefined, 1e-6],
  ] as const) {
    const layer = lowpass(tau, { dt, dtype });
    const init = layer.init(random.key(0), [T, UNITS]);
    const got = vals(layer.apply(init.params, x, { training: false }, init.state).y);
    const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i]) / Math.abs(want[i])));
    t.ok(worst <= tol, `lowpass, state dtype ${dtype ?? 'float32'}: worst relative error ${worst} <= ${tol}`);
    if (dtype === undefined) t.ok(worst > 1e-9, `the float32 dt and tau are visible in float64 output (${worst})`);
  }
  const step = broadcastTo(fromTyped(Float64Array.of(1), [1, 1, 1], 'float64'), [1, T, 1]);
  const layer = alpha(tau, { dt, dtype: 'float64' });
  const init = layer.init(random.key(0), [T, 1]);
  const got = vals(layer.apply(init.params, step, { training: false }, init.state).y);
  const worst = Math.max(...got.map((g, k) => Math.abs(g - (1 - Math.exp(-((k + 1) * dt) / tau) * (1 + ((k + 1) * dt) / tau)))));
  t.ok(worst <= 1e-13, `alpha step response in float64 within 1e-13 of the closed form (${worst})`);
});

t.test("dt and tau must survive the layer's dtype; poissonEncode refuses intensities outside [0, 1]", async (t) => {
  resetLayerNames();
  t.throws(
    () => spikingActivation('relu', { dt: 1e-50 }),
    /spikingActivation 'spiking_activation.*': dt = 1e-50 is 0 in float32; dt must stay positive and finite/,
  );
  t.throws(() => spikingActivation('relu', { dt: 1e39 }), /dt = 1e\+39 is Infinity in float32/);
  t.doesNotThrow(() => spikingActivation('relu', { dt: 1e-50, dtype: 'float64' }), 'float64 holds 1e-50');
  t.throws(() => lowpass(0.1, { dt: 1e-50 }), /lowpass 'lowpass.*': dt = 1e-50 is 0 in float32/);
  t.throws(() => alpha(0.1, { dt: 1e39 }), /alpha 'alpha.*': dt = 1e\+39 is Infinity in float32/);
  t.throws(
    () => lowpass(Infinity),
    /lowpass 'lowpass.*': tau must be finite \(an infinite tau freezes the output at its initial level\), got Infinity/,
  );
  t.throws(() => alpha(1e39), /alpha 'alpha.*': tau = 1e\+39 is Infinity in float32/);
  t.throws(() => spikingActivation('relu', { dtype: 'float16' as never }), /dtype must be 'float32' or 'float64', got float16/);
  const model = sequential([spikingActivation('relu', { dt: 0.01, name: 'sa' })]);
  const { state } = model.init(random.key(0), [T, UNITS]);
  t.throws(() => setDt(model, state, 1e-50), /setDt \(layer 'sa'\): dt = 1e-50 is 0 in float32/);
  const x = fromTyped(Float32Array.of(0.2, 2, 0.5), [3], 'float32');
  t.throws(
    () => poissonEncode(random.key(0), x, 10),
    /poissonEncode: x must hold intensities in \[0, 1\]; element 1 \(flat\) is 2, which would ask for 200 Hz \(above the 100 Hz maxRate; at most 1\/dt = 1000 Hz is possible\)/,
  );
  t.throws(
    () => poissonEncode(random.key(0), fromTyped(Float32Array.of(NaN), [1], 'float32'), 10),
    /element 0 \(flat\) is NaN, which would ask for no rate at all/,
  );
  t.throws(
    () => poissonEncode(random.key(0), fromTyped(Float32Array.of(-0.5), [1], 'float32'), 10),
    /is -0.5, which would ask for -50 Hz \(below 0\)/,
  );
});
