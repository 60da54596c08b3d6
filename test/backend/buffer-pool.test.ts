/**
 * The buffer pool (core/backend/pool.ts) and the reference counting that compiled programs use to
 * give intermediates back (core/backend/cpu-compile.ts): results kept from many calls, including
 * views of intermediates returned as outputs, stay intact; a scan inside jit keeps every call's
 * results; arguments (also ones that came out of earlier calls, as in a training loop, and
 * closed-over constants) are never written; takeBuffer / giveBuffer / clearBufferPool directly.
 */
import t from 'tap';
import { rng } from './fixtures/rng.js';
import { sameBits } from './fixtures/compare.js';
import {
  add,
  broadcastTo,
  fromTyped,
  jit,
  matmul,
  mul,
  reshape,
  scan,
  slice,
  sub,
  tanh,
  transpose,
  type NDArray,
  type Tensor,
} from '../../core/index.js';
import { clearBufferPool, giveBuffer, poolStats, recyclable, takeBuffer } from '../../core/backend/pool.js';

const fr = Math.fround;

function randomF32(n: number, next: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale);
}

/** Row-major float64 product of float32 data, rounded to float32 (a reference independent of the library). */
function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float32Array {
  const c = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
      c[i * n + j] = s;
    }
  return c;
}

function transposeRef(a: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j];
  return out;
}

/** First index where |got - want| > tol * (1 + |want|), or -1. */
function firstOff(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): number {
  if (got.length !== want.length) return 0;
  for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])))) return i;
  return -1;
}

const vals = (x: Tensor): Float32Array => x.toTyped() as Float32Array;

t.test('views of intermediates returned as outputs stay intact across many calls', async (t) => {
  const N = 32; // [32, 32]: 1024 elements, above the pool's minimum size
  const f = jit((x: Tensor, w: Tensor) => {
    const a = add(mul(x, 2), 1); // intermediate
    const m = matmul(a, w); // intermediate (a kernel output)
    const tt = sub(m, x); // output, with views of it as outputs too
    const u = mul(transpose(m), 3); // a view of an intermediate feeding a group
    const mS = slice(m, [1, 2], [30, 29]); // a view of an intermediate (m is not an output itself)
    const z = matmul(transpose(tt), a); // more same-size buffers taken after m and a are released
    return { t: tt, tT: transpose(tt), tR: reshape(tt, [16, 64]), u, mS, z, aR: reshape(a, [N * N]) };
  });
  // Another program with same-size intermediates runs in between, competing for the same buffers.
  const g = jit((x: Tensor) => {
    const p = add(matmul(x, x), 1);
    const q = mul(matmul(p, x), 0.5);
    return sub(q, p);
  });
  const next = rng(11);
  const kept: { x: Float32Array; w: Float32Array; out: Record<string, Tensor> }[] = [];
  const reused0 = poolStats.reused;
  const seen = new Set<unknown>();
  let distinct = true;
  for (let call = 0; call < 40; call++) {
    const x = randomF32(N * N, next);
    const w = randomF32(N * N, next, 0.25);
    const out = f(fromTyped(x, [N, N]), fromTyped(w, [N, N])) as Record<string, Tensor>;
    // Every output buffer is new (nothing handed out again while a kept result holds it).
    for (const k of ['t', 'u', 'mS', 'z', 'aR']) {
      const data = (out[k] as NDArray).data;
      if (seen.has(data)) distinct = false;
      seen.add(data);
    }
    kept.push({ x, w, out });
    g(fromTyped(randomF32(N * N, next, 0.1), [N, N]));
  }
  t.ok(distinct, 'no output buffer is shared between kept results');
  t.ok(poolStats.reused > reused0, `buffers were recycled during the calls (${poolStats.reused - reused0})`);
  let bad = '';
  kept.forEach(({ x, w, out }, call) => {
    if (bad) return;
    const a = Float32Array.from(x, (v) => fr(fr(v * 2) + 1));
    const m = matmulRef(a, w, N, N, N);
    const tt = Float32Array.from(m, (v, i) => fr(v - x[i]));
    const u = Float32Array.from(transposeRef(m, N, N), (v) => fr(v * 3));
    const mS = new Float32Array(30 * 29);
    for (let i = 0; i < 30; i++) for (let j = 0; j < 29; j++) mS[i * 29 + j] = m[(i + 1) * N + j + 2];
    const z = matmulRef(transposeRef(tt, N, N), a, N, N, N);
    const expected: [string, Float32Array, number[]][] = [
      ['t', tt, [N, N]],
      ['tT', transposeRef(tt, N, N), [N, N]],
      ['tR', tt, [16, 64]],
      ['u', u, [N, N]],
      ['mS', mS, [30, 29]],
      ['z', z, [N, N]],
      ['aR', a, [N * N]],
    ];
    for (const [k, want, shape] of expected) {
      const got = out[k];
      if (got.shape.join() !== shape.join()) bad = `call ${call} ${k}: shape [${got.shape}]`;
      const i = firstOff(vals(got), want, 1e-4);
      if (i >= 0) bad = `call ${call} ${k}[${i}]: ${vals(got)[i]}, expected ${want[i]}`;
      if (bad) return;
    }
  });
  t.equal(bad, '', 'every kept result equals its independently computed value');
  // Views share their source's buffer.
  const last = kept[kept.length - 1].out;
  t.equal((last.tT as NDArray).data, (last.t as NDArray).data, 'transpose output is a view of t');
  t.equal((last.tR as NDArray).data, (last.t as NDArray).data, 'reshape output is a view of t');
});

t.test('scan over 20 steps inside jit: results of every call kept and checked against a JS loop', async (t) => {
  const B = 16;
  const H = 32; // carry [16, 32]: 512 elements (pooled)
  const T = 20;
  const f = jit((h0: Tensor, xs: Tensor, W: Tensor) =>
    scan(
      (h: Tensor, x: Tensor): [Tensor, Tensor] => {
        const hn = tanh(add(matmul(h, W), x)); // the matmul output is an intermediate of every step
        return [hn, mul(hn, 2)];
      },
      h0,
      xs,
    ),
  );
  const next = rng(22);
  const kept: { h0: Float32Array; xs: Float32Array; W: Float32Array; out: [Tensor, Tensor] }[] = [];
  for (let call = 0; call < 8; call++) {
    const h0 = randomF32(B * H, next);
    const xs = randomF32(T * B * H, next, 0.5);
    const W = randomF32(H * H, next, 0.3);
    kept.push({ h0, xs, W, out: f(fromTyped(h0, [B, H]), fromTyped(xs, [T, B, H]), fromTyped(W, [H, H])) as [Tensor, Tensor] });
  }
  // The eager scan (a compiled body, not inside jit) gives the same.
  const e = kept[0];
  const eager = scan(
    (h: Tensor, x: Tensor): [Tensor, Tensor] => {
      const hn = tanh(add(matmul(h, fromTyped(e.W, [H, H])), x));
      return [hn, mul(hn, 2)];
    },
    fromTyped(e.h0, [B, H]) as Tensor,
    fromTyped(e.xs, [T, B, H]) as Tensor,
  );
  let bad = '';
  kept.forEach(({ h0, xs, W, out }, call) => {
    if (bad) return;
    let h: Float32Array = h0;
    const ys = new Float32Array(T * B * H);
    for (let s = 0; s < T; s++) {
      const hw = matmulRef(h, W, B, H, H);
      h = Float32Array.from(hw, (v, i) => fr(Math.tanh(fr(v + xs[s * B * H + i]))));
      h.forEach((v, i) => (ys[s * B * H + i] = fr(v * 2)));
    }
    const [hT, ysGot] = out;
    if (hT.shape.join() !== `${B},${H}` || ysGot.shape.join() !== `${T},${B},${H}`)
      bad = `call ${call}: shapes [${hT.shape}] [${ysGot.shape}]`;
    const i = firstOff(vals(hT), h, 1e-4);
    if (i >= 0) bad = `call ${call} carry[${i}]: ${vals(hT)[i]} vs ${h[i]}`;
    const j = firstOff(vals(ysGot), ys, 1e-4);
    if (j >= 0) bad = `call ${call} ys[${j}]: ${vals(ysGot)[j]} vs ${ys[j]}`;
  });
  t.equal(bad, '', 'every call: final carry and stacked ys match the JS loop');
  t.ok(sameBits(vals(eager[0]), vals(kept[0].out[0])) && sameBits(vals(eager[1]), vals(kept[0].out[1])), 'eager scan == jitted scan');
});

t.test('scan carries that are views, shared, unchanged or xs slices survive carry donation', async (t) => {
  const N = 16; // [16, 16]: 256 elements (pooled)
  const T = 20;
  type C6 = [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
  const body = (carry: C6, x: Tensor): [C6, Tensor] => {
    const [a, b, c, , e, f] = carry;
    const a2 = transpose(add(a, x)); // a view of this step's intermediate
    const y = add(mul(a2, 2), c);
    // b unchanged (the caller's buffer), c becomes the xs slice (a view of xs), d shares a2's
    // buffer; e and f swap, so at step 1 e holds the caller's initial f, read and then dropped.
    return [[a2, b, x, a2, f, add(e, x)], y];
  };
  const f = jit((init: C6, xs: Tensor) => scan(body, init, xs));
  // Outputs kept in the kernels' arena: pool buffers, as a training loop's variables are.
  const own = jit((v: Tensor) => mul(v, 1)).donating([], { keepInBackend: true });
  const next = rng(44);
  const kept: { init: Float32Array[]; xs: Float32Array; args: C6; out: [C6, Tensor] }[] = [];
  for (let call = 0; call < 6; call++) {
    const init = [0, 1, 2, 3, 4, 5].map(() => randomF32(N * N, next));
    const xs = randomF32(T * N * N, next);
    // Initial carries in pool buffers (outputs of a compiled program), as in a training loop.
    const args = init.map((d) => own(fromTyped(d, [N, N]))) as unknown as C6;
    const xsArr = own(fromTyped(xs, [T, N, N])) as Tensor;
    kept.push({ init, xs, args, out: (call % 2 ? scan(body, args, xsArr) : f(args, xsArr)) as [C6, Tensor] });
  }
  let bad = '';
  kept.forEach(({ init, xs, args, out }, call) => {
    if (bad) return;
    if (!args.every((x, i) => sameBits(vals(x), init[i]))) bad = `call ${call}: an initial carry was written`;
    let [a, b, c, d, e, f] = init;
    const ys = new Float32Array(T * N * N);
    for (let s = 0; s < T; s++) {
      const x = xs.subarray(s * N * N, (s + 1) * N * N);
      const a2 = transposeRef(
        Float32Array.from(a, (v, i) => fr(v + x[i])),
        N,
        N,
      );
      a2.forEach((v, i) => (ys[s * N * N + i] = fr(fr(v * 2) + c[i])));
      // eslint-disable-next-line no-self-assign -- b passes through the step unchanged, as in the scan body
      [a, b, c, d, e, f] = [a2, b, Float32Array.from(x), a2, f, Float32Array.from(e, (v, i) => fr(v + x[i]))];
    }
    const [[ga, gb, gc, gd, ge, gf], gys] = out;
    const checks: [string, Tensor, Float32Array][] = [
      ['a', ga, a],
      ['b', gb, b],
      ['c', gc, c],
      ['d', gd, d],
      ['e', ge, e],
      ['f', gf, f],
      ['ys', gys, ys],
    ];
    for (const [name, got, want] of checks) {
      if (!sameBits(vals(got), want)) {
        bad = `call ${call} (${call % 2 ? 'eager' : 'jit'}) ${name} differs`;
        return;
      }
    }
  });
  t.equal(bad, '', 'every call: initial carries untouched; final carries and ys equal the JS loop bit for bit');
});

t.test('arguments are never written, also when they are outputs of earlier calls (a training loop)', async (t) => {
  const S = 64;
  const D = 32;
  const next = rng(33);
  const x = fromTyped(randomF32(S * D, next), [S, D]);
  // A closed-over constant that itself came out of a compiled program (so its buffer is recyclable).
  const scale = jit((a: Tensor) => mul(add(a, 1), 0.5)).donating([], { keepInBackend: true })(
    fromTyped(randomF32(D * D, next, 0.1), [D, D]),
  ) as NDArray;
  t.ok(recyclable(scale.data), 'the constant lives in a pool buffer');
  // A stride-0 input (a bias broadcast over rows, as data's tileTime makes).
  const bias = broadcastTo(fromTyped(randomF32(D, next, 0.01), [1, D]), [S, D]) as NDArray;
  const step = (p: Tensor, m: Tensor, x: Tensor, b: Tensor): Tensor[] => {
    const err = sub(add(matmul(x, p), b), x); // [S, D]
    const g = mul(matmul(transpose(x), err), 1 / S); // [D, D]
    // Views of arguments and of the constant: their slots are released inside the program.
    const m2 = add(mul(m, 0.9), mul(g, transpose(scale)));
    const p2 = sub(transpose(transpose(p)), mul(m2, 0.01));
    return [p2, m2, transpose(m2)];
  };
  const jstep = jit(step);
  let p: Tensor = fromTyped(randomF32(D * D, next, 0.1), [D, D]);
  let m: Tensor = fromTyped(new Float32Array(D * D), [D, D]);
  let pE: Tensor = p;
  let mE: Tensor = m;
  const scaleCopy = vals(scale);
  const xCopy = vals(x);
  const biasCopy = vals(bias);
  const snapshots: [Tensor, Float32Array][] = [];
  let viewBad = false;
  for (let call = 0; call < 50; call++) {
    snapshots.push([p, vals(p)], [m, vals(m)]);
    // Sometimes pass the previous call's transposed view back in (a view of an earlier output).
    const [p2, m2, m2T] = jstep.donating([], { keepInBackend: true })(p, call % 5 === 4 ? transpose(m) : m, x, bias) as Tensor[];
    if (call % 5 === 4) {
      // With transpose(m) passed in, the reference must see the same value.
      [pE, mE] = step(pE, transpose(mE), x, bias);
    } else [pE, mE] = step(pE, mE, x, bias);
    if ((m2T as NDArray).data !== (m2 as NDArray).data) viewBad = true;
    snapshots.push([m2T, vals(m2T)]);
    p = p2;
    m = m2;
  }
  let changed = -1;
  snapshots.forEach(([arr, copy], i) => {
    if (changed < 0 && !sameBits(vals(arr), copy)) changed = i;
  });
  t.equal(changed, -1, 'every argument (and kept view) still holds the values it had when passed in');
  t.ok(sameBits(vals(x), xCopy), 'x unchanged');
  t.ok(sameBits(vals(bias), biasCopy), 'the broadcast argument unchanged');
  t.ok(sameBits(vals(scale), scaleCopy), 'the closed-over constant unchanged');
  t.notOk(viewBad, 'the transposed output is a view of m2');
  // The loop's end point equals the same loop run eagerly (no recycling there).
  t.equal(firstOff(vals(p), vals(pE), 1e-5), -1, 'final p matches the eager loop');
  t.equal(firstOff(vals(m), vals(mE), 1e-5), -1, 'final m matches the eager loop');
  // Broadcast (stride-0) values whose compact data is a pool buffer, as a closed-over constant and
  // as an argument: inside the program each enters as a broadcast_to view that is released early.
  const row = jit((v: Tensor) => add(v, 1)).donating([], { keepInBackend: true })(fromTyped(randomF32(512, next), [1, 512])) as NDArray;
  t.ok(recyclable(row.data), 'the broadcast source lives in a pool buffer');
  const rowCopy = vals(row);
  const useConst = jit((a: Tensor) => mul(a, broadcastTo(row, [8, 512])));
  const useArg = jit((a: Tensor, r: Tensor) => mul(a, r));
  const churn = jit((v: Tensor) => {
    const w = add(v, 3); // a [1, 512] intermediate: would be written into a wrongly recycled row buffer
    return mul(w, w);
  });
  const ones8 = fromTyped(new Float32Array(8 * 512).fill(1), [8, 512]);
  for (let i = 0; i < 20; i++) {
    useConst(ones8);
    useArg(ones8, broadcastTo(row, [8, 512]));
    churn(fromTyped(randomF32(512, next), [1, 512]));
  }
  t.ok(sameBits(vals(row), rowCopy), 'a broadcast constant / argument backed by a pool buffer is not recycled');
  t.ok(sameBits(vals(useConst(ones8) as Tensor), vals(broadcastTo(row, [8, 512]))), 'and still reads right');

  // Passing the same array twice as arguments, 50 times.
  const twice = jit((a: Tensor, b: Tensor) => {
    const s = add(a, b);
    const q = matmul(s, a);
    return sub(q, s);
  });
  const a = fromTyped(randomF32(D * D, next), [D, D]);
  const aCopy = vals(a);
  let r: Tensor = a;
  for (let i = 0; i < 50; i++) r = twice(a, a) as Tensor;
  t.ok(sameBits(vals(a), aCopy), 'an array passed as two arguments is not written');
  const s2 = Float32Array.from(aCopy, (v) => fr(v + v));
  const want = Float32Array.from(matmulRef(s2, aCopy, D, D, D), (v, i) => fr(v - s2[i]));
  t.equal(firstOff(vals(r), want, 1e-4), -1, 'and the result is right');
});

t.test('takeBuffer / giveBuffer / clearBufferPool', async (t) => {
  clearBufferPool();
  const n = 1000;

  t.test('a buffer given back twice is handed out only once', async (t) => {
    clearBufferPool();
    const a = takeBuffer('float32', n);
    t.ok(recyclable(a), 'from takeBuffer: recyclable');
    t.ok(a instanceof Float32Array && a.length === n);
    const r0 = poolStats.returned;
    giveBuffer(a, 'float32');
    giveBuffer(a, 'float32');
    t.equal(poolStats.returned - r0, 1, 'the second give is ignored');
    const b1 = takeBuffer('float32', n);
    const b2 = takeBuffer('float32', n);
    t.equal(b1, a, 'handed out again');
    t.not(b2, a, 'but only once');
    // Once handed out again it may go back once more.
    giveBuffer(a, 'float32');
    t.equal(takeBuffer('float32', n), a, 'a second round trip');
    t.not(takeBuffer('float32', n), a);
  });

  t.test('buffers not from takeBuffer, and small ones, are never pooled', async (t) => {
    clearBufferPool();
    const foreign = new Float32Array(n);
    t.notOk(recyclable(foreign));
    const r0 = poolStats.returned;
    giveBuffer(foreign, 'float32');
    t.equal(poolStats.returned, r0, 'not taken back');
    t.not(takeBuffer('float32', n), foreign, 'never handed out');
    const small = takeBuffer('float32', 10);
    t.notOk(recyclable(small), 'below the minimum size: not tracked');
    giveBuffer(small, 'float32');
    t.not(takeBuffer('float32', 10), small);
    // A slice or a subarray view of a pooled buffer is not the pooled buffer.
    const big = takeBuffer('float32', n);
    giveBuffer(big.subarray(0, n), 'float32');
    t.equal(poolStats.returned, r0, 'a subarray of a pooled buffer is not taken back');
  });

  t.test('buffers are keyed by dtype and size', async (t) => {
    clearBufferPool();
    const a = takeBuffer('float32', n);
    giveBuffer(a, 'float32');
    t.not(takeBuffer('float32', n + 1), a, 'another size');
    const i = takeBuffer('int32', n);
    t.ok(i instanceof Int32Array, 'int32 buffer');
    t.not(i as unknown, a, 'another dtype');
    t.equal(takeBuffer('float32', n), a, 'the right key gets it');
  });

  t.test('clearBufferPool empties the pool', async (t) => {
    clearBufferPool();
    const a = takeBuffer('float32', n);
    const b = takeBuffer('float64', n);
    giveBuffer(a, 'float32');
    giveBuffer(b, 'float64');
    clearBufferPool();
    const f0 = poolStats.fresh;
    t.not(takeBuffer('float32', n), a);
    t.not(takeBuffer('float64', n), b);
    t.equal(poolStats.fresh - f0, 2, 'both fresh');
  });

  t.test('the idle pool is bounded', async (t) => {
    clearBufferPool();
    const big = 6 * 1024 * 1024; // 24 MiB of float32 each; the pool keeps at most 64 MiB idle
    const bufs = [takeBuffer('float32', big), takeBuffer('float32', big), takeBuffer('float32', big)];
    const r0 = poolStats.returned;
    for (const b of bufs) giveBuffer(b, 'float32');
    t.equal(poolStats.returned - r0, 2, 'the third does not fit');
    const again = [takeBuffer('float32', big), takeBuffer('float32', big), takeBuffer('float32', big)];
    t.equal(again.filter((b) => bufs.includes(b)).length, 2, 'two come back from the pool');
    t.equal(new Set(again).size, 3, 'all distinct');
    clearBufferPool();
  });
});
