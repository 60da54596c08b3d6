/** Debug switches from SPIKETRACE_DEBUG (comma separated: jaxpr, kernels, plan, profile). */
export function debugEnabled(flag: 'jaxpr' | 'kernels' | 'plan' | 'profile'): boolean {
  const env = typeof process !== 'undefined' ? process.env?.SPIKETRACE_DEBUG : undefined;
  return env !== undefined && env.split(',').includes(flag);
}

/** Time per step of compiled programs (SPIKETRACE_DEBUG=profile), printed when the process exits. */
const profileTotals = new Map<string, { ms: number; calls: number }>();
let profileHooked = false;
export function profileRecord(what: string, ms: number): void {
  let t = profileTotals.get(what);
  if (t === undefined) {
    t = { ms: 0, calls: 0 };
    profileTotals.set(what, t);
  }
  t.ms += ms;
  t.calls++;
  if (!profileHooked && typeof process !== 'undefined') {
    profileHooked = true;
    process.on('exit', () => {
      const rows = [...profileTotals.entries()].sort((a, b) => b[1].ms - a[1].ms);
      const total = rows.reduce((s, [, t]) => s + t.ms, 0);
      console.error(`[spiketrace profile] ${total.toFixed(1)} ms in compiled steps`);
      for (const [k, t] of rows.slice(0, 40))
        console.error(
          `${t.ms.toFixed(1).padStart(9)} ms ${((t.ms / t.calls) * 1000).toFixed(1).padStart(8)} us/call ${String(t.calls).padStart(7)}x  ${k.slice(0, 160)}`,
        );
    });
  }
}
