/**
 * The training loop against a hand-written one: fit's params and losses equal a manual
 * valueAndGrad + update + applyUpdates loop over the same batches; evaluate equals a hand
 * computation from predict's outputs; key determinism; callbacks (state changes, early stopping,
 * terminateOnNaN); the progress line; input errors.
 */
import t from 'tap';
import {
  add,
  array,
  gatherRows,
  random,
  scalar,
  sqrt,
  square,
  sum,
  valueAndGrad,
  type NDArray,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import {
  accuracy,
  adam,
  applyUpdates,
  dense,
  earlyStopping,
  evaluate,
  fit,
  meanSquaredError,
  predict,
  progressLine,
  resetLayerNames,
  sequential,
  sgd,
  sparseCategoricalCrossentropy,
  terminateOnNaN,
  type Callback,
  type Layer,
  type Logs,
  type TrainingControl,
} from '../../nn/index.js';

const vals = (x: Tensor): number[] => Array.from(x.toTyped() as ArrayLike<number>);
const leaves = (p: Tree): Record<string, number[]> => {
  const out: Record<string, number[]> = {};
  for (const [layer, ps] of Object.entries(p as Record<string, Record<string, Tensor>>))
    for (const [k, v] of Object.entries(ps)) out[`${layer}.${k}`] = vals(v);
  return out;
};
const maxDiff = (a: Record<string, number[]>, b: Record<string, number[]>): number => {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.join() !== kb.join()) return Infinity;
  return Math.max(...ka.map((k) => (a[k].length !== b[k].length ? Infinity : Math.max(0, ...a[k].map((x, i) => Math.abs(x - b[k][i]))))));
};
const silent = { verbose: 0 as const };

/** A 3-class problem: x ~ N(0, 1) in 4-d, labels from randint. */
function classificationData(seed: number, n: number): { x: NDArray; y: NDArray } {
  const [kx, ky] = random.split(random.key(seed));
  return { x: random.normal(kx, [n, 4]) as NDArray, y: random.randint(ky, [n], 0, 3) as NDArray };
}

function mlp(): Layer {
  return sequential([
    dense(8, { activation: 'tanh', name: 'h', kernelRegularizer: (k) => sum(square(k)).mul(1e-3) }),
    dense(3, { name: 'out', activityRegularizer: (v) => sum(square(v)).mul(1e-2) }),
  ]);
}

const loss = sparseCategoricalCrossentropy({ fromLogits: true });

t.test('fit equals a hand-written loop over the same batches (shuffle false)', async (t) => {
  resetLayerNames();
  const n = 50;
  const batchSize = 16; // 4 batches, the last one of 2 examples
  const epochs = 3;
  const { x, y } = classificationData(1, n);
  const model = mlp();
  const init = model.init(random.key(2), [4]);
  const opt = adam(0.01);
  const batchLosses: number[] = [];
  const res = fit(model, init, x, y, {
    optimizer: opt,
    loss,
    metrics: [accuracy],
    epochs,
    batchSize,
    shuffle: false,
    key: random.key(3),
    ...silent,
    callbacks: [{ onBatchEnd: (_b, logs) => batchLosses.push(logs.batchLoss) }],
  });

  // The hand loop: loss + activity penalties + weight penalties, valueAndGrad, update, apply.
  let params: Tree = init.params;
  let optState = opt.init(params);
  const manualLosses: number[] = [];
  const manualEpochLoss: number[] = [];
  for (let e = 0; e < epochs; e++) {
    let weighted = 0;
    for (let start = 0; start < n; start += batchSize) {
      const idx = Array.from({ length: Math.min(n, start + batchSize) - start }, (_, i) => start + i);
      const xb = gatherRows(x, idx);
      const yb = gatherRows(y, idx);
      const lossOf = (p: Tree): Tensor => {
        const r = model.apply(p, xb, { training: true }, init.state);
        let l = loss(yb, r.y);
        for (const pen of r.losses) l = add(l, pen);
        for (const pen of model.paramLosses!(p)) l = add(l, pen);
        return l;
      };
      const [value, grads] = valueAndGrad(lossOf)(params);
      const [updates, nextState] = opt.update(grads, optState, params);
      optState = nextState;
      params = applyUpdates(params, updates);
      const lv = (value as Tensor).item();
      manualLosses.push(lv);
      weighted += lv * idx.length;
    }
    manualEpochLoss.push(weighted / n);
  }
  t.equal(batchLosses.length, 12, '4 batches x 3 epochs');
  const lossErr = Math.max(...batchLosses.map((l, i) => Math.abs(l - manualLosses[i])));
  t.ok(lossErr < 1e-6, `per-batch losses equal the hand loop's (max err ${lossErr})`);
  t.same(res.history.epochs, [0, 1, 2]);
  const histErr = Math.max(...res.history.history.loss.map((l, i) => Math.abs(l - manualEpochLoss[i])));
  t.ok(histErr < 1e-6, `history loss = example-weighted mean of the hand loop's batch losses (max err ${histErr})`);
  const pErr = maxDiff(leaves(res.params), leaves(params));
  t.ok(pErr < 1e-6, `final params equal the hand loop's (max err ${pErr})`);
  // Sanity: training moved the params, and the penalties were part of the loss.
  t.ok(maxDiff(leaves(res.params), leaves(init.params)) > 1e-3, 'params changed');
  const r0 = model.apply(
    init.params,
    gatherRows(
      x,
      Array.from({ length: 16 }, (_, i) => i),
    ),
    { training: true },
    init.state,
  );
  const dataOnly = loss(
    gatherRows(
      y,
      Array.from({ length: 16 }, (_, i) => i),
    ),
    r0.y,
  ).item();
  t.ok(batchLosses[0] - dataOnly > 1e-4, `first batch loss ${batchLosses[0]} includes the penalties (data loss ${dataOnly})`);
  // Optimizer state comes back too: adam's count is the number of steps.
  const os = res.optState as [{ count: Tensor }, unknown];
  t.equal(os[0].count.item(), 12, 'optimizer step count = 12');
  // The metric in history is the example-weighted accuracy of each batch's pre-update predictions.
  t.ok(
    res.history.history.accuracy.every((a) => a >= 0 && a <= 1),
    'accuracy in [0, 1]',
  );

  // Resuming from the returned variables continues the same trajectory: 1 + 2 epochs = 3 epochs.
  const first = fit(model, init, x, y, { optimizer: opt, loss, epochs: 1, batchSize, shuffle: false, ...silent });
  const rest = fit(model, first, x, y, { optimizer: opt, loss, epochs: 2, batchSize, shuffle: false, ...silent });
  t.ok(maxDiff(leaves(rest.params), leaves(res.params)) < 1e-6, 'fit(1 epoch) then fit(2 epochs) with optState = fit(3 epochs)');
});

t.test('evaluate and predict agree with hand computations', async (t) => {
  resetLayerNames();
  const n = 45;
  const { x, y } = classificationData(5, n);
  const model = sequential([dense(6, { activation: 'relu', name: 'a' }), dense(3, { name: 'b' })]);
  const vars = model.init(random.key(6), [4]);
  const logits = predict(model, vars, x, { batchSize: 8 });
  t.same(logits.shape, [n, 3]);
  // predict = the model applied to the whole set at once (batching must not change anything).
  const whole = model.apply(vars.params, x, { training: false }, vars.state).y;
  t.ok(Math.max(...vals(logits).map((v, i) => Math.abs(v - vals(whole)[i]))) < 1e-6, 'predict equals one full-batch apply');
  // Hand loss and accuracy from the predicted logits, in float64.
  const z = vals(logits);
  const yv = vals(y);
  let lossSum = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const r = z.slice(i * 3, i * 3 + 3);
    const m = Math.max(...r);
    const lse = m + Math.log(r.reduce((a, v) => a + Math.exp(v - m), 0));
    lossSum += lse - r[yv[i]];
    if (r.indexOf(m) === yv[i]) correct++;
  }
  const handLoss = lossSum / n;
  const handAcc = correct / n;
  for (const batchSize of [7, 45, 100]) {
    const logs = evaluate(model, vars, x, y, { loss, metrics: [accuracy], batchSize, ...silent });
    t.ok(Math.abs(logs.loss - handLoss) < 1e-5, `batchSize ${batchSize}: loss ${logs.loss} = hand ${handLoss}`);
    t.ok(Math.abs(logs.accuracy - handAcc) < 1e-6, `batchSize ${batchSize}: accuracy ${logs.accuracy} = hand ${handAcc}`);
  }
  // verbose evaluate writes one line through `write`.
  const lines: string[] = [];
  evaluate(model, vars, x, y, { loss, metrics: [accuracy], batchSize: 15, verbose: 1, write: (s) => lines.push(s) });
  t.match(lines.join(''), /^3\/3 - \d+s - loss: \d+\.\d{4} - accuracy: \d\.\d{4} - \d+ms\/step\n$/);
  t.match(lines.join(''), `loss: ${handLoss.toFixed(4)}`);
  // validationData in fit reports evaluate's numbers as val_*.
  const res = fit(model, vars, x, y, {
    optimizer: sgd(0.1),
    loss,
    metrics: [accuracy],
    epochs: 1,
    batchSize: 16,
    validationData: [x, y],
    ...silent,
  });
  const after = evaluate(model, res, x, y, { loss, metrics: [accuracy], batchSize: 16 });
  t.ok(Math.abs(res.history.history.val_loss[0] - after.loss) < 1e-6, 'val_loss = evaluate after the epoch');
  t.ok(Math.abs(res.history.history.val_accuracy[0] - after.accuracy) < 1e-6, 'val_accuracy = evaluate after the epoch');
});

t.test('same key -> identical fit results; different key -> different', async (t) => {
  resetLayerNames();
  const { x, y } = classificationData(7, 40);
  const model = mlp();
  const init = model.init(random.key(8), [4]);
  const run = (seed: number) =>
    fit(model, init, x, y, { optimizer: adam(0.02), loss, metrics: [accuracy], epochs: 2, batchSize: 8, key: random.key(seed), ...silent });
  const a = run(11);
  const b = run(11);
  const c = run(12);
  t.equal(maxDiff(leaves(a.params), leaves(b.params)), 0, 'same key: bitwise identical params');
  t.same(a.history.history, b.history.history, 'same key: identical history');
  t.ok(maxDiff(leaves(a.params), leaves(c.params)) > 1e-5, 'different key (different shuffles): different params');
  t.notSame(a.history.history.loss, c.history.history.loss, 'different key: different losses');
  // Shuffling actually happens: the default (shuffle on) differs from shuffle false.
  const d = fit(model, init, x, y, {
    optimizer: adam(0.02),
    loss,
    epochs: 2,
    batchSize: 8,
    key: random.key(11),
    shuffle: false,
    ...silent,
  });
  t.ok(maxDiff(leaves(a.params), leaves(d.params)) > 1e-5, 'shuffled != unshuffled');
});

/** A parameter-free layer with state: y = x * sqrt(g); the state counts calls (n) and keeps g. */
function gate(): Layer {
  return {
    kind: 'Gate',
    name: 'gate',
    config: {},
    init: (_key, inputShape) => ({ params: {}, state: { g: scalar(1), n: scalar(0) }, outputShape: inputShape }),
    apply: (_p, x, _ctx, state) => {
      const s = state as { g: Tensor; n: Tensor };
      return { y: x.mul(sqrt(s.g)), state: { g: s.g, n: add(s.n, 1) }, losses: [] };
    },
    with: () => gate(),
  };
}

t.test('callbacks: onBatchBegin can change ctl.state and the next step sees it', async (t) => {
  resetLayerNames();
  const n = 40;
  const batchSize = 8; // 5 steps per epoch
  const { x } = classificationData(9, n);
  const yReg = array(
    vals(x).filter((_, i) => i % 4 === 0),
    { shape: [n, 1] },
  );
  const model = sequential([gate(), dense(1, { name: 'lin' })]);
  const init = model.init(random.key(10), [4]);
  const seen: { batch: number; epoch: number; steps: number }[] = [];
  const batchLosses: number[] = [];
  const cb: Callback = {
    onBatchBegin: (b, ctl: TrainingControl) => {
      seen.push({ batch: b, epoch: ctl.epoch, steps: ctl.stepsPerEpoch });
      // Before batch 2: g = 4 (doubles the input) and the call counter jumps to 100.
      if (b === 2) ctl.state = { ...(ctl.state as object), gate: { g: scalar(4), n: scalar(100) } };
    },
    onBatchEnd: (_b, logs) => batchLosses.push(logs.batchLoss),
  };
  const opt = sgd(0); // params never move, so each batch loss depends only on the data and g
  const res = fit(model, init, x, yReg, {
    optimizer: opt,
    loss: meanSquaredError(),
    epochs: 1,
    batchSize,
    shuffle: false,
    callbacks: [cb],
    ...silent,
  });
  t.same(
    seen.map((s) => s.batch),
    [0, 1, 2, 3, 4],
  );
  t.ok(
    seen.every((s) => s.epoch === 0 && s.steps === 5),
    'ctl.epoch and stepsPerEpoch',
  );
  const st = (res.state as { gate: { g: Tensor; n: Tensor } }).gate;
  t.equal(st.n.item(), 103, 'counter: set to 100 before batch 2, then 3 more steps');
  t.equal(st.g.item(), 4, 'g kept');
  // Hand batch losses: MSE of (x * sqrt(g)) @ k + b with g = 1 for batches 0-1 and 4 after.
  const p = (init.params as { lin: { kernel: Tensor; bias: Tensor } }).lin;
  const k = vals(p.kernel);
  const bias = vals(p.bias)[0];
  const xv = vals(x);
  const yv = vals(yReg);
  const hand = [0, 1, 2, 3, 4].map((b) => {
    const scale = b < 2 ? 1 : 2;
    let s = 0;
    for (let i = b * batchSize; i < (b + 1) * batchSize; i++) {
      let pred = bias;
      for (let j = 0; j < 4; j++) pred += scale * xv[i * 4 + j] * k[j];
      s += (pred - yv[i]) ** 2;
    }
    return s / batchSize;
  });
  const err = Math.max(...batchLosses.map((l, i) => Math.abs(l - hand[i]) / Math.max(1, hand[i])));
  t.ok(
    err < 1e-5,
    `batch losses follow the changed state from batch 2 on (${batchLosses.map((v) => v.toFixed(4))} vs ${hand.map((v) => v.toFixed(4))})`,
  );
  t.ok(Math.abs(hand[2] - hand[1]) > 1e-3, 'the change is visible in the losses');
});

t.test('callback order and hooks', async (t) => {
  resetLayerNames();
  const { x, y } = classificationData(12, 20);
  const model = mlp();
  const init = model.init(random.key(0), [4]);
  const events: string[] = [];
  const cb: Callback = {
    onTrainBegin: () => events.push('trainBegin'),
    onEpochBegin: (e) => events.push(`epochBegin ${e}`),
    onBatchBegin: (b) => events.push(`batchBegin ${b}`),
    onBatchEnd: (b) => events.push(`batchEnd ${b}`),
    onEpochEnd: (e, logs: Logs) => events.push(`epochEnd ${e} ${Object.keys(logs).join(',')}`),
    onTrainEnd: () => events.push('trainEnd'),
  };
  fit(model, init, x, y, { optimizer: sgd(0.1), loss, metrics: [accuracy], epochs: 2, batchSize: 10, callbacks: [cb], ...silent });
  t.same(events, [
    'trainBegin',
    'epochBegin 0',
    'batchBegin 0',
    'batchEnd 0',
    'batchBegin 1',
    'batchEnd 1',
    'epochEnd 0 loss,accuracy',
    'epochBegin 1',
    'batchBegin 0',
    'batchEnd 0',
    'batchBegin 1',
    'batchEnd 1',
    'epochEnd 1 loss,accuracy',
    'trainEnd',
  ]);
});

t.test('earlyStopping stops after `patience` epochs without improvement (Keras semantics)', async (t) => {
  resetLayerNames();
  const { x, y } = classificationData(13, 24);
  const model = mlp();
  const init = model.init(random.key(0), [4]);
  // lr 0 and no shuffling: every epoch's loss is identical, so only epoch 0 is an improvement.
  // Keras: wait counts non-improving epochs and stops when wait >= patience, i.e. after
  // 1 + patience epochs here (Keras's own doc example: patience 3 -> "Only 4 epochs are run").
  for (const patience of [0, 1, 2, 3]) {
    const res = fit(model, init, x, y, {
      optimizer: sgd(0),
      loss,
      epochs: 10,
      batchSize: 8,
      shuffle: false,
      callbacks: [earlyStopping({ patience })],
      ...silent,
    });
    const l = res.history.history.loss;
    t.ok(
      l.every((v) => v === l[0]),
      `patience ${patience}: the loss is constant (${l[0]})`,
    );
    t.equal(
      res.history.epochs.length,
      Math.max(1, patience) + 1,
      `patience ${patience}: stops after ${Math.max(1, patience) + 1} epochs (ran ${res.history.epochs.length})`,
    );
    t.match(res.history.stopReason ?? '', /early stopping/, `patience ${patience}: stopReason set`);
  }
  // A loss that keeps improving never triggers it: full-batch gradient descent on a convex loss.
  const improving = fit(model, init, x, y, {
    optimizer: sgd(0.05),
    loss,
    epochs: 6,
    batchSize: 24,
    shuffle: false,
    callbacks: [earlyStopping({ patience: 0 })],
    ...silent,
  });
  const il = improving.history.history.loss;
  t.ok(
    il.every((v, i) => i === 0 || v < il[i - 1]),
    `loss strictly decreasing: ${il.map((v) => v.toFixed(5))}`,
  );
  t.equal(improving.history.epochs.length, 6, 'all epochs run');
  t.equal(improving.history.stopReason, undefined);
  // minDelta: improvements smaller than minDelta do not count.
  const deltaRes = fit(model, init, x, y, {
    optimizer: sgd(1e-4),
    loss,
    epochs: 6,
    batchSize: 24,
    shuffle: false,
    callbacks: [earlyStopping({ patience: 0, minDelta: 1 })],
    ...silent,
  });
  t.equal(deltaRes.history.epochs.length, 2, 'tiny improvements below minDelta stop training at the first check');
  // An unknown monitor names the available logs.
  t.throws(
    () =>
      fit(model, init, x, y, {
        optimizer: sgd(0),
        loss,
        epochs: 2,
        batchSize: 8,
        callbacks: [earlyStopping({ monitor: 'val_loss' })],
        ...silent,
      }),
    /earlyStopping: no log named 'val_loss'; logs are loss/,
  );
});

t.test('terminateOnNaN stops at the first NaN batch and names epoch and batch', async (t) => {
  resetLayerNames();
  const n = 40;
  const batchSize = 8;
  const { x } = classificationData(14, n);
  const yReg = array(new Array<number>(n).fill(0.5), { shape: [n, 1] });
  const model = sequential([gate(), dense(1, { name: 'lin' })]);
  const init = model.init(random.key(15), [4]);
  const began: string[] = [];
  // Before epoch 2 (index 1), batch 3 (index 2): g = -1, so sqrt(g) and the loss are NaN.
  const poison: Callback = {
    onBatchBegin: (b, ctl) => {
      began.push(`${ctl.epoch}:${b}`);
      if (ctl.epoch === 1 && b === 2) ctl.state = { ...(ctl.state as object), gate: { g: scalar(-1), n: scalar(0) } };
    },
  };
  const out: string[] = [];
  const res = fit(model, init, x, yReg, {
    optimizer: sgd(0.01),
    loss: meanSquaredError(),
    epochs: 5,
    batchSize,
    shuffle: false,
    callbacks: [poison, terminateOnNaN()],
    verbose: 2,
    write: (s) => out.push(s),
  });
  t.match(res.history.stopReason ?? '', /terminateOnNaN: loss became NaN at epoch 2, batch 3; training stopped/);
  t.same(began.slice(-2), ['1:1', '1:2'], 'no batch runs after the NaN batch');
  t.equal(began.length, 5 + 3, '5 batches of epoch 1 and 3 of epoch 2');
  t.same(res.history.epochs, [0, 1], 'the stopping epoch is recorded (as Keras does), none after it');
  t.match(out.join(''), /terminateOnNaN: loss became NaN at epoch 2, batch 3/, 'the reason is printed');

  // A huge learning rate: the loss overflows to a non-finite value within a few steps.
  const huge = fit(model, init, x, yReg, {
    optimizer: sgd(1e30),
    loss: meanSquaredError(),
    epochs: 3,
    batchSize,
    shuffle: false,
    callbacks: [terminateOnNaN()],
    ...silent,
  });
  t.match(huge.history.stopReason ?? '', /terminateOnNaN: loss became (NaN|Infinity) at epoch 1, batch \d+; training stopped/);
});

t.test('progress output: Keras format', async (t) => {
  resetLayerNames();
  const { x, y } = classificationData(16, 30);
  const model = mlp();
  const init = model.init(random.key(0), [4]);
  const out: string[] = [];
  const res = fit(model, init, x, y, {
    optimizer: sgd(0.1),
    loss,
    metrics: [accuracy],
    epochs: 2,
    batchSize: 10,
    shuffle: false,
    verbose: 1,
    write: (s) => out.push(s),
  });
  const lines = out.join('').split('\n');
  t.equal(lines[0], 'Epoch 1/2');
  t.match(lines[1], /^3\/3 \[={30}\] - \d+s \d+ms\/step - loss: \d+\.\d{4} - accuracy: \d\.\d{4}$/, `progress line: ${lines[1]}`);
  t.ok(
    lines[1].endsWith(`loss: ${res.history.history.loss[0].toFixed(4)} - accuracy: ${res.history.history.accuracy[0].toFixed(4)}`),
    'numbers are the epoch logs',
  );
  t.equal(lines[2], 'Epoch 2/2');
  t.match(lines[3], /^3\/3 \[={30}\] - /);
  // verbose 0 prints nothing.
  const quiet: string[] = [];
  fit(model, init, x, y, { optimizer: sgd(0.1), loss, epochs: 1, batchSize: 10, verbose: 0, write: (s) => quiet.push(s) });
  t.same(quiet, []);
  // Mid-epoch line: Keras's bar (=, >, .) and an ETA.
  t.equal(progressLine(5, 10, 1, { loss: 0.5 }, false), ' 5/10 [==============>...............] - ETA: 1s - loss: 0.5000');
  t.equal(
    progressLine(1875, 1875, 9.4, { loss: 0.49791, accuracy: 0.825 }, true),
    '1875/1875 [==============================] - 9s 5ms/step - loss: 0.4979 - accuracy: 0.8250',
  );
});

t.test('input errors name the function or layer and the shapes', async (t) => {
  resetLayerNames();
  const { x, y } = classificationData(17, 20);
  const model = mlp();
  const init = model.init(random.key(0), [4]);
  const shortY = gatherRows(
    y,
    Array.from({ length: 19 }, (_, i) => i),
  );
  t.throws(
    () => fit(model, init, x, shortY, { optimizer: sgd(0.1), loss, ...silent }),
    /fit: x has 20 examples but y has 19 \(shapes \[20, 4\] and \[19\]\)/,
  );
  t.throws(() => evaluate(model, init, x, shortY, { loss }), /evaluate: x has 20 examples but y has 19/);
  const wide = random.normal(random.key(1), [20, 5]) as NDArray;
  t.throws(
    () => fit(model, init, wide, y, { optimizer: sgd(0.1), loss, batchSize: 8, ...silent }),
    /dense 'h': expected input with last axis 4, got shape \[8, 5\]/,
    'the layer and both shapes',
  );
  t.throws(() => predict(model, init, wide), /dense 'h': expected input with last axis 4, got shape \[\d+, 5\]/);
});
