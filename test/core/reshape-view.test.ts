/**
 * Reshape of a strided view without a copy (core/shape.ts reshapeStrides, numpy's no-copy
 * reshape): for random views (crops, transposes, broadcasts) and random reshapes of them, the
 * result's elements in row-major order equal those of the same reshape of a contiguous copy; the
 * view is taken exactly when the layout allows (checked against a brute-force search here), and a
 * crop whose axis is split (the average pool of an odd-sized map) is a view of the same buffer.
 */
import fc from 'fast-check';
import t from 'tap';
import { broadcastTo, fromTyped, reshape, slice, transpose, type NDArray } from '../../core/index.js';
import { reshapeStrides } from '../../core/shape.js';

const vals = (x: NDArray): number[] => Array.from(x.toTyped() as ArrayLike<number>);

/** All factorizations of n into `parts` factors >= 1 (small n only). */
function factorizations(n: number, parts: number): number[][] {
  if (parts === 1) return [[n]];
  const out: number[][] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) for (const rest of factorizations(n / d, parts - 1)) out.push([d, ...rest]);
  return out;
}

/** Whether some strides for `shape` reproduce the view's element offsets in row-major order (brute force). */
function viewPossible(offsets: number[], shape: number[]): boolean {
  // Strides are determined by single steps along each axis from the origin, when those exist.
  const strides = shape.map((d, i) => {
    if (d === 1) return 0;
    const step = shape.slice(i + 1).reduce((a, b) => a * b, 1);
    return offsets[step] - offsets[0];
  });
  let k = 0;
  const idx = new Array<number>(shape.length).fill(0);
  for (;;) {
    const off = offsets[0] + idx.reduce((a, v, i) => a + v * strides[i], 0);
    if (off !== offsets[k]) return false;
    k++;
    let d = shape.length - 1;
    while (d >= 0 && ++idx[d] === shape[d]) idx[d--] = 0;
    if (d < 0) return true;
  }
}

t.test('reshapes of random strided views: same elements as reshaping a copy; a view exactly when one exists', (t) => {
  let views = 0;
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 }),
      fc.constantFrom('crop', 'transpose', 'broadcast', 'none'),
      fc.integer({ min: 1, max: 4 }),
      fc.nat(),
      (dims, kind, parts, pick) => {
        const base = fromTyped(
          Float64Array.from({ length: dims.reduce((a, b) => a * b, 1) * 2 }, (_, i) => i + 1),
          [...dims.slice(0, -1), dims[dims.length - 1] * 2],
          'float64',
        );
        let v: NDArray;
        if (kind === 'crop')
          v = slice(
            base,
            dims.map(() => 0),
            dims,
          ) as NDArray;
        else if (kind === 'transpose')
          v = transpose(
            slice(
              base,
              dims.map(() => 0),
              dims,
            ),
            dims.map((_, i) => dims.length - 1 - i),
          ) as NDArray;
        else if (kind === 'broadcast')
          v = broadcastTo(slice(base, [0, ...dims.slice(1).map(() => 0)], [1, ...dims.slice(1)]), dims) as NDArray;
        else v = base;
        const options = factorizations(v.size, parts);
        const shape = options[pick % options.length];
        const y = reshape(v, shape) as NDArray;
        const expected = vals(reshape(fromTyped(v.toTyped(), v.shape, 'float64'), shape) as NDArray);
        const strides = reshapeStrides(v.shape, v.strides, shape);
        // Offsets of the view's elements in row-major order.
        const offsets: number[] = [];
        const idx = new Array<number>(v.ndim).fill(0);
        for (let k = 0; k < v.size; k++) {
          offsets.push(v.offset + idx.reduce((a, x, i) => a + x * v.strides[i], 0));
          let d = v.ndim - 1;
          while (d >= 0 && ++idx[d] === v.shape[d]) idx[d--] = 0;
        }
        if (strides !== null) views++;
        return (
          JSON.stringify(vals(y)) === JSON.stringify(expected) &&
          y.shape.join() === shape.join() &&
          (strides !== null) === (v.size === 1 || viewPossible(offsets, shape)) &&
          (strides === null || y.data === v.data)
        );
      },
    ),
    { numRuns: 400, seed: 21 },
  );
  t.ok(views > 100, `${views} of 400 reshapes were views`);
  t.end();
});

t.test('a cropped map split into pooling windows is a view of the same buffer', (t) => {
  const map = fromTyped(
    Float32Array.from({ length: 2 * 11 * 11 * 3 }, (_, i) => i),
    [2, 11, 11, 3],
  );
  const crop = slice(map, [0, 0, 0, 0], [2, 10, 10, 3]) as NDArray;
  const windows = reshape(crop, [2, 5, 2, 5, 2, 3]) as NDArray;
  t.equal(windows.data, map.data, 'no copy');
  t.same(windows.strides, [363, 66, 33, 6, 3, 1]);
  t.same(vals(windows), vals(reshape(fromTyped(crop.toTyped(), crop.shape), [2, 5, 2, 5, 2, 3]) as NDArray));
  t.end();
});
