/**
 * Read-modify-write of the cluster's `config` key (Patroni's dynamic configuration), as
 * `patronictl pause` / `edit-config` do: the write compares the key's mod revision (or its absence),
 * so a concurrent edit is never overwritten; on a conflict the change is re-applied to the new value.
 */
import type { Etcd3 } from 'etcd3';
import { PgfleetError } from '../errors.js';
import { toDcsError } from './etcd-client.js';
import type { ClusterKeys } from './keys.js';

const MAX_ATTEMPTS = 5;

export type ConfigChange = (config: Readonly<Record<string, unknown>>) => Record<string, unknown>;

function parseConfig(text: string | undefined): Record<string, unknown> {
  if (text === undefined || text.trim() === '') return {};
  const v: unknown = JSON.parse(text);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SyntaxError('not a JSON object');
  return v as Record<string, unknown>;
}

/** Applies `change` to the `config` key; resolves with the value written. */
export async function updateClusterConfig(
  client: Etcd3,
  keys: ClusterKeys,
  change: ConfigChange,
): Promise<Record<string, unknown>> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    let res;
    try {
      res = await client.get(keys.config).exec();
    } catch (err) {
      throw toDcsError(err, `get ${keys.config}`);
    }
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
    const put = client.put(keys.config).value(JSON.stringify(next));
    const txn = kv
      ? client.if(keys.config, 'Mod', '==', kv.mod_revision)
      : client.if(keys.config, 'Create', '==', 0);
    try {
      if ((await txn.then(put).commit()).succeeded) return next;
    } catch (err) {
      throw toDcsError(err, `update ${keys.config}`);
    }
  }
  throw new PgfleetError('ERR_DCS_CONFLICT', `${keys.config} kept changing; try again`);
}
