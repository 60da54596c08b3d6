// The exported property helpers: they pass for real spiking layers and catch broken ones.
import t from 'tap';
import fc from 'fast-check';
import { mul, type Tensor } from '../../core/index.js';
import { spikingActivation } from '../../spiking/index.js';
import { checkRate, gradientIsStraightThrough, rateMatchesActivation, type SpikingLayerFactory } from '../../spiking/testing.js';

t.test('rate properties hold for relu, tanh, sigmoid and a user function', async (t) => {
  for (const act of ['relu', 'tanh', 'sigmoid'] as const) {
    t.doesNotThrow(() => fc.assert(rateMatchesActivation(act), { numRuns: 20 }), act);
  }
  const square = (x: Tensor): Tensor => mul(x, x);
  t.doesNotThrow(() => fc.assert(rateMatchesActivation(square, { inputRange: [-3, 3] }), { numRuns: 20 }), 'x^2');
});

t.test('checkRate reports rates, expectations and tolerances', async (t) => {
  const r = checkRate('relu', [2, -1, 7.5], 0.01, { steps: 200 });
  t.same(r.expected, [2, 0, 7.5]);
  t.equal(r.rate[1], 0, 'a negative relu input never spikes');
  t.ok(Math.abs(r.rate[2] - 7.5) <= 1 / (200 * 0.01) + 1e-3, `rate ${r.rate[2]} vs 7.5`);
  t.ok(r.ok);
});

t.test('the properties fail for a layer whose rate is wrong', async (t) => {
  // A "spiking" layer that fires at twice the rate: the property must find a counterexample.
  const doubled: SpikingLayerFactory = (act, opts) => {
    const inner = spikingActivation(act, opts);
    return {
      ...inner,
      apply: (p, x, ctx, s) => {
        const r = inner.apply(p, x, ctx, s);
        return { ...r, y: mul(r.y, 2) };
      },
    };
  };
  const res = fc.check(rateMatchesActivation('relu', { layer: doubled, inputRange: [1, 5] }), { numRuns: 20 });
  t.ok(res.failed, 'rate property catches a doubled rate');
  const grad = fc.check(gradientIsStraightThrough('tanh', { layer: doubled }), { numRuns: 10 });
  t.ok(grad.failed, 'gradient property catches a doubled gradient');
});

t.test('gradient property holds for both spikingAwareTraining settings', async (t) => {
  for (const act of ['relu', 'tanh', 'sigmoid'] as const)
    t.doesNotThrow(() => fc.assert(gradientIsStraightThrough(act), { numRuns: 15 }), act);
});
