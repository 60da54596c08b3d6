/**
 * `Layer.with` is typed by the layer's options: test/nn/fixtures/layer-with-types.ts is compiled
 * under strict with the TypeScript compiler API (no diagnostics: the valid calls compile and every
 * `@ts-expect-error` line fails), then compiled again with the directives removed, where each of
 * those lines must fail for its option (an unknown property or a type mismatch) and no other line
 * may. At run time, `with` returns a layer with the new option applied (shapes, configs and outputs
 * computed by hand) and leaves the original as it was.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';
import { fromTyped, random, sum, type NDArray, type Tensor } from '../../core/index.js';
import {
  activation,
  batchNormalization,
  conv2d,
  dense,
  dropout,
  globalAveragePooling2d,
  lambda,
  maxPooling2d,
  resetLayerNames,
  timeDistributed,
} from '../../nn/index.js';
import { leaky, lowpass, spikingActivation } from '../../spiking/index.js';
import { strictUserProgram } from '../fixtures/strict-compiler.js';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'layer-with-types.ts');
const options = strictUserProgram;

/**
 * Diagnostics per file (line, 0-based -> codes) of one program over the fixture and `variants`:
 * texts served as if they sat beside the fixture (same imports), checked with one type checker.
 */
function diagnostics(variants: Record<string, string>): Map<string, Map<number, number[]>> {
  const host = ts.createCompilerHost(options);
  const virtual = new Map(Object.entries(variants).map(([name, text]) => [join(dirname(fixture), name), text]));
  const read = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, onError, fresh) => {
    const text = virtual.get(name);
    return text === undefined ? read(name, lang, onError, fresh) : ts.createSourceFile(name, text, lang);
  };
  const exists = host.fileExists.bind(host);
  host.fileExists = (name) => virtual.has(name) || exists(name);
  const files = [fixture, ...virtual.keys()];
  const program = ts.createProgram(files, options, host);
  const out = new Map(files.map((f) => [f, new Map<number, number[]>()]));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const byLine = d.file && out.get(d.file.fileName);
    if (!byLine || d.start === undefined) continue;
    const line = d.file!.getLineAndCharacterOfPosition(d.start).line;
    byLine.set(line, [...(byLine.get(line) ?? []), d.code]);
  }
  return out;
}

t.test('Layer.with is typed by the layer options', async (t) => {
  const text = readFileSync(fixture, 'utf8');
  const lines = text.split('\n');
  const directives = lines.flatMap((l, i) => (/^\s*\/\/ @ts-expect-error/.test(l) ? [i] : []));
  t.ok(directives.length >= 24, `${directives.length} expected errors in the fixture`);

  // The copy without the directives: each marked line must fail, and only for its option: an
  // unknown property (2353, 2561 with a suggestion) or a value of the wrong type (2322).
  const stripped = lines.map((l, i) => (directives.includes(i) ? '//' : l)).join('\n');
  const all = diagnostics({ 'layer-with-types.stripped.ts': stripped });
  const [asIs, byLine] = [...all.values()];
  const report = (m: Map<number, number[]>): string[] =>
    [...m].map(([l, codes]) => `${l + 1}: TS${codes.join(', TS')}  ${lines[l].trim()}`);
  t.same(report(asIs), [], 'the fixture compiles: valid calls type-check and every @ts-expect-error line fails');
  const expectedLines = directives.map((i) => i + 1);
  t.same(
    [...byLine.keys()].filter((l) => !expectedLines.includes(l)).map((l) => `${l + 1}: ${lines[l].trim()}`),
    [],
    'no errors outside the marked lines',
  );
  for (const l of expectedLines) {
    const codes = byLine.get(l) ?? [];
    t.ok(
      codes.length > 0 && codes.every((c) => c === 2353 || c === 2561 || c === 2322),
      `line ${l + 1} fails (TS${codes.join(', TS') || ' none'}): ${lines[l].trim()}`,
    );
  }
});

const f64 = (v: readonly number[], shape: readonly number[]): NDArray => fromTyped(Float64Array.from(v), shape, 'float64');
const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);
const key = random.key(0);
const inference = { training: false };

t.test('Layer.with applies the new options and keeps the name', async (t) => {
  resetLayerNames();
  const d = dense(3, { name: 'd' });
  const d5 = d.with({ units: 5 });
  t.equal(d5.name, 'd');
  t.same(d5.init(key, [4]).outputShape, [5]);
  t.same(d.init(key, [4]).outputShape, [3], 'the original is unchanged');
  t.same(d5.init(key, [4]).params.kernel.shape, [4, 5]);

  // relu after the change: x @ K + b with K and b set by hand.
  const relu = d.with({ activation: 'relu', useBias: false });
  t.equal(relu.config.activation, 'relu');
  t.equal(relu.config.useBias, false);
  const x = f64([1, -2], [1, 2]);
  const K = f64([1, 0, -1, 0.5, 2, 3], [2, 3]);
  // x K = [1*1 + -2*0.5, 1*0 + -2*2, 1*-1 + -2*3] = [0, -4, -7] -> relu [0, 0, 0]; with bias zeros before.
  t.same(vals(relu.apply({ kernel: K }, x, inference, {}).y), [0, 0, 0]);
  t.same(vals(d.apply({ kernel: K, bias: f64([0, 0, 0], [3]) }, x, inference, {}).y), [0, -4, -7]);

  // activation's activity regularizer now comes with the copy: sum(y) / batch.
  const act = activation('relu').with({ activityRegularizer: (y) => sum(y) });
  const r = act.apply({}, f64([1, -1, 3, 2], [2, 2]), inference, {});
  t.same(r.losses.map(vals), [[(1 + 3 + 2) / 2]]);

  t.equal(dropout(0.5).with({ rate: 0.25 }).config.rate, 0.25);
  t.equal(batchNormalization().with({ momentum: 0.5 }).config.momentum, 0.5);

  // Pooling: a 3x3 window at stride 1 on 6x6 gives 4x4; global pools read channels first.
  const pool = maxPooling2d(2).with({ poolSize: 3, strides: 1 });
  t.same(pool.init(key, [6, 6, 1]).outputShape, [4, 4, 1]);
  t.same(pool.config.poolSize, [3, 3]);
  const pooled = pool.apply(
    {},
    f64(
      Array.from({ length: 36 }, (_, i) => i),
      [1, 6, 6, 1],
    ),
    inference,
    {},
  ).y;
  // The max of each 3x3 window of 0..35 (row-major) is its bottom-right element: 14 + 6i + j.
  t.same(
    vals(pooled),
    Array.from({ length: 16 }, (_, k) => 14 + 6 * Math.floor(k / 4) + (k % 4)),
  );
  t.same(globalAveragePooling2d().with({ dataFormat: 'channelsFirst' }).init(key, [3, 4, 5]).outputShape, [3]);

  // conv2d: 2 filters, 'same' padding keeps 5x5.
  t.same(conv2d(4, 3).with({ filters: 2, padding: 'same' }).init(key, [5, 5, 1]).outputShape, [5, 5, 2]);
  t.same(
    lambda((v) => v)
      .with({ outputShape: (s) => [s[0]] })
      .init(key, [2, 3]).outputShape,
    [2],
  );

  t.same(timeDistributed(dense(10)).with({ units: 4 }).init(key, [7, 3]).outputShape, [7, 4]);
});

t.test('spiking layers: with changes options the cell and the layer read', async (t) => {
  const s = spikingActivation('relu', { name: 's', dt: 0.01 });
  const last = s.with({ returnSequences: false });
  t.equal(last.name, 's');
  t.same(last.init(key, [10, 3]).outputShape, [3]);
  t.same(s.init(key, [10, 3]).outputShape, [10, 3]);
  t.equal(last.config.dt, 0.01, 'options not named keep their values');

  const lp = lowpass(0.1).with({ returnSequences: false, initialLevel: 0.5 });
  t.same(lp.init(key, [4, 2]).outputShape, [2]);
  t.same(vals(lp.init(key, [4, 2]).params.initialLevel), [0.5, 0.5]);

  // leaky with beta 0.5, threshold 10 (no spike): membrane after inputs 1, 1, 1 is 1, 1.5, 1.75.
  const lif = leaky({ beta: 0.9 }).with({ beta: 0.5, threshold: 10, output: 'mem' });
  const { params, state } = lif.init(key, [3, 1]);
  const y = lif.apply(params, f64([1, 1, 1], [1, 3, 1]), inference, state).y;
  t.same(vals(y), [1, 1.5, 1.75]);
});
