/**
 * Threefry-2x32-20 block function: known-answer vectors and input handling.
 */
import t from 'tap';
import { threefry2x32 } from '../../core/prng/index.js';

// Random123 1.09 known-answer vectors (tests/kat_vectors, as shipped in
// Debian's librandom123-doc): lines "threefry2x32 20 CTR0 CTR1 KEY0 KEY1 OUT0 OUT1".
const KAT: ReadonlyArray<{ name: string; ctr: [number, number]; key: [number, number]; out: [number, number] }> = [
  { name: 'zero key, zero counter', ctr: [0x00000000, 0x00000000], key: [0x00000000, 0x00000000], out: [0x6b200159, 0x99ba4efe] },
  { name: 'all-ones key and counter', ctr: [0xffffffff, 0xffffffff], key: [0xffffffff, 0xffffffff], out: [0x1cb996fc, 0xbb002be7] },
  { name: 'digits of pi', ctr: [0x243f6a88, 0x85a308d3], key: [0x13198a2e, 0x03707344], out: [0xc4923a9c, 0x483df7a0] },
];

t.test('Random123 known-answer vectors (20 rounds)', async (t) => {
  for (const v of KAT) {
    const [y0, y1] = threefry2x32(v.key[0], v.key[1], Uint32Array.of(v.ctr[0]), Uint32Array.of(v.ctr[1]));
    t.same([y0[0], y1[0]], v.out, v.name);
  }
});

t.test('vectorised over many counters, element by element', async (t) => {
  // A batch under one key must give exactly the blocks that one-counter calls
  // give; the pi vector's key is used so that one element has a known answer.
  const x0 = Uint32Array.of(0, 0xffffffff, 0x243f6a88, 0);
  const x1 = Uint32Array.of(0, 0xffffffff, 0x85a308d3, 0);
  const [y0, y1] = threefry2x32(0x13198a2e, 0x03707344, x0, x1);
  t.same([y0[2], y1[2]], [0xc4923a9c, 0x483df7a0], 'pi vector inside a batch');
  for (let i = 0; i < 4; i++) {
    const [s0, s1] = threefry2x32(0x13198a2e, 0x03707344, x0.subarray(i, i + 1), x1.subarray(i, i + 1));
    t.same([y0[i], y1[i]], [s0[0], s1[0]], `element ${i}`);
  }
  t.same([y0[0], y1[0]], [y0[3], y1[3]], 'deterministic: equal counters give equal blocks');
  t.same(Array.from(x0), [0, 0xffffffff, 0x243f6a88, 0], 'inputs are not modified');
});

t.test('empty input and argument checks', async (t) => {
  const [y0, y1] = threefry2x32(1, 2, new Uint32Array(0), new Uint32Array(0));
  t.equal(y0.length, 0);
  t.equal(y1.length, 0);
  t.throws(() => threefry2x32(-1, 0, new Uint32Array(1), new Uint32Array(1)), RangeError);
  t.throws(() => threefry2x32(0, 2 ** 32, new Uint32Array(1), new Uint32Array(1)), RangeError);
  t.throws(() => threefry2x32(0.5, 0, new Uint32Array(1), new Uint32Array(1)), RangeError);
  t.throws(() => threefry2x32(0, 0, new Uint32Array(2), new Uint32Array(1)), RangeError);
  t.throws(() => threefry2x32(0, 0, [0] as unknown as Uint32Array, new Uint32Array(1)), TypeError, 'plain arrays are rejected');
});
