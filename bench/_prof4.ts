import { add, div, fromTyped, grad, jit, logSoftmax, matmul, minimum, mul, neg, relu, reshape, sqrt, sum, vmap, type Tensor } from '../core/index.js';
type Params = { W1: Tensor; b1: Tensor; W2: Tensor; b2: Tensor };
const BATCH = 32;
const logits = (p: Params, x: Tensor): Tensor => add(matmul(relu(add(matmul(x, p.W1), p.b1)), p.W2), p.b2);
const exampleLoss = (p: Params, x: Tensor, y: Tensor): Tensor => neg(sum(mul(y, logSoftmax(logits(p, reshape(x, [1, 784]))))));
const perExample = vmap(grad(exampleLoss), { inAxes: [null, 0, 0] });
function clippedSum(p: Params, x: Tensor, y: Tensor): Params {
  const g = perExample(p, x, y) as Params;
  const sq = add(add(sum(mul(g.W1, g.W1), [1, 2]), sum(mul(g.b1, g.b1), 1)), add(sum(mul(g.W2, g.W2), [1, 2]), sum(mul(g.b2, g.b2), 1)));
  const scale = minimum(div(1, sqrt(sq)), 1);
  const scaled = (leaf: Tensor): Tensor => sum(mul(leaf, reshape(scale, [BATCH, ...leaf.shape.slice(1).map(() => 1)])), 0);
  return { W1: scaled(g.W1), b1: scaled(g.b1), W2: scaled(g.W2), b2: scaled(g.b2) };
}
const f = jit(clippedSum);
const z = (s: number[]) => fromTyped(new Float32Array(s.reduce((a, b) => a * b, 1)).map(() => Math.random() - 0.5), s);
const p = { W1: z([784, 128]), b1: z([128]), W2: z([128, 10]), b2: z([10]) };
const x = z([32, 784]), y = z([32, 10]);
if (process.argv[3] === 'lower') console.log(f.lower(p, x, y));
for (let i = 0; i < 3; i++) f(p, x, y);
const n = Number(process.argv[2] ?? 50);
const t0 = performance.now();
for (let i = 0; i < n; i++) f(p, x, y);
console.log(((performance.now() - t0) / n).toFixed(2), 'ms/call');
