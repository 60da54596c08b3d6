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
  const disposed = rows.find((r) => r.name.includes('disposed'));
  const verdict = (r: VmapRow): string => `${r.ratio.toFixed(2)}x -> ${r.ratio <= VMAP_TARGET ? 'met' : 'not met'}`;
  if (perExample !== undefined)
    lines.push(
      '',
      `Target (issue 13): per-example gradients with vmap(grad(f)) at most ${VMAP_TARGET}x one batched gradient. ` +
        `With the previous results disposed (dispose): ${disposed === undefined ? 'not measured' : verdict(disposed)}; ` +
        `plain call (a fresh result every call): ${verdict(perExample)}` +
        (donated === undefined ? '.' : `; with the previous results donated back: ${donated.ratio.toFixed(2)}x.`),
    );
  return lines.join('\n');
}
