/** Debug switches from SPIKETRACE_DEBUG (comma separated: jaxpr, kernels, plan). */
export function debugEnabled(flag: 'jaxpr' | 'kernels' | 'plan'): boolean {
  const env = typeof process !== 'undefined' ? process.env?.SPIKETRACE_DEBUG : undefined;
  return env !== undefined && env.split(',').includes(flag);
}
