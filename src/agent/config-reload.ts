/**
 * What a reload of the agent's YAML (SIGHUP, POST /reload) applies live and what waits for the
 * agent's next restart. Pure: two validated configurations in, the configuration to run with and
 * the changed keys sorted into the two kinds.
 *
 * | live (applied at once)                                   | how                                   |
 * |----------------------------------------------------------|---------------------------------------|
 * | `log.level`                                              | every logger's level                  |
 * | `tags`                                                   | the member key, /patroni              |
 * | `postgresql.parameters`, `postgresql.pg_hba`             | files rewritten, `pg_reload_conf()`; a postmaster-context change sets pending_restart |
 * | `postgresql.callbacks`                                   | used from the next call on            |
 * | `restapi.authentication`                                 | checked on the next request           |
 *
 * Every other key (identity, addresses, data directory, etcd, bootstrap, agent timing) takes
 * effect when the agent restarts; the reload names them. Keys are compared as dotted paths, a
 * section's own keys one level down, so a key another module adds is "at the next restart" until
 * it is listed here.
 * @see patroni/config.py Config.reload_local_configuration; patroni/__init__.py reload_config
 */
import type { AgentConfig } from '../config/agent-schema.js';
import { deepFreeze } from '../config/common.js';

/** Dotted paths (a section, or one key of a section) that apply without restarting the agent. */
export const LIVE_KEYS: readonly string[] = Object.freeze([
  'log.level',
  'tags',
  'postgresql.parameters',
  'postgresql.pg_hba',
  'postgresql.callbacks',
  'restapi.authentication',
]);

export interface ReloadPlan {
  /** The running configuration with every live key taken from the new file. */
  readonly config: AgentConfig;
  /** Changed keys applied now. */
  readonly applied: readonly string[];
  /** Changed keys that take effect at the agent's next restart. */
  readonly restartNeeded: readonly string[];
}

type Doc = Record<string, unknown>;

function isRecord(v: unknown): v is Doc {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Changed paths: `section.key` for mappings listed with keys in LIVE_KEYS or any mapping section. */
export function changedKeys(prev: Doc, next: Doc): string[] {
  const out: string[] = [];
  for (const section of new Set([...Object.keys(prev), ...Object.keys(next)])) {
    const a = prev[section];
    const b = next[section];
    if (same(a, b)) continue;
    if (section === 'tags' || !isRecord(a) || !isRecord(b)) {
      out.push(section);
      continue;
    }
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)]))
      if (!same(a[key], b[key])) out.push(`${section}.${key}`);
  }
  return out.sort();
}

function setPath(doc: Doc, path: string, value: unknown): void {
  const [section, key] = path.split('.') as [string, string | undefined];
  if (key === undefined) {
    if (value === undefined) delete doc[section];
    else doc[section] = value;
    return;
  }
  const inner = { ...(isRecord(doc[section]) ? doc[section] : {}) };
  if (value === undefined) delete inner[key];
  else inner[key] = value;
  doc[section] = inner;
}

function getPath(doc: Doc, path: string): unknown {
  const [section, key] = path.split('.') as [string, string | undefined];
  const v = doc[section];
  return key === undefined ? v : isRecord(v) ? v[key] : undefined;
}

export function planReload(running: AgentConfig, next: AgentConfig): ReloadPlan {
  const changed = changedKeys(running, next);
  const applied = changed.filter((k) => LIVE_KEYS.includes(k));
  const restartNeeded = changed.filter((k) => !LIVE_KEYS.includes(k));
  const merged: Doc = structuredClone(running);
  for (const k of applied) setPath(merged, k, structuredClone(getPath(next as unknown as Doc, k)));
  return { config: deepFreeze(merged) as unknown as AgentConfig, applied, restartNeeded };
}
