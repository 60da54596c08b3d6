/**
 * NIR import and export: the fixtures written by other frameworks load; the Rockpool LIF against
 * the exact solution of tau dv/dt = (v_leak - v) + R I written here from the formula; each node
 * type against a float64 loop of its equations; recurrence, fan-in/fan-out, delays and nested
 * graphs; round trips bit for bit; and the errors for bad graphs.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { array, fromTyped, random, zeros, type Tensor } from '../../core/index.js';
import {
  dense,
  sequential,
  timeDistributed,
  flatten,
  activation,
  globalAveragePooling1d,
  resetLayerNames,
  type Layer,
} from '../../nn/index.js';
import {
  lowpass,
  alpha,
  spikingActivation,
  leaky,
  recurrentLeaky,
  leakyIntegrator,
  integrateAndFire,
  synaptic,
  adaptiveLeaky,
} from '../../spiking/index.js';
import * as nir from '../../spiking/nir/index.js';
import { nirArray, type NirGraph, type NirLeafNode, type NirNode } from '../../spiking/nir/index.js';

const FIXTURES = '../shared/nir/fixtures';
const fixture = (name: string): string => join(import.meta.dirname, '..', '..', FIXTURES, name);

const f32 = (values: number[]) => nirArray(values, [values.length], 'float32');
const node = (type: NirLeafNode['type'], params: NirLeafNode['params']): NirLeafNode => ({ type, params });
const io = (n: number): Record<string, NirNode> => ({
  in: node('Input', { shape: nirArray([n], [1], 'int64') }),
  out: node('Output', { shape: nirArray([n], [1], 'int64') }),
});
const chain = (nodes: Record<string, NirNode>, names: string[]): NirGraph => ({
  type: 'NIRGraph',
  nodes,
  edges: names.slice(1).map((n, i) => [names[i], n] as const),
});

function values(x: Tensor): number[] {
  return Array.from(x.toTyped() as ArrayLike<number>);
}

t.test('the two fixtures load: nodes, edges, parameters', async (t) => {
  const rock = await nir.read(fixture('lif_rockpool.nir'));
  t.equal(rock.version, '0.2.0');
  t.same(Object.keys(rock.graph.nodes).sort(), ['0_LinearTorch', '1_LIFNeuronTorch', 'input', 'output']);
  const lif = rock.graph.nodes['1_LIFNeuronTorch'] as NirLeafNode;
  t.equal(lif.type, 'LIF');
  t.equal((lif.params.tau as nir.NirArray).values[0], Math.fround(0.0025));
  t.equal((lif.params.v_threshold as nir.NirArray).dtype, 'float32');
  const two = await nir.load(fixture('two_lif_neurons.nir'), { dt: 1e-4 });
  t.same(two.model.nir.flat.order, ['in', 'linear1', 'lif1', 'linear2', 'lif2', 'out']);
  t.equal(two.graph.edges.length, 5);
  const y = two.model.apply(two.variables.params, zeros([2, 30, 1]), { training: false }, two.variables.state).y;
  t.same(y.shape, [2, 30, 1]);
});

/** The Rockpool neuron's exact solution, float64, from the formula: constant current over each step. */
function exactLif(current: number[], p: { w: number; r: number; tau: number; thr: number }, dt: number): { v: number[]; spikes: number[] } {
  let v = 0;
  const vs: number[] = [];
  const spikes: number[] = [];
  const decay = Math.exp(-dt / p.tau);
  current.forEach((i, step) => {
    const vInf = p.r * p.w * i; // v_leak = 0
    v = vInf + (v - vInf) * decay;
    if (v > p.thr) {
      spikes.push(step);
      v = 0;
    }
    vs.push(v);
  });
  return { v: vs, spikes };
}

t.test('lif_rockpool.nir at dt = 0.1 ms with a step current: the exact LIF solution, spikes at the same steps', async (t) => {
  const dt = 1e-4;
  const { graph } = await nir.read(fixture('lif_rockpool.nir'));
  const lif = graph.nodes['1_LIFNeuronTorch'] as NirLeafNode;
  const get = (n: NirLeafNode, k: string) => (n.params[k] as nir.NirArray).values[0];
  const p = {
    w: get(graph.nodes['0_LinearTorch'] as NirLeafNode, 'weight'),
    r: get(lif, 'r'),
    tau: get(lif, 'tau'),
    thr: get(lif, 'v_threshold'),
  };
  const T = 200;
  const current = Array.from({ length: T }, (_, i) => (i < 20 ? 0 : i < 150 ? 0.5 : 0));
  const want = exactLif(current, p, dt);
  t.ok(want.spikes.length > 5, `the reference fires (${want.spikes.length} spikes)`);
  const { model, variables } = await nir.load(fixture('lif_rockpool.nir'), { dt, discretisation: 'exact' });
  for (const dtype of ['float64', 'float32'] as const) {
    const x = fromTyped(dtype === 'float64' ? Float64Array.from(current) : Float32Array.from(current), [1, T, 1], dtype);
    const run = model.run(variables.params, x, { record: ['1_LIFNeuronTorch'] });
    const v = values(run.traces['1_LIFNeuronTorch'].state[0]);
    const z = values(run.traces['1_LIFNeuronTorch'].output);
    const tol = dtype === 'float64' ? 1e-12 : 2e-6;
    const worst = Math.max(...v.map((vi, i) => Math.abs(vi - want.v[i])));
    t.ok(worst <= tol, `${dtype}: voltage within ${tol} of the exact solution (worst ${worst.toExponential(2)})`);
    t.same(
      z.flatMap((s, i) => (s === 1 ? [i] : [])),
      want.spikes,
      `${dtype}: spikes at the same steps`,
    );
    t.same(values(run.y), z, 'the graph output is the neuron spikes');
  }
});

/** Forward Euler of every neuron type, float64, from the NIR equations (input and reset in the same step). */
t.test('each neuron type against a float64 loop of its NIR equations (euler and exact)', async (t) => {
  const dt = 1e-3;
  const T = 60;
  const n = 3;
  const xs = Array.from({ length: T * n }, (_, i) => 1.5 + Math.sin(i * 0.37) * 1.2);
  const P = {
    tau: [0.01, 0.02, 0.005],
    r: [1.2, 0.8, 2],
    v_leak: [0.1, 0, -0.2],
    v_threshold: [0.5, 0.4, 0.6],
    v_reset: [0, -0.1, 0.05],
    tau_syn: [0.004, 0.02, 0.005],
    w_in: [1, 0.5, 2],
  };
  type Kind = 'I' | 'LI' | 'IF' | 'LIF' | 'CubaLI' | 'CubaLIF';
  const params: Record<Kind, string[]> = {
    I: ['r'],
    LI: ['tau', 'r', 'v_leak'],
    IF: ['r', 'v_threshold', 'v_reset'],
    LIF: ['tau', 'r', 'v_leak', 'v_threshold', 'v_reset'],
    CubaLI: ['tau_syn', 'tau_mem', 'r', 'v_leak', 'w_in'],
    CubaLIF: ['tau_syn', 'tau_mem', 'r', 'v_leak', 'v_threshold', 'v_reset', 'w_in'],
  };
  const f = (a: number[]) => a.map(Math.fround);
  for (const kind of Object.keys(params) as Kind[]) {
    for (const disc of ['euler', 'exact'] as const) {
      const nodeParams: Record<string, nir.NirArray> = {};
      for (const k of params[kind]) nodeParams[k] = f32(k === 'tau_mem' ? P.tau : (P as Record<string, number[]>)[k]);
      const g = chain({ ...io(n), neuron: node(kind, nodeParams) }, ['in', 'neuron', 'out']);
      const { model, variables } = nir.modelFromGraph(g, { dt, discretisation: disc });
      const x = fromTyped(Float64Array.from(xs), [1, T, n], 'float64');
      const run = model.run(variables.params, x, { record: ['neuron'] });
      const got = values(run.traces.neuron.state[run.traces.neuron.state.length - 1]);
      const gotOut = values(run.y);
      const p = (k: keyof typeof P) => f(P[k]);
      const v = [0, 0, 0];
      const cur = [0, 0, 0];
      let worst = 0;
      let spikesSame = true;
      for (let s = 0; s < T; s++) {
        for (let j = 0; j < n; j++) {
          const xj = xs[s * n + j];
          const tau = p('tau')[j];
          const r = p('r')[j];
          const leak = kind === 'I' || kind === 'IF' ? 0 : p('v_leak')[j];
          let vn: number;
          if (kind === 'I' || kind === 'IF') vn = v[j] + dt * r * xj;
          else if (kind === 'LI' || kind === 'LIF') {
            vn =
              disc === 'euler' ? v[j] + (dt / tau) * (leak - v[j] + r * xj) : leak + r * xj + (v[j] - leak - r * xj) * Math.exp(-dt / tau);
          } else {
            const ts = p('tau_syn')[j];
            const w = p('w_in')[j];
            if (disc === 'euler') {
              cur[j] = cur[j] + (dt / ts) * (w * xj - cur[j]);
              vn = v[j] + (dt / tau) * (leak - v[j] + r * cur[j]);
            } else {
              // Closed form over one step with w x held: I(s) = wx + (I0 - wx) e^(-s/ts), v by convolution.
              const wx = w * xj;
              const i0 = cur[j];
              const em = Math.exp(-dt / tau);
              const es = Math.exp(-dt / ts);
              // ts (es - em) / (ts - tau) tends to (dt / tau) em where the time constants are equal.
              const c = Math.abs(ts - tau) < 1e-12 ? (dt / tau) * em : (ts * (es - em)) / (ts - tau);
              vn = leak + (v[j] - leak) * em + r * (wx * (1 - em) + (i0 - wx) * c);
              cur[j] = wx + (i0 - wx) * es;
            }
          }
          let out = vn;
          if (kind === 'IF' || kind === 'LIF' || kind === 'CubaLIF') {
            const z = vn > p('v_threshold')[j] ? 1 : 0;
            if (z) vn = p('v_reset')[j];
            out = z;
            if (gotOut[s * n + j] !== z) spikesSame = false;
          } else worst = Math.max(worst, Math.abs(gotOut[s * n + j] - out));
          v[j] = vn;
          worst = Math.max(worst, Math.abs(got[s * n + j] - vn));
        }
      }
      t.ok(worst < 1e-9, `${kind} ${disc}: membrane within 1e-9 of the loop (worst ${worst.toExponential(2)})`);
      t.ok(spikesSame, `${kind} ${disc}: same spikes`);
    }
  }
});

t.test('stateless nodes, fan-in (sum), fan-out, Delay, Scale, Threshold, Flatten, nested graphs', async (t) => {
  const W = [
    [1, -2],
    [0.5, 3],
    [-1, 1],
  ];
  const inner: NirGraph = chain(
    {
      in: node('Input', { shape: nirArray([3], [1], 'int64') }),
      sc: node('Scale', { scale: f32([2, -1, 0.5]) }),
      out: node('Output', { shape: nirArray([3], [1], 'int64') }),
    },
    ['in', 'sc', 'out'],
  );
  const g: NirGraph = {
    type: 'NIRGraph',
    nodes: {
      ...io(2),
      out: node('Output', { shape: nirArray([3], [1], 'int64') }),
      aff: node('Affine', { weight: nirArray(W.flat(), [3, 2]), bias: f32([0.1, 0.2, 0.3]) }),
      lin: node('Linear', { weight: nirArray([1, 0, 0, 1, 1, 1], [3, 2]) }),
      sub: inner,
      delay: node('Delay', { delay: f32([0, 0.002, 0.001]) }),
      thr: node('Threshold', { threshold: f32([0, 1, -1]) }),
    },
    edges: [
      ['in', 'aff'],
      ['in', 'lin'],
      ['aff', 'sub'],
      ['lin', 'sub'],
      ['sub', 'delay'],
      ['delay', 'thr'],
      ['thr', 'out'],
    ],
  };
  const dt = 1e-3;
  const { model, variables } = nir.modelFromGraph(g, { dt });
  t.same(model.nir.flat.order.includes('sub.sc'), true, 'nested nodes are named outer.inner');
  const T = 6;
  const xs = Array.from({ length: T * 2 }, (_, i) => Math.cos(i * 1.3) * 2);
  const run = model.run(variables.params, fromTyped(Float64Array.from(xs), [1, T, 2], 'float64'), { record: ['sub.sc', 'delay'] });
  const scale = [2, -1, 0.5].map(Math.fround);
  const lin = [
    [1, 0],
    [0, 1],
    [1, 1],
  ];
  const hist: number[][] = [];
  const want: number[] = [];
  for (let s = 0; s < T; s++) {
    const x = [xs[2 * s], xs[2 * s + 1]];
    const summed = [0, 1, 2].map(
      (o) =>
        Math.fround(W[o][0]) * x[0] + Math.fround(W[o][1]) * x[1] + Math.fround([0.1, 0.2, 0.3][o]) + lin[o][0] * x[0] + lin[o][1] * x[1],
    );
    const sc = summed.map((v, o) => v * scale[o]);
    hist.push(sc);
    const delayed = [sc[0], s >= 2 ? hist[s - 2][1] : 0, s >= 1 ? hist[s - 1][2] : 0];
    want.push(...delayed.map((v, o) => (v > Math.fround([0, 1, -1][o]) ? 1 : 0)));
  }
  const sc = values(run.traces['sub.sc'].output);
  t.ok(Math.max(...hist.flat().map((v, i) => Math.abs(v - sc[i]))) < 1e-12, 'fan-in sums both paths; the nested Scale sees it');
  t.same(values(run.y), want, 'delays of 0, 2 and 1 steps, then the threshold');
  t.same(
    model.nir.flat.edges.filter((e) => e.recurrent),
    [],
    'a feed-forward graph has no recurrent edge',
  );
});

t.test('a recurrent LIF (cycle through a Linear): the cycle edge reads the previous step', async (t) => {
  const n = 2;
  const Wr = [0, -0.6, 0.4, 0];
  const g: NirGraph = {
    type: 'NIRGraph',
    nodes: {
      ...io(n),
      lif: node('LIF', { tau: f32([0.01, 0.01]), r: f32([1, 1]), v_leak: f32([0, 0]), v_threshold: f32([0.3, 0.3]) }),
      rec: node('Linear', { weight: nirArray(Wr, [2, 2]) }),
    },
    edges: [
      ['in', 'lif'],
      ['lif', 'rec'],
      ['rec', 'lif'],
      ['lif', 'out'],
    ],
  };
  const dt = 1e-3;
  const { model, variables } = nir.modelFromGraph(g, { dt });
  t.same(
    model.nir.flat.edges.filter((e) => e.recurrent).map((e) => [e.from, e.to]),
    [['rec', 'lif']],
  );
  const T = 80;
  const xs = Array.from({ length: T * n }, (_, i) => 40 + 10 * Math.sin(i));
  const y = values(model.run(variables.params, fromTyped(Float64Array.from(xs), [1, T, n], 'float64')).y);
  const v = [0, 0];
  let prev = [0, 0];
  const want: number[] = [];
  const thr = Math.fround(0.3);
  for (let s = 0; s < T; s++) {
    const z = [0, 0];
    for (let j = 0; j < n; j++) {
      const u = xs[s * n + j] + Wr[j * 2] * prev[0] + Wr[j * 2 + 1] * prev[1];
      v[j] = v[j] + (dt / Math.fround(0.01)) * (0 - v[j] + u);
      if (v[j] > thr) {
        z[j] = 1;
        v[j] = 0;
      }
    }
    prev = z;
    want.push(...z);
  }
  t.same(y, want, 'spikes equal the loop with S_{t-1} fed back');
  t.ok(want.some((s) => s === 1));
});

t.test('clear errors naming the node', async (t) => {
  const bad = (g: NirGraph, re: RegExp, label: string) => t.throws(() => nir.modelFromGraph(g, { dt: 1e-3 }), re, label);
  bad(
    chain({ ...io(2), a: node('Affine', { weight: nirArray([1, 2, 3, 4, 5, 6], [3, 2]), bias: f32([0, 0, 0]) }) }, ['in', 'a', 'out']),
    /shape mismatch on the edge 'a' -> 'out'.*\[3\].*\[2\]/,
    'shape mismatch',
  );
  bad(
    chain({ ...io(2), a: node('LIF', { tau: f32([1, 1]), r: f32([1, 1]), v_leak: f32([0, 0]), v_threshold: f32([1]) }) }, [
      'in',
      'a',
      'out',
    ]),
    /node 'a' \(LIF\): parameter 'v_threshold' has shape \[1\]/,
    'parameter shapes',
  );
  bad(
    {
      type: 'NIRGraph',
      nodes: { ...io(2), s: node('Scale', { scale: f32([1, 1]) }), q: node('Scale', { scale: f32([1, 1]) }) },
      edges: [
        ['in', 's'],
        ['s', 'q'],
        ['q', 's'],
        ['q', 'out'],
      ],
    },
    /cycle without state: (s -> q -> s|q -> s -> q)/,
    'a cycle of stateless nodes',
  );
  bad(chain({ ...io(2) }, ['in', 'nowhere', 'out']), /'nowhere', which is not a node/, 'an edge to a missing node');
  bad(
    {
      type: 'NIRGraph',
      nodes: {
        a: node('Input', { shape: nirArray([1], [1], 'int64') }),
        b: node('Input', { shape: nirArray([1], [1], 'int64') }),
        out: node('Output', { shape: nirArray([1], [1], 'int64') }),
      },
      edges: [],
    },
    /2 Input and 1 Output/,
    'two inputs',
  );
  t.throws(() => nir.modelFromGraph(chain(io(1), ['in', 'out']), { dt: 0 }), /dt must be a positive number/);
  t.throws(() => nir.modelFromGraph(chain(io(1), ['in', 'out']), { dt: 1, discretisation: 'rk4' as 'euler' }), /'euler' or 'exact'/);
  const { model, variables } = nir.modelFromGraph(chain(io(2), ['in', 'out']), { dt: 1 });
  t.throws(() => model.run(variables.params, zeros([1, 3, 5])), /expected input \(batch, time, 2\), got shape \[1, 3, 5\]/);
});

t.test('round trip: NIR model -> file -> model gives the same outputs bit for bit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nir-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const file of ['two_lif_neurons', 'lif_rockpool']) {
    for (const disc of ['euler', 'exact'] as const) {
      const a = await nir.load(fixture(`${file}.nir`), { dt: 1e-4, discretisation: disc });
      const path = join(dir, `${file}-${disc}.nir`);
      await nir.save(path, a.model, a.variables, { dt: 1e-4 });
      t.same(
        readdirSync(dir).filter((f) => f.endsWith('.tmp')),
        [],
        'no temporary file left',
      );
      const b = await nir.load(path, { dt: 1e-4, discretisation: disc });
      const x = random.uniform(random.key(3), [4, 50, 1]).mul(30);
      const record = a.model.nir.flat.order;
      const ra = a.model.run(a.variables.params, x, { record });
      const rb = b.model.run(b.variables.params, x, { record });
      t.same(values(rb.y), values(ra.y), `${file} ${disc}: identical outputs`);
      for (const n of record)
        t.same(rb.traces[n].state.map(values), ra.traces[n].state.map(values), `${file} ${disc}: identical states of '${n}'`);
      t.ok(
        record.some((n) => values(ra.traces[n].output).includes(1)),
        'a neuron spikes',
      );
    }
  }
});

t.test('round trip: a sequential spiketrace model -> NIR -> spiketrace, bit for bit', async (t) => {
  resetLayerNames();
  const dt = 0.01;
  const model = sequential([timeDistributed(dense(6)), lowpass(0.05, { dt }), dense(3, { useBias: false }), lowpass(0.02, { dt })]);
  const vars = model.init(random.key(1), [null, 5]);
  const x = random.normal(random.key(2), [3, 12, 5]);
  const want = values(model.apply(vars.params, x, { training: false }, vars.state).y);
  const bytes = await nir.saveToBytes(model, vars, { dt });
  const { model: back, variables, graph } = await nir.load(bytes, { dt, discretisation: 'exact' });
  t.same(
    Object.entries(graph.nodes)
      .map(([k, v]) => [k, v.type])
      .sort(
        (a, b) =>
          ['Input', 'Affine', 'LI', 'Linear', 'Output'].indexOf(a[1]) - ['Input', 'Affine', 'LI', 'Linear', 'Output'].indexOf(b[1]) ||
          a[0].localeCompare(b[0]),
      ),
    [
      ['input', 'Input'],
      ['time_distributed', 'Affine'],
      ['lowpass', 'LI'],
      ['lowpass_1', 'LI'],
      ['dense_1', 'Linear'],
      ['output', 'Output'],
    ],
  );
  t.same(values(back.apply(variables.params, x, { training: false }, variables.state).y), want, 'same outputs, bit for bit');
  // The alpha filter is a CubaLI with equal time constants (same values to rounding, not bits).
  const m2 = sequential([dense(4), alpha(0.03, { dt })]);
  const v2 = m2.init(random.key(4), [null, 5]);
  const want2 = values(m2.apply(v2.params, x, { training: false }, v2.state).y);
  const b2 = await nir.load(await nir.saveToBytes(m2, v2, { dt }), { dt, discretisation: 'exact' });
  const got2 = values(b2.model.apply(b2.variables.params, x, { training: false }, {}).y);
  t.ok(Math.max(...got2.map((g, i) => Math.abs(g - want2[i]))) < 1e-5, 'alpha -> CubaLI within float32 rounding');
});

t.test('export errors name the layer', async (t) => {
  resetLayerNames();
  const dt = 0.01;
  const cases: [ReturnType<typeof sequential>, RegExp][] = [
    [
      sequential([dense(4), spikingActivation('relu', { dt })]),
      /layer 'spiking_activation' \(SpikingActivation\) has no NIR counterpart: spikingActivation has no exact NIR node/,
    ],
    [sequential([dense(4, { activation: 'relu' })]), /layer 'dense_1' \(Dense\): its activation 'relu' has no NIR node/],
    [
      sequential([dense(4), globalAveragePooling1d()]),
      /'global_average_pooling1d' \(GlobalAveragePooling1D\) has no NIR counterpart: globalAveragePooling1d averages over time/,
    ],
    [sequential([dense(4), activation('tanh')]), /'activation' \(Activation\): the activation 'tanh' has no NIR node/],
    [sequential([timeDistributed(flatten())]), /give options.inputShape/],
    [sequential([dense(4), lowpass(0.1, { dt: 0.001 })]), /runs at dt = 0.001 s, the export's dt is 0.01 s/],
  ];
  for (const [m, re] of cases) {
    const v = m.init(random.key(0), [null, 3]);
    await t.rejects(nir.saveToBytes(m, v, { dt }), re, re.source.slice(0, 60));
  }
  const fl = sequential([timeDistributed(flatten()), dense(2)]);
  const v = fl.init(random.key(0), [null, 2, 3]);
  const g = nir.graphFromModel(fl, v, { dt, inputShape: [2, 3] });
  t.same(
    Object.values(g.nodes).map((n) => n.type),
    ['Input', 'Flatten', 'Affine', 'Output'],
  );
  const back = nir.modelFromGraph(g, { dt });
  const x = random.normal(random.key(9), [2, 4, 2, 3]);
  t.same(
    values(back.model.apply(back.variables.params, x, { training: false }, {}).y),
    values(fl.apply(v.params, x, { training: false }, v.state).y),
    'flatten + dense: same outputs',
  );
  t.ok(array([1]).size === 1);
});

t.test('LIF-family layers -> NIR -> spiketrace: continuous-time layers bit for bit, discrete beta to rounding', async (t) => {
  resetLayerNames();
  const dt = 1e-3;
  const x = random.normal(random.key(5), [3, 40, 6]).mul(2);
  const run = async (layers: Layer[], discretisation: 'exact' | 'euler' = 'exact') => {
    const m = sequential(layers);
    const v = m.init(random.key(6), [null, 6]);
    const want = values(m.apply(v.params, x, { training: false }, v.state).y);
    const back = await nir.load(await nir.saveToBytes(m, v, { dt }), { dt, discretisation });
    return { want, got: values(back.model.apply(back.variables.params, x, { training: false }, {}).y), graph: back.graph };
  };
  const tau = [0.004, 0.01, 0.02, 0.005, 0.008, 0.05];
  for (const disc of ['exact', 'euler'] as const) {
    const a = await run(
      [
        dense(6),
        leaky({ tau, r: 2, reset: 'zero', dt, discretisation: disc }),
        dense(6),
        leakyIntegrator({ tau: 0.02, dt, discretisation: disc }),
      ],
      disc,
    );
    t.same(a.got, a.want, `dense -> leaky(tau, zero reset) -> dense -> leakyIntegrator (${disc}): bit for bit`);
  }
  const rec = await run([
    dense(6),
    recurrentLeaky({ tau, reset: 'zero', dt }),
    dense(6, { useBias: false }),
    leakyIntegrator({ tau: 0.02, dt }),
  ]);
  t.same(rec.got, rec.want, 'recurrentLeaky (all-to-all) -> Linear cycle: bit for bit');
  t.same(
    rec.graph.edges.filter(([a, b]) => a.startsWith('recurrent_leaky') && b.startsWith('recurrent_leaky')).length,
    2,
    'the recurrent weight is a cycle lif -> rec -> lif',
  );
  const one = await run([dense(6), recurrentLeaky({ tau, reset: 'zero', dt, recurrent: 'oneToOne' })]);
  t.same(one.got, one.want, 'recurrentLeaky (one-to-one) -> Scale cycle: bit for bit');
  const disc = await run([dense(6), leaky({ beta: 0.9, reset: 'zero', dt }), dense(6), leakyIntegrator({ beta: 0.8, dt })]);
  const worst = Math.max(...disc.got.map((g, i) => Math.abs(g - disc.want[i]) / (1 + Math.abs(disc.want[i]))));
  t.ok(worst < 1e-4, `discrete beta -> tau = -dt/ln(beta), r = 1/(1 - beta): readout within rounding (worst ${worst.toExponential(2)})`);
  const ifl = await run([dense(6), integrateAndFire({ reset: 'zero', dt })]);
  t.ok(ifl.got.filter((g, i) => g !== ifl.want[i]).length <= 2, 'integrateAndFire -> IF (r = 1/dt): the same spikes but for rounding ties');
  const errors: [Layer, RegExp][] = [
    [leaky({ dt }), /its 'subtract' reset has no NIR counterpart: NIR's LIF resets to v_reset/],
    [leaky({ reset: 'zero', graded: 2, dt }), /graded spikes \(height 2\) have no NIR node/],
    [leaky({ tau: 0.01, vLeak: 0.1, reset: 'zero', dt }), /vReset differs from vLeak/],
    [leaky({ beta: 1, reset: 'zero', dt }), /beta 1 has no NIR time constant.*integrateAndFire/],
    [synaptic({ dt }), /'synaptic' \(Synaptic\) has no NIR counterpart/],
    [adaptiveLeaky({ dt }), /NIR has no adaptive-threshold neuron/],
  ];
  for (const [layer, re] of errors) {
    const m = sequential([dense(6), layer]);
    await t.rejects(nir.saveToBytes(m, m.init(random.key(0), [null, 6]), { dt }), re, re.source.slice(0, 50));
  }
});

t.test('saving is atomic: a refused model or an unwritable path leaves the existing file as it was', async (t) => {
  const { readFileSync, writeFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'nir-atomic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'model.nir');
  writeFileSync(path, 'previous contents');
  resetLayerNames();
  const bad = sequential([dense(2), spikingActivation('relu', { dt: 0.01 })]);
  await t.rejects(nir.save(path, bad, bad.init(random.key(0), [null, 2]), { dt: 0.01 }), /spikingActivation has no exact NIR node/);
  t.equal(readFileSync(path, 'utf8'), 'previous contents');
  const good = sequential([dense(2)]);
  await t.rejects(
    nir.save(join(dir, 'missing', 'x.nir'), good, good.init(random.key(0), [null, 2]), { dt: 0.01 }),
    /nir.write: could not write .*missing\/x.nir/,
  );
  t.same(readdirSync(dir).sort(), ['model.nir'], 'no temporary file left behind');
  await nir.save(path, good, good.init(random.key(0), [null, 2]), { dt: 0.01 });
  t.same(
    Object.values((await nir.read(path)).graph.nodes).map((n) => n.type),
    ['Affine', 'Input', 'Output'],
    'then replaced whole',
  );
});

t.test('a learned tau is exported with its trained values, and the file runs as the trained model', async (t) => {
  resetLayerNames();
  const dt = 1e-3;
  const model = sequential([
    dense(6, { name: 'fc1' }),
    leaky({ tau: 0.01, learnTau: true, perUnit: true, reset: 'zero', dt, name: 'lif' }),
    dense(4, { name: 'fc2' }),
    leakyIntegrator({ tau: 0.02, learnTau: true, dt, name: 'li' }),
  ]);
  const vars = model.init(random.key(7), [null, 5]);
  // Stand-ins for trained values: what an optimizer leaves in params.
  const trainedLif = [0.004, 0.0075, 0.012, 0.02, 0.009, 0.0155];
  const params = vars.params as Record<string, Record<string, Tensor>>;
  const trained = {
    params: {
      ...params,
      lif: { ...params.lif, tau: array(trainedLif) },
      li: { ...params.li, tau: array([0.033]).reshape([]) },
    },
    state: vars.state,
  };
  const x = random.normal(random.key(8), [2, 30, 5]).mul(3);
  const want = values(model.apply(trained.params, x, { training: false }, trained.state).y);
  const back = await nir.load(await nir.saveToBytes(model, trained, { dt }), { dt, discretisation: 'exact' });
  const tauOf = (name: string): number[] => Array.from(((back.graph.nodes[name] as NirLeafNode).params.tau as nir.NirArray).values);
  t.same(tauOf('lif'), trainedLif.map(Math.fround), 'the LIF node holds the learned per-unit tau');
  t.same(tauOf('li'), new Array<number>(4).fill(Math.fround(0.033)), 'the LI node holds the learned shared tau, one per unit');
  t.same(
    values(back.model.apply(back.variables.params, x, { training: false }, {}).y),
    want,
    'the loaded file runs as the trained model, bit for bit',
  );
  const negative = {
    params: { ...trained.params, lif: { ...params.lif, tau: array([0.004, -0.5, 0.01, 0.01, 0.01, 0.01]) } },
    state: vars.state,
  };
  await t.rejects(nir.saveToBytes(model, negative, { dt }), /'lif'.*tau -0.5 is not a positive time constant/);
});
