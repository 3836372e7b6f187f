/**
 * Timeline history, Patroni's `history` key: `[[timeline, switch_lsn, reason, timestamp, new_leader], …]`
 * built from PostgreSQL's `<TLI>.history` file (lines "parentTLI<TAB>X/Y<TAB>reason"). Pure.
 * @see https://www.postgresql.org/docs/15/continuous-archiving.html#BACKUP-TIMELINES
 * @see patroni/ha.py update_cluster_history
 */
import { parseLsn } from '../cluster/lsn.js';

export type HistoryEntry = [number, number, string, string?, string?];

export function historyFileName(timeline: number): string {
  return `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

/**
 * Merges the history file with what the key already holds: earlier entries keep their timestamp
 * and leader; the newest switch gets `now` and `newLeader`.
 */
export function buildHistory(
  fileText: string,
  previous: readonly HistoryEntry[],
  nowIso: string,
  newLeader: string,
): HistoryEntry[] {
  const known = new Map(previous.map((e) => [e[0], e]));
  const out: HistoryEntry[] = [];
  for (const line of fileText.split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const tl = Number(m[1]);
    const lsn = parseLsn(m[2]!) ?? 0;
    out.push(known.get(tl) ?? [tl, lsn, m[3]!.trim()]);
  }
  const last = out[out.length - 1];
  if (last && !known.has(last[0])) out[out.length - 1] = [last[0], last[1], last[2], nowIso, newLeader];
  return out;
}

export function parseHistoryKey(text: string | undefined): HistoryEntry[] {
  if (text === undefined) return [];
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v)
      ? (v.filter((e) => Array.isArray(e) && typeof e[0] === 'number') as HistoryEntry[])
      : [];
  } catch {
    return [];
  }
}
