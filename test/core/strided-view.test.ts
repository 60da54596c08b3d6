// StridedView (core/strided-view.ts) against the scijs `ndarray` package it replaces: random chains
// of lo / hi / step / transpose / pick give the same shape, stride, offset, size, order and
// elements; assignStrided copies like ndarray-ops' assign.
import fc from 'fast-check';
import t from 'tap';
import ndarray from 'ndarray';
import { StridedView, assignStrided } from '../../core/strided-view.js';

const opArb = fc.record({
  k: fc.constantFrom('lo' as const, 'hi' as const, 'step' as const, 'transpose' as const, 'pick' as const),
  args: fc.array(fc.integer({ min: -3, max: 4 }), { maxLength: 4 }),
});

function elements(v: { shape: number[]; get(...i: number[]): number }): number[] {
  const out: number[] = [];
  const idx = new Array<number>(v.shape.length).fill(0);
  if (v.shape.some((n) => n <= 0)) return out;
  for (;;) {
    out.push(v.get(...idx));
    let d = idx.length - 1;
    while (d >= 0 && ++idx[d] === v.shape[d]) idx[d--] = 0;
    if (d < 0) return out;
  }
}

t.test('view operations match scijs ndarray', async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 }),
      fc.array(opArb, { maxLength: 4 }),
      (shape, ops) => {
        const size = shape.reduce((a, b) => a * b, 1);
        const data = Float32Array.from({ length: size }, (_, i) => i);
        let ref = ndarray(data, shape.slice());
        let ours = new StridedView(data, shape.slice(), ref.stride.slice(), 0);
        for (const op of ops) {
          const args = op.args.slice(0, ref.shape.length);
          // Keep to what the scijs views accept: in-range lo/hi/pick indices, nonzero steps, permutations.
          if (op.k === 'transpose') {
            const perm = ref.shape.map((_, i) => i);
            args.forEach((a, i) => {
              const j = Math.abs(a) % perm.length;
              [perm[i], perm[j]] = [perm[j], perm[i]];
            });
            ref = ref.transpose(...perm);
            ours = ours.transpose(...perm);
            continue;
          }
          if (op.k === 'step' && args.some((a) => a === 0)) continue;
          if ((op.k === 'lo' || op.k === 'pick') && args.some((a, d) => a >= ref.shape[d])) continue;
          // scijs's hi does not clamp: a bound past the shape makes a view that reads outside its buffer.
          if (op.k === 'hi' && args.some((a, d) => a > ref.shape[d])) continue;
          // Picking every axis leaves a 0-d view, which scijs represents differently (no offset, size 0).
          if (op.k === 'pick' && (ref.shape.length === 1 || ref.shape.every((_, d) => args[d] !== undefined && args[d] >= 0))) continue;
          ref = ref[op.k](...args);
          ours = ours[op.k](...args);
        }
        t.same(
          [ours.shape, ours.stride, ours.offset, ours.size, ours.dimension],
          [ref.shape, ref.stride, ref.offset, ref.size, ref.dimension],
        );
        t.same(elements(ours), elements(ref));
        if (ref.shape.length > 0 && new Set(ref.stride.map(Math.abs)).size === ref.stride.length) t.same(ours.order, ref.order);
      },
    ),
    { numRuns: 1000 },
  );
});

t.test('assignStrided copies between any strided views', async (t) => {
  const src = new StridedView(
    Float32Array.from({ length: 24 }, (_, i) => i),
    [2, 3, 4],
    [12, 4, 1],
    0,
  )
    .transpose(2, 0, 1)
    .step(-1, 1, 2);
  const dst = new StridedView(new Float32Array(40), [4, 2, 2], [10, 5, 2], 1);
  assignStrided(dst, src);
  t.same(elements(dst), elements(src));
  t.throws(() => assignStrided(dst, src.hi(1)), /shapes differ/);
});
