/**
 * spiketrace against the NIR reference implementation (Python, ../shared/nir/python): graphs
 * written by it load here, run, and come back through our writer equal as it reads them (nodes,
 * edges, parameter values to float32, shapes); graphs exported from spiketrace models pass its
 * reader, type checks included.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { random } from '../../core/index.js';
import { averagePooling2d, conv2d, dense, resetLayerNames, sequential, timeDistributed, flatten } from '../../nn/index.js';
import { lowpass, alpha } from '../../spiking/index.js';
import * as nir from '../../spiking/nir/index.js';
import { nirPythonOrSkip, runPython } from './fixtures/nir-python.js';

const python = nirPythonOrSkip();

/** Writes the test graphs with the reference package: every importable node type, recurrence, nesting, fan-in/out. */
const WRITE_GRAPHS = String.raw`
import sys, numpy as np, nir
nir.version = '1.0.0'
out = sys.argv[1]
rng = np.random.default_rng(7)
def a(*shape, lo=0.5, hi=1.5, dtype=np.float64): return rng.uniform(lo, hi, shape).astype(dtype)
n = 3
nodes = {
  'in': nir.Input(np.array([n])),
  'aff': nir.Affine(a(n, n, lo=-1), a(n, lo=-0.1, hi=0.1)),
  'lif': nir.LIF(tau=a(n, lo=0.005, hi=0.02), r=a(n), v_leak=a(n, lo=-0.1, hi=0.1), v_threshold=a(n), v_reset=a(n, lo=-0.2, hi=0.0)),
  'lin': nir.Linear(a(n, n, lo=-1)),
  'cubalif': nir.CubaLIF(tau_syn=a(n, lo=0.002, hi=0.01), tau_mem=a(n, lo=0.005, hi=0.02), r=a(n), v_leak=a(n, lo=0, hi=0), v_threshold=a(n), w_in=a(n)),
  'scale': nir.Scale(a(n, dtype=np.float32)),
  'li': nir.LI(tau=a(n, lo=0.01, hi=0.03), r=a(n), v_leak=a(n, lo=0, hi=0)),
  'thr': nir.Threshold(a(n, lo=0.0, hi=0.1)),
  'if': nir.IF(r=a(n), v_threshold=a(n, lo=0.005, hi=0.01)),
  'delay': nir.Delay(np.array([0.0, 0.002, 0.003])),
  'cubali': nir.CubaLI(tau_syn=a(n, lo=0.002, hi=0.01), tau_mem=a(n, lo=0.005, hi=0.02), r=a(n), v_leak=a(n, lo=0, hi=0)),
  'i': nir.I(r=a(n)),
  'out': nir.Output(np.array([n])),
}
names = list(nodes)
nir.write(out + '/chain.nir', nir.NIRGraph(nodes=nodes, edges=[(names[i], names[i + 1]) for i in range(len(names) - 1)]))

rec = {
  'in': nir.Input(np.array([2])),
  'lif': nir.CubaLIF(tau_syn=a(2, lo=0.002, hi=0.01), tau_mem=a(2, lo=0.005, hi=0.02), r=a(2), v_leak=a(2, lo=0, hi=0), v_threshold=a(2, lo=0.05, hi=0.1)),
  'w_rec': nir.Linear(a(2, 2, lo=-1)),
  'out': nir.Output(np.array([2])),
}
nir.write(out + '/recurrent.nir', nir.NIRGraph(nodes=rec, edges=[('in', 'lif'), ('lif', 'w_rec'), ('w_rec', 'lif'), ('lif', 'out')], type_check=False))

sub = nir.NIRGraph(nodes={'i': nir.Input(np.array([4])), 'aff': nir.Affine(a(2, 4, lo=-1), a(2)), 'o': nir.Output(np.array([2]))}, edges=[('i', 'aff'), ('aff', 'o')])
nested = {'in': nir.Input(np.array([4])), 'sub': sub, 'lif': nir.LIF(tau=a(2, lo=0.005, hi=0.02), r=a(2), v_leak=a(2, lo=0, hi=0), v_threshold=a(2, lo=0.1, hi=0.2)), 'out': nir.Output(np.array([2]))}
nir.write(out + '/nested.nir', nir.NIRGraph(nodes=nested, edges=[('in', 'sub'), ('sub', 'lif'), ('lif', 'out')]))

fl = nir.NIRGraph.from_list(nir.Flatten(input_type=np.array([2, 3]), start_dim=0, end_dim=-1), nir.Affine(a(4, 6, lo=-1), a(4)), nir.LI(tau=a(4, lo=0.01, hi=0.02), r=a(4), v_leak=a(4, lo=0, hi=0)))
nir.write(out + '/flatten.nir', fl)

fan = {'in': nir.Input(np.array([3])), 'a1': nir.Linear(a(2, 3, lo=-1)), 'a2': nir.Affine(a(2, 3, lo=-1), a(2)), 'lif': nir.LIF(tau=a(2, lo=0.005, hi=0.02), r=a(2), v_leak=a(2, lo=0, hi=0), v_threshold=a(2, lo=0.1, hi=0.2)), 'out': nir.Output(np.array([2]))}
conv = {
  'in': nir.Input(np.array([2, 6, 6])),
  'conv': nir.Conv2d(input_shape=(6, 6), weight=a(3, 2, 3, 3, lo=-1), stride=1, padding=1, dilation=1, groups=1, bias=a(3, lo=-0.1, hi=0.1)),
  'lif': nir.LIF(tau=a(3, 6, 6, lo=0.005, hi=0.02), r=a(3, 6, 6), v_leak=a(3, 6, 6, lo=0, hi=0), v_threshold=a(3, 6, 6, lo=0.05, hi=0.1)),
  'pool': nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
  'flat': nir.Flatten(input_type=np.array([3, 3, 3]), start_dim=0, end_dim=-1),
  'aff': nir.Affine(a(4, 27, lo=-1), a(4)),
  'out': nir.Output(np.array([4])),
}
cnames = list(conv)
nir.write(out + '/conv.nir', nir.NIRGraph(nodes=conv, edges=[(cnames[i], cnames[i + 1]) for i in range(len(cnames) - 1)], type_check=False))
nir.write(out + '/fan.nir', nir.NIRGraph(nodes=fan, edges=[('in', 'a1'), ('in', 'a2'), ('a1', 'lif'), ('a2', 'lif'), ('lif', 'out')]))
print('ok')
`;

/** Reads a file with the reference reader and prints a canonical JSON dump: types, sorted edges, parameters as float32. */
const DUMP = String.raw`
import sys, json, numpy as np, nir
def dump(node):
  d = node.to_dict()
  out = {'type': d['type']}
  if d['type'] == 'NIRGraph':
    out['nodes'] = {k: dump(v) for k, v in node.nodes.items()}
    out['edges'] = sorted([list(e) for e in node.edges])
    return out
  params = {}
  for k, v in d.items():
    if k in ('type', 'metadata'): continue
    arr = np.asarray(v)
    if arr.dtype.kind == 'f': arr = arr.astype(np.float32)
    params[k] = {'shape': list(arr.shape), 'values': [float(x) for x in arr.ravel()]}
  out['params'] = params
  return out
check = sys.argv[1] == 'check'
print(json.dumps({p: dump(nir.read(p, type_check=check)) for p in sys.argv[2:]}))
`;

type Dump = {
  type: string;
  nodes?: Record<string, Dump>;
  edges?: string[][];
  params?: Record<string, { shape: number[]; values: number[] }>;
};

if (python !== null) {
  const dir = mkdtempSync(join(tmpdir(), 'nir-py-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  runPython(python, WRITE_GRAPHS, [dir]);

  const names = ['chain', 'recurrent', 'nested', 'flatten', 'conv', 'fan'];
  // One reader run for every file (numpy's start costs more than the reads).
  let dumps: Promise<Record<string, Dump>> | null = null;
  const dumpAll = (): Promise<Record<string, Dump>> =>
    (dumps ??= Promise.all(names.map((n) => written.get(n)!)).then(
      () =>
        JSON.parse(
          runPython(python, DUMP, ['nocheck', ...names.flatMap((n) => [join(dir, `${n}.nir`), join(dir, `${n}-back.nir`)])]),
        ) as Record<string, Dump>,
    ));
  const written = new Map<string, Promise<void>>();
  for (const name of names) {
    let done!: () => void;
    written.set(name, new Promise<void>((r) => (done = r)));
    t.test(`${name}.nir written by the reference package -> spiketrace -> NIR -> read by the reference: equal`, async (t) => {
      const file = join(dir, `${name}.nir`);
      const { model, variables, graph } = await nir.load(file, { dt: 1e-3 });
      const inShape = model.nir.flat.nodes.get(model.nir.flat.input)!.outShape;
      const x = random.uniform(random.key(1), [2, 25, ...inShape]).mul(2);
      const y = model.apply(variables.params, x, { training: false }, variables.state).y;
      const yv = Array.from(y.toTyped() as Float32Array);
      t.ok(yv.every(Number.isFinite), `it runs (${yv.length} finite outputs)`);
      if (name === 'recurrent')
        t.same(
          model.nir.flat.edges.filter((e) => e.recurrent).map((e) => `${e.from}->${e.to}`),
          ['w_rec->lif'],
        );
      t.ok(Object.keys(graph.nodes).length > 2);
      const back = join(dir, `${name}-back.nir`);
      await nir.save(back, model, variables, { dt: 1e-3 });
      done();
      if (name !== names[names.length - 1]) return;
      const all = await dumpAll();
      for (const n of names)
        t.same(
          all[join(dir, `${n}-back.nir`)],
          all[join(dir, `${n}.nir`)],
          `${n}: nodes, edges, parameter values (float32) and shapes as the reference reads them`,
        );
    });
  }

  t.test('conv.nir (Conv2d -> LIF -> SumPool2d -> Flatten -> Affine) runs as a float64 loop of the same equations', async (t) => {
    await written.get('conv');
    const { model, variables, graph } = await nir.load(join(dir, 'conv.nir'), { dt: 1e-3 });
    const p = (nodeName: string, key: string): number[] => {
      const v = (graph.nodes[nodeName] as nir.NirLeafNode).params[key];
      if (typeof v === 'string') throw new Error(`${nodeName}.${key} is a string`);
      return Array.from(v.values, Math.fround); // the model's params are float32
    };
    const [w, b, tau, r, vLeak, thr, aw, ab] = [
      p('conv', 'weight'),
      p('conv', 'bias'),
      p('lif', 'tau'),
      p('lif', 'r'),
      p('lif', 'v_leak'),
      p('lif', 'v_threshold'),
      p('aff', 'weight'),
      p('aff', 'bias'),
    ];
    const [batch, time, cin, cout, n] = [2, 20, 2, 3, 6];
    const x = random.uniform(random.key(5), [batch, time, cin, n, n], { dtype: 'float64' }).mul(3);
    const xv = x.toTyped() as Float64Array;
    const got = Array.from(model.apply(variables.params, x, { training: false }, variables.state).y.toTyped() as Float64Array);
    const want: number[] = [];
    for (let bi = 0; bi < batch; bi++) {
      const v = new Float64Array(cout * n * n);
      for (let s = 0; s < time; s++) {
        const at = (c: number, i: number, j: number): number =>
          i < 0 || i >= n || j < 0 || j >= n ? 0 : xv[(((bi * time + s) * cin + c) * n + i) * n + j];
        const spikes = new Float64Array(cout * n * n);
        for (let o = 0; o < cout; o++)
          for (let i = 0; i < n; i++)
            for (let j = 0; j < n; j++) {
              let u = b[o];
              for (let c = 0; c < cin; c++)
                for (let ki = 0; ki < 3; ki++)
                  for (let kj = 0; kj < 3; kj++) u += w[((o * cin + c) * 3 + ki) * 3 + kj] * at(c, i + ki - 1, j + kj - 1);
              const e = (o * n + i) * n + j;
              const d = 1 - 1e-3 / tau[e];
              const next = v[e] * d + (1 - d) * vLeak[e] + u * ((1 - d) * r[e]);
              spikes[e] = next > thr[e] ? 1 : 0;
              v[e] = next > thr[e] ? 0 : next;
            }
        const pooled: number[] = [];
        for (let o = 0; o < cout; o++)
          for (let i = 0; i < n / 2; i++)
            for (let j = 0; j < n / 2; j++) {
              let sum = 0;
              for (const [di, dj] of [
                [0, 0],
                [0, 1],
                [1, 0],
                [1, 1],
              ])
                sum += spikes[(o * n + 2 * i + di) * n + 2 * j + dj];
              pooled.push(sum);
            }
        for (let k = 0; k < 4; k++) want.push(pooled.reduce((acc, z, m) => acc + aw[k * 27 + m] * z, ab[k]));
      }
    }
    t.equal(got.length, want.length);
    const err = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
    t.ok(err < 1e-9, `max |error| ${err}`);
    t.ok(
      want.some((_, i) => i > 0 && want[i] !== want[i - 4]),
      'the outputs change over time (some neurons spike)',
    );
  });

  t.test('an exported channels-first conv model passes the reference reader with type checks', async (t) => {
    resetLayerNames();
    const cf = { dataFormat: 'channelsFirst' as const };
    const model = sequential([
      // groups 1: the reference's type inference takes c_in from weight.shape[1] (c_in / groups).
      timeDistributed(conv2d(4, 3, { ...cf, padding: 'same' })),
      timeDistributed(averagePooling2d(2, cf)),
      timeDistributed(flatten()),
      dense(3),
    ]);
    const vars = model.init(random.key(3), [null, 2, 6, 6]);
    const file = join(dir, 'exported-conv.nir');
    await nir.save(file, model, vars, { dt: 1e-3, inputShape: [2, 6, 6] });
    const dumped = (JSON.parse(runPython(python, DUMP, ['check', file])) as Record<string, Dump>)[file];
    const conv = dumped.nodes!.time_distributed;
    t.equal(conv.type, 'Conv2d');
    t.same(conv.params!.weight.shape, [4, 2, 3, 3]);
    t.same(conv.params!.padding.values, [1, 1]);
    t.same(conv.params!.input_shape.values, [6, 6]);
    t.equal(dumped.nodes!.time_distributed_1.type, 'AvgPool2d');
    t.same(dumped.nodes!.time_distributed_1.params!.kernel_size.values, [2, 2]);
    const kernel = Array.from(
      (vars.params as Record<string, Record<string, { toTyped(): Float32Array }>>).time_distributed.kernel.toTyped(),
    );
    // weight[o, c, a, b] = kernel[a, b, c, o]: o = 3, c = 1, a = 1, b = 2.
    t.equal(conv.params!.weight.values[((3 * 2 + 1) * 3 + 1) * 3 + 2], kernel[((1 * 3 + 2) * 2 + 1) * 4 + 3]);
  });

  t.test('spiketrace models exported to NIR pass the reference reader with type checks', async (t) => {
    resetLayerNames();
    const dt = 0.005;
    const model = sequential([
      timeDistributed(flatten()),
      dense(5),
      lowpass(0.02, { dt }),
      dense(3, { useBias: false }),
      alpha(0.01, { dt }),
    ]);
    const vars = model.init(random.key(2), [null, 2, 4]);
    const file = join(dir, 'exported.nir');
    await nir.save(file, model, vars, { dt, inputShape: [2, 4] });
    const dumped = (JSON.parse(runPython(python, DUMP, ['check', file])) as Record<string, Dump>)[file];
    const ours = nir.graphFromModel(model, vars, { dt, inputShape: [2, 4] });
    t.same(Object.keys(dumped.nodes!).sort(), Object.keys(ours.nodes).sort(), 'the same node names');
    t.same(dumped.edges, ours.edges.map((e) => [...e]).sort(), 'the same edges');
    for (const [k, n] of Object.entries(ours.nodes)) {
      const d = dumped.nodes![k];
      t.equal(d.type, n.type, `${k}: type`);
      if (n.type === 'NIRGraph') continue;
      for (const [p, v] of Object.entries(n.params)) {
        if (typeof v === 'string') continue;
        t.same(d.params![p].shape, v.shape, `${k}.${p}: shape`);
        t.same(
          d.params![p].values,
          Array.from(v.values, (x) => (v.dtype.startsWith('float') ? Math.fround(x) : x)),
          `${k}.${p}: values`,
        );
      }
    }
    const kernel = Array.from((vars.params as Record<string, Record<string, { toTyped(): Float32Array }>>).dense.kernel.toTyped());
    t.equal(
      dumped.nodes!.dense.params!.weight.values[1 * 8 + 0],
      kernel[0 * 5 + 1],
      'Affine weight = the dense kernel transposed (out x in)',
    );
  });
}
