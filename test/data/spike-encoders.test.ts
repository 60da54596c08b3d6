/** Latency, delta and rate coding against loops written here from the formulas. */
import t from 'tap';
import { array, mean, random, type Tensor } from '../../core/index.js';
import { deltaEncode, latencyEncode, rateEncode } from '../../data/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>, Number);

t.test('latency: one spike per input at the formula step, brighter earlier', async (t) => {
  const xs = [1, 0.9, 0.5, 0.2, 0.05, 0.01, 0, 1.4, -0.3];
  const steps = 12;
  for (const code of ['log', 'linear'] as const) {
    for (const late of ['last', 'never'] as const) {
      const s = vals(latencyEncode(array(xs, { shape: [1, xs.length] }), steps, { code, late, tau: 3 }));
      xs.forEach((x, i) => {
        const xc = Math.min(Math.max(x, 0), 1);
        let want = code === 'linear' ? Math.floor((1 - xc) * (steps - 1) + 0.5) : Math.floor(3 * Math.log(xc / (xc - 0.01)));
        if (xc <= 0.01 || want > steps - 1) want = late === 'last' ? steps - 1 : -1;
        const got = Array.from({ length: steps }, (_, k) => s[k * xs.length + i]);
        const fired = got.flatMap((v, k) => (v !== 0 ? [k] : []));
        t.same(fired, want < 0 ? [] : [want], `${code}/${late}: x = ${x} fires at ${want < 0 ? 'no step' : `step ${want}`}`);
      });
    }
  }
  t.throws(() => latencyEncode(array([[0.5]]), 0), /latencyEncode: steps must be a positive integer, got 0/);
  t.throws(() => latencyEncode(array([[0.5]]), 5, { code: 'exp' as never }), /latencyEncode: code must be 'log' or 'linear'/);
});

t.test('delta: spikes where the change exceeds the threshold, off spikes and padding', async (t) => {
  const seq = [0, 0.05, 0.3, 0.31, 0.1, 0.5, 0.5, 0.2];
  const x = array(
    seq.map((v) => v + 0.2),
    { shape: [1, seq.length, 1] },
  );
  for (const padding of [false, true]) {
    for (const offSpikes of [false, true]) {
      const got = vals(deltaEncode(x, { threshold: 0.1, padding, offSpikes }));
      const want = seq.map((v, i) => {
        const prev = i === 0 ? (padding ? v + 0.2 : 0) : seq[i - 1] + 0.2;
        const d = v + 0.2 - prev;
        return d > 0.1 ? 1 : offSpikes && d < -0.1 ? -1 : 0;
      });
      t.same(got, want, `padding ${padding}, offSpikes ${offSpikes}`);
    }
  }
});

t.test('rate: 0/1 spikes with probability clip(x, 0, 1) * gain', async (t) => {
  const x = array([0, 0.25, 0.9, 2, -1], { shape: [1, 5] });
  const s = rateEncode(random.key(7), x, 4000, { gain: 0.5 });
  const v = vals(s);
  t.ok(
    v.every((e) => e === 0 || e === 1),
    'spikes are 0 or 1',
  );
  const m = vals(mean(s, 1));
  [0, 0.125, 0.45, 0.5, 0].forEach((p, i) =>
    t.ok(Math.abs(m[i] - p) < 4 * Math.sqrt((p * (1 - p)) / 4000) + 1e-9, `rate ${m[i].toFixed(4)} ~ ${p}`),
  );
  t.same(vals(rateEncode(random.key(7), x, 10)), vals(rateEncode(random.key(7), x, 10)), 'same key, same spikes');
  t.throws(() => rateEncode(random.key(0), x, 3, { gain: 2 }), /rateEncode: gain must be within \[0, 1\]/);
});
