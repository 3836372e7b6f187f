/**
 * Read-modify-write of the cluster's `config` key (Patroni's dynamic configuration), as
 * `patronictl pause` / `edit-config` do: the write compares the key's mod revision (or its absence),
 * so a concurrent edit is never overwritten; on a conflict the change is re-applied to the new value.
 */
import { PgfleetError } from '../errors.js';
import type { EtcdCluster } from './etcd-cluster.js';
import type { ClusterKeys } from './keys.js';

const MAX_ATTEMPTS = 5;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Python's str() of a JSON scalar, as patch_config compares values (`5` and `"5"` are the same). */
function pyText(v: unknown): string {
  if (v === true) return 'True';
  if (v === false) return 'False';
  return typeof v === 'string' || typeof v === 'number' ? String(v) : JSON.stringify(v);
}

/**
 * Patroni's `patch_config` (PATCH /config, `patronictl edit-config`): a deep merge of `patch` into
 * `config`, where `null` removes a key and a mapping merges into a mapping. Pure: returns the
 * merged copy and whether anything changed.
 * @see patroni/utils.py patch_config
 */
export function mergePatch(
  config: Readonly<Record<string, unknown>>,
  patch: Readonly<Record<string, unknown>>,
): { config: Record<string, unknown>; changed: boolean } {
  const out = structuredClone(config) as Record<string, unknown>;
  let changed = false;
  for (const [name, value] of Object.entries(patch)) {
    if (value === null || value === undefined) {
      if (out[name] !== undefined && out[name] !== null) changed = true;
      delete out[name];
    } else if (!(name in out)) {
      out[name] = structuredClone(value);
      changed = true;
    } else if (isRecord(value) && isRecord(out[name])) {
      const inner = mergePatch(out[name], value);
      out[name] = inner.config;
      changed ||= inner.changed;
    } else if (isRecord(value) || pyText(out[name]) !== pyText(value)) {
      out[name] = structuredClone(value);
      changed = true;
    }
  }
  return { config: out, changed };
}

export type ConfigChange = (config: Readonly<Record<string, unknown>>) => Record<string, unknown>;

function parseConfig(text: string | undefined): Record<string, unknown> {
  if (text === undefined || text.trim() === '') return {};
  const v: unknown = JSON.parse(text);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SyntaxError('not a JSON object');
  return v as Record<string, unknown>;
}

/** Applies `change` to the `config` key; resolves with the value written. */
export async function updateClusterConfig(
  etcd: EtcdCluster,
  keys: ClusterKeys,
  change: ConfigChange,
): Promise<Record<string, unknown>> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const res = await etcd.run(`get ${keys.config}`, (c) => c.get(keys.config).exec());
    const kv = res.kvs[0];
    let current: Record<string, unknown>;
    try {
      current = parseConfig(kv?.value.toString());
    } catch (err) {
      throw new PgfleetError('ERR_CONFIG_INVALID', `${keys.config} is not a JSON object; fix it first`, {
        cause: err,
      });
    }
    const next = change(current);
    const value = JSON.stringify(next);
    // A retry on another member after a lost answer fails its compare and reads the value anew.
    const committed = await etcd.run(`update ${keys.config}`, async (c) => {
      const txn = kv ? c.if(keys.config, 'Mod', '==', kv.mod_revision) : c.if(keys.config, 'Create', '==', 0);
      return (await txn.then(c.put(keys.config).value(value)).commit()).succeeded;
    });
    if (committed) return next;
  }
  throw new PgfleetError('ERR_DCS_CONFLICT', `${keys.config} kept changing; try again`);
}
