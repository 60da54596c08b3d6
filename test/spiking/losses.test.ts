/** Spiking losses against float64 formulas written here. */
import t from 'tap';
import { array } from '../../core/index.js';
import { membraneCrossEntropy, spikeCountCrossEntropy, spikeCountMse } from '../../spiking/index.js';

const B = 2,
  T = 3,
  C = 4;
const data = Array.from({ length: B * T * C }, (_, i) => ((i * 7) % 5) * 0.5 - 0.3);
const y = array(data, { shape: [B, T, C], dtype: 'float64' });
const labels = array([2, 0], { dtype: 'int32' });
const at = (b: number, s: number, c: number): number => data[(b * T + s) * C + c];
const ce = (logits: number[], label: number): number => {
  const m = Math.max(...logits);
  return -(logits[label] - m - Math.log(logits.reduce((a, l) => a + Math.exp(l - m), 0)));
};

t.test('count cross-entropy, count MSE and membrane cross-entropy', async (t) => {
  const lab = [2, 0];
  const counts = (b: number): number[] => Array.from({ length: C }, (_, c) => at(b, 0, c) + at(b, 1, c) + at(b, 2, c));
  const wantCe = (ce(counts(0), 2) + ce(counts(1), 0)) / 2;
  t.ok(Math.abs(spikeCountCrossEntropy()(labels, y).item() - wantCe) < 1e-12, 'spikeCountCrossEntropy');
  let se = 0;
  for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) se += (counts(b)[c] - (c === lab[b] ? 0.7 : 0.1) * T) ** 2;
  t.ok(Math.abs(spikeCountMse({ correctRate: 0.7, incorrectRate: 0.1 })(labels, y).item() - se / (B * C)) < 1e-12, 'spikeCountMse');
  const maxes = (b: number): number[] => Array.from({ length: C }, (_, c) => Math.max(at(b, 0, c), at(b, 1, c), at(b, 2, c)));
  const lasts = (b: number): number[] => Array.from({ length: C }, (_, c) => at(b, 2, c));
  t.ok(Math.abs(membraneCrossEntropy()(labels, y).item() - (ce(maxes(0), 2) + ce(maxes(1), 0)) / 2) < 1e-12, 'membraneCrossEntropy max');
  t.ok(
    Math.abs(membraneCrossEntropy({ reduce: 'last' })(labels, y).item() - (ce(lasts(0), 2) + ce(lasts(1), 0)) / 2) < 1e-12,
    'membraneCrossEntropy last',
  );
  t.throws(
    () => spikeCountCrossEntropy()(labels, array([[1, 2]])),
    /spikeCountCrossEntropy: expected outputs \(batch, time, classes\), got shape \[1, 2\]/,
  );
  t.throws(() => spikeCountMse({ correctRate: 3 }), /spikeCountMse: correctRate must be within \[0, 1\]/);
});
