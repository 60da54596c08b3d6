/**
 * spiketrace: the core's arrays, transformations and PRNG at the top level, and the layers,
 * spiking parts and data tools as namespaces (`import { jit, nn, spiking } from 'spiketrace'`).
 * The subpath entry points (spiketrace/core, /nn, /spiking, /spiking/testing, /data) hold the same.
 */
export * from './core/index.js';
export * as nn from './nn/index.js';
export * as spiking from './spiking/index.js';
export * as data from './data/index.js';
