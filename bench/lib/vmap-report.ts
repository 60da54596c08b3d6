/** The vmap case's rows and table (no library imports: bench/run.ts renders them in the parent). */

export interface VmapRow {
  readonly name: string;
  readonly medianMs: number;
  /** medianMs over the batched gradient's medianMs. */
  readonly ratio: number;
  readonly runsMs: readonly number[];
}

export const VMAP_TARGET = 2;

export function vmapTable(rows: readonly VmapRow[]): string {
  const lines = ['| variant (M1, batch 32) | ms per call (median) | x batched gradient | runs (ms) |', '|---|---|---|---|'];
  for (const r of rows)
    lines.push(`| ${r.name} | ${r.medianMs.toFixed(2)} | ${r.ratio.toFixed(2)}x | ${r.runsMs.map((m) => m.toFixed(1)).join(', ')} |`);
  const perExample = rows[1];
  const donated = rows.find((r) => r.name.includes('donated'));
  const disposed = rows.find((r) => r.name.startsWith('per-example') && r.name.includes('disposed') && !r.name.includes('backend memory'));
  const residentBatched = rows.find((r) => r.name.startsWith('batched') && r.name.includes('backend memory'));
  const resident = rows.find((r) => r.name.startsWith('per-example') && r.name.includes('backend memory'));
  const verdict = (ratio: number): string => `${ratio.toFixed(2)}x -> ${ratio <= VMAP_TARGET ? 'met' : 'not met'}`;
  if (perExample !== undefined)
    lines.push(
      '',
      `Target (issue 13): per-example gradients with vmap(grad(f)) at most ${VMAP_TARGET}x one batched gradient. ` +
        (resident !== undefined && residentBatched !== undefined
          ? `Both kept in backend memory, previous results disposed (like for like): ${resident.medianMs.toFixed(2)} / ${residentBatched.medianMs.toFixed(2)} ms = ${verdict(resident.medianMs / residentBatched.medianMs)}; `
          : '') +
        `both returned to host memory, previous results disposed: ${disposed === undefined ? 'not measured' : verdict(disposed.ratio)}; ` +
        `plain call (a fresh result every call): ${verdict(perExample.ratio)}` +
        (donated === undefined ? '.' : `; with the previous results donated back: ${donated.ratio.toFixed(2)}x.`),
    );
  return lines.join('\n');
}
