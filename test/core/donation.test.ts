/**
 * Buffer donation (jit's donateArgnums / donating, fit's reuse of its own step outputs): donated
 * buffers are reused for outputs, nothing else ever is; results stay what a program without
 * donation computes; a training loop never touches the caller's variables or anything a callback
 * read.
 */
import t from 'tap';
import { fromTyped, jit, random, sqrt, type NDArray, type Tensor, type Tree } from '../../core/index.js';
import * as nn from '../../nn/index.js';

const N = 4096;
const filled = (f: (i: number) => number): NDArray =>
  fromTyped(
    Float32Array.from({ length: N }, (_, i) => f(i)),
    [N],
  );
// An Adam-like update: several intermediates the size of the inputs, outputs the same size.
const update = (w: Tensor, m: Tensor, g: Tensor): [Tensor, Tensor] => {
  const m2 = m.mul(0.9).add(g.mul(0.1));
  return [w.sub(m2.div(sqrt(m2.mul(m2)).add(1))), m2];
};
const reference = (w: number, m: number, g: number): [number, number] => {
  const f = Math.fround;
  const m2 = f(f(m * f(0.9)) + f(g * f(0.1)));
  return [f(w - f(m2 / f(f(Math.sqrt(f(m2 * m2))) + 1))), m2];
};

t.test('a donated argument is reused for an output; results equal the undonated program', async (t) => {
  const step = jit(update);
  // Produced by a compiled program and kept in the kernels' arena, so their buffers come from the
  // pool and may be recycled.
  const start = jit((x: Tensor) => [x.mul(1), x.mul(0)] as const).donating([], { keepInBackend: true })(filled((i) => (i % 7) / 7 - 0.5));
  let [w, m] = start as unknown as [NDArray, NDArray];
  const g = filled((i) => ((i * 3) % 11) / 11 - 0.5);
  const wValues = Float32Array.from(w.toTyped() as Float32Array);
  const mValues = Float32Array.from(m.toTyped() as Float32Array);
  const plain = step(w, m, g) as unknown as [NDArray, NDArray];
  // Undonated: inputs untouched.
  t.same(Array.from(w.toTyped()), Array.from(wValues), 'inputs intact without donation');
  // Taken before the donation: a donated array's buffer is no longer readable through it.
  const donatedW = w.data;
  const donatedM = m.data;
  const out = step.donating([0, 1], { keepInBackend: true })(w, m, g) as unknown as [NDArray, NDArray];
  t.same(Array.from(out[0].toTyped()), Array.from(plain[0].toTyped()), 'same w with donation');
  t.same(Array.from(out[1].toTyped()), Array.from(plain[1].toTyped()), 'same m with donation');
  for (let i = 0; i < N; i += 97) {
    const [rw, rm] = reference(wValues[i], mValues[i], g.toTyped()[i] as number);
    t.equal(out[0].toTyped()[i], rw, `w[${i}]`);
    t.equal(out[1].toTyped()[i], rm, `m[${i}]`);
  }
  // The donated buffers go back after their last read (the fused update reads them while it
  // writes its outputs), so the next call's outputs land in them.
  const again = step.donating([0, 1], { keepInBackend: true })(out[0], out[1], g) as unknown as [NDArray, NDArray];
  t.ok(
    [again[0].data, again[1].data].some((d) => d === donatedW || d === donatedM),
    'the next outputs were written into the donated buffers',
  );
  t.same(
    Array.from(again[0].toTyped()),
    Array.from((step(plain[0], plain[1], g) as unknown as NDArray[])[0].toTyped()),
    'and hold the right values',
  );
  // A loop of donating steps gives the same trajectory as plain steps.
  [w, m] = [again[0], again[1]];
  let [pw, pm] = step(plain[0], plain[1], g) as unknown as [NDArray, NDArray];
  for (let k = 0; k < 20; k++) {
    [w, m] = step.donating([0, 1], { keepInBackend: true })(w, m, g) as unknown as [NDArray, NDArray];
    [pw, pm] = step(pw, pm, g) as unknown as [NDArray, NDArray];
  }
  t.same(Array.from(w.toTyped()), Array.from(pw.toTyped()), 'trajectories agree after 20 donated steps');
  t.same(Array.from(m.toTyped()), Array.from(pm.toTyped()));
});

t.test('a donated argument returned unchanged, or also passed undonated, is never recycled', async (t) => {
  const [x] = jit((v: Tensor) => [v.mul(2)] as const).donating([], { keepInBackend: true })(filled((i) => i)) as unknown as [NDArray];
  const copy = Float32Array.from(x.toTyped() as Float32Array);
  const passthrough = jit((a: Tensor, b: Tensor) => [a, b.add(1)] as const);
  const [same] = passthrough.donating([0], { keepInBackend: true })(x, x) as unknown as [NDArray, NDArray];
  t.equal(same.data, x.data, 'passthrough output is the input buffer');
  // Another program's outputs must not land in x's buffer.
  const other = jit((v: Tensor) => v.mul(3).add(1));
  for (let k = 0; k < 5; k++) other(filled((i) => i * k));
  t.same(Array.from(x.toTyped()), Array.from(copy), 'x intact');
  const both = jit((a: Tensor, b: Tensor) => a.mul(b).add(1));
  both.donating([0], { keepInBackend: true })(x, x);
  for (let k = 0; k < 5; k++) other(filled((i) => -i * k));
  t.same(Array.from(x.toTyped()), Array.from(copy), 'x intact when also passed undonated');
});

t.test('jit rejects a bad donateArgnums', async (t) => {
  t.throws(() => jit((a: Tensor) => a, { donateArgnums: [-1] }), /jit: donateArgnums must hold argument positions/);
});

t.test('fit: the caller variables and anything a callback read stay intact', async (t) => {
  const model = nn.sequential([nn.dense(64, { activation: 'relu' }), nn.dense(3)]);
  const init = model.init(random.key(0), [20]);
  const leaves = (tree: Tree): NDArray[] => Object.values(tree as Record<string, Record<string, NDArray>>).flatMap((l) => Object.values(l));
  const snapshot = (tree: Tree): number[][] => leaves(tree).map((a) => Array.from(a.toTyped()));
  const initCopy = snapshot(init.params);
  const x = fromTyped(
    Float32Array.from({ length: 64 * 20 }, (_, i) => Math.sin(i)),
    [64, 20],
  );
  const y = fromTyped(
    Int32Array.from({ length: 64 }, (_, i) => i % 3),
    [64],
    'int32',
  );
  const seen: { params: Tree; copy: number[][] }[] = [];
  const opts = {
    optimizer: nn.adam(1e-2),
    loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
    epochs: 3,
    batchSize: 8,
    verbose: 0 as const,
    key: random.key(1),
  };
  const withCallback = nn.fit(model, init, x, y, {
    ...opts,
    callbacks: [
      {
        onBatchEnd: (b, _logs, ctl) => {
          if (b % 3 === 0) seen.push({ params: ctl.params, copy: snapshot(ctl.params) });
        },
      },
    ],
  });
  const without = nn.fit(model, init, x, y, opts);
  t.same(snapshot(init.params), initCopy, 'initial parameters untouched');
  t.ok(seen.length >= 6, 'the callback kept parameters from several steps');
  for (const s of seen) t.same(snapshot(s.params), s.copy, 'parameters a callback kept are unchanged by later steps');
  t.same(snapshot(withCallback.params), snapshot(without.params), 'the same training with and without the callback');
  t.same(withCallback.history.history.loss, without.history.history.loss);
});

t.test('a fused update writes its results over donated inputs read for the last time (in place), exactly', async (t) => {
  // Shapes whose rows are whole vectors (in place allowed) and one whose rows are not (a row's
  // last vector would land on the next row before it is read: never in place).
  for (const shape of [[4096], [64, 64], [63, 65]]) {
    const size = shape.reduce((a, c) => a * c, 1);
    const mk = (f: (i: number) => number): NDArray =>
      fromTyped(
        Float32Array.from({ length: size }, (_, i) => f(i)),
        shape,
      );
    const keep = jit((x: Tensor) => x.mul(1)).donating([], { keepInBackend: true });
    let w = keep(mk((i) => (i % 7) / 7 - 0.5)) as NDArray;
    let m = keep(mk((i) => (i % 5) / 50)) as NDArray;
    const g = mk((i) => ((i * 3) % 11) / 11 - 0.5);
    let [pw, pm] = [
      fromTyped(Float32Array.from(w.toTyped() as Float32Array), shape),
      fromTyped(Float32Array.from(m.toTyped() as Float32Array), shape),
    ];
    const step = jit(update);
    let inPlace = 0;
    for (let k = 0; k < 5; k++) {
      const before = [w.data, m.data];
      [w, m] = step.donating([0, 1], { keepInBackend: true })(w, m, g) as unknown as [NDArray, NDArray];
      if (before.includes(w.data) || before.includes(m.data)) inPlace++;
      [pw, pm] = step(pw, pm, g) as unknown as [NDArray, NDArray];
    }
    t.same(Array.from(w.toTyped()), Array.from(pw.toTyped()), `[${shape}] w equals the undonated trajectory`);
    t.same(Array.from(m.toTyped()), Array.from(pm.toTyped()), `[${shape}] m equals the undonated trajectory`);
    if (shape[shape.length - 1] % 4 === 0) t.equal(inPlace, 5, `[${shape}] every step wrote over its donated inputs`);
    else t.equal(inPlace, 0, `[${shape}] rows of 65: never in place`);
  }
});
