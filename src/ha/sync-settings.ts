/**
 * Patroni's synchronous replication and failsafe settings, from the DCS `config` key over the
 * node's bootstrap.dcs. Pure. Values the DCS holds that are malformed are ignored with a problem
 * message; contradictions Patroni accepts are accepted as Patroni does, with a problem message.
 *
 * | key                       | values                                   | default |
 * |---------------------------|------------------------------------------|---------|
 * | synchronous_mode          | true/false (on/off/yes/no/1/0) or quorum | false   |
 * | synchronous_mode_strict   | boolean; no effect while the mode is off | false   |
 * | synchronous_node_count    | integer ≥ 1 (Patroni lowers it to the eligible standbys) | 1 |
 * | maximum_lag_on_syncnode   | size; ≤ 0 never swaps a lagging sync standby | -1  |
 * | failsafe_mode             | boolean                                  | false   |
 * @see patroni/global_config.py is_synchronous_mode, synchronous_node_count, min_synchronous_nodes
 */
import { parseSizeBytes } from '../config/units.js';

export type SyncMode = 'off' | 'on' | 'quorum';

export interface SyncSettings {
  readonly mode: SyncMode;
  /** `synchronous_mode_strict`: at least one synchronous standby, or commits wait. */
  readonly strict: boolean;
  /** `synchronous_node_count` (at least 1). */
  readonly nodeCount: number;
  /** `maximum_lag_on_syncnode` in bytes; ≤ 0 keeps a lagging sync standby (Patroni's -1). */
  readonly maximumLagOnSyncnodeBytes: number;
}

export const SYNC_OFF: SyncSettings = Object.freeze({
  mode: 'off',
  strict: false,
  nodeCount: 1,
  maximumLagOnSyncnodeBytes: -1,
});

/** Patroni's parse_bool: on/true/yes/1 and off/false/no/0, any case; undefined otherwise. */
export function parseBool(value: unknown): boolean | undefined {
  const v = String(value).toLowerCase();
  if (['on', 'true', 'yes', '1'].includes(v)) return true;
  if (['off', 'false', 'no', '0'].includes(v)) return false;
  return undefined;
}

/** `synchronous_mode` → off, on or quorum; undefined when unreadable. */
export function parseSyncMode(value: unknown): SyncMode | undefined {
  if (String(value).toLowerCase() === 'quorum') return 'quorum';
  const b = parseBool(value);
  return b === undefined ? undefined : b ? 'on' : 'off';
}

/** Patroni's min_synchronous_nodes: 1 in strict mode, else 0. */
export function minSynchronousNodes(s: SyncSettings): number {
  return s.mode !== 'off' && s.strict ? 1 : 0;
}

export function effectiveSyncSettings(
  dcs: Readonly<Record<string, unknown>>,
  fallback: SyncSettings,
  problems: string[],
): SyncSettings {
  let mode = fallback.mode;
  if (dcs.synchronous_mode !== undefined) {
    const m = parseSyncMode(dcs.synchronous_mode);
    if (m === undefined) problems.push(`config.synchronous_mode: ignored, not true, false or quorum`);
    else mode = m;
  }
  let strict = fallback.strict;
  if (dcs.synchronous_mode_strict !== undefined) {
    const b = parseBool(dcs.synchronous_mode_strict);
    if (b === undefined) problems.push('config.synchronous_mode_strict: ignored, not a boolean');
    else strict = b;
  }
  if (strict && mode === 'off')
    problems.push('config.synchronous_mode_strict: has no effect while synchronous_mode is off');
  let nodeCount = fallback.nodeCount;
  if (dcs.synchronous_node_count !== undefined) {
    const n = Number(dcs.synchronous_node_count);
    if (!Number.isInteger(n) || n < 1)
      problems.push('config.synchronous_node_count: ignored, not an integer ≥ 1');
    else nodeCount = n;
  }
  let lag = fallback.maximumLagOnSyncnodeBytes;
  if (dcs.maximum_lag_on_syncnode !== undefined) {
    const raw = dcs.maximum_lag_on_syncnode;
    const b = typeof raw === 'number' && Number.isInteger(raw) ? raw : parseSizeBytes(raw);
    if (b === undefined) problems.push('config.maximum_lag_on_syncnode: ignored, not a size');
    else lag = b;
  }
  return { mode, strict, nodeCount, maximumLagOnSyncnodeBytes: lag };
}

export function effectiveFailsafeMode(
  dcs: Readonly<Record<string, unknown>>,
  fallback: boolean,
  problems: string[],
): boolean {
  if (dcs.failsafe_mode === undefined) return fallback;
  const b = parseBool(dcs.failsafe_mode);
  if (b === undefined) {
    problems.push('config.failsafe_mode: ignored, not a boolean');
    return fallback;
  }
  return b;
}

/**
 * The synchronous settings a `config` key value asks for (no fallback: what Patroni's
 * global_config reads), for displaying roles the way Patroni does.
 */
export function syncSettingsOf(config: Readonly<Record<string, unknown>>): SyncSettings {
  return effectiveSyncSettings(config, SYNC_OFF, []);
}
