/**
 * tfjs-core's Node bundle (its package "main") registers kernels but no gradients: the umbrella
 * `@tensorflow/tfjs` package does that by importing `tfjs-core/dist/register_all_gradients`, an ESM
 * tree with extensionless imports that Node cannot load. We register the few gradients the models
 * need from their individual ESM files (tfjs keeps its registries on the global object and makes
 * `instanceof Tensor` work across copies, so the ESM configs serve the CommonJS engine).
 */
import { registerGradient } from '@tensorflow/tfjs-core';
import { addGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Add_grad.js';
import { avgPoolGradConfig } from '@tensorflow/tfjs-core/dist/gradients/AvgPool_grad.js';
import { castGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Cast_grad.js';
import { conv2DGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Conv2D_grad.js';
import { batchMatMulGradConfig } from '@tensorflow/tfjs-core/dist/gradients/BatchMatMul_grad.js';
import { broadcastToGradConfig } from '@tensorflow/tfjs-core/dist/gradients/BroadcastTo_grad.js';
import { meanGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Mean_grad.js';
import { multiplyGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Multiply_grad.js';
import { negGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Neg_grad.js';
import { reluGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Relu_grad.js';
import { reshapeGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Reshape_grad.js';
import { sumGradConfig } from '@tensorflow/tfjs-core/dist/gradients/Sum_grad.js';

for (const config of [
  addGradConfig,
  avgPoolGradConfig,
  castGradConfig,
  conv2DGradConfig,
  batchMatMulGradConfig,
  broadcastToGradConfig,
  meanGradConfig,
  multiplyGradConfig,
  negGradConfig,
  reluGradConfig,
  reshapeGradConfig,
  sumGradConfig,
]) {
  registerGradient(config);
}
