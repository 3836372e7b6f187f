/**
 * Environment overrides on top of a YAML configuration file, for containers and systemd
 * `Environment=` lines: `PGFLEET__<KEY>__<SUBKEY>=value` sets `key.subkey`. The path is the
 * variable's name after `PGFLEET__`, split at `__`, lower-cased; the value is read as YAML, so
 * `PGFLEET__ETCD3__HOSTS='[etcd1:2379, etcd2:2379]'` gives a list and `PGFLEET__TAGS__NOFAILOVER=true`
 * a boolean. Pure: the environment is passed in (only src/cli reads process.env).
 */
import { parse } from 'yaml';
import { PgfleetError } from '../errors.js';

export const ENV_PREFIX = 'PGFLEET__';

export type Env = Readonly<Record<string, string | undefined>>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The overrides found in `env`, as [path, value] pairs, sorted by variable name. */
export function envOverrides(env: Env): [string[], unknown][] {
  return Object.keys(env)
    .filter((k) => k.startsWith(ENV_PREFIX) && env[k] !== undefined)
    .sort()
    .map((k) => {
      const path = k
        .slice(ENV_PREFIX.length)
        .split('__')
        .map((p) => p.toLowerCase());
      if (path.some((p) => p === '')) {
        throw new PgfleetError('ERR_CONFIG_INVALID', `${k}: not a configuration path (PGFLEET__KEY__SUBKEY)`);
      }
      let value: unknown;
      try {
        value = parse(env[k]!) as unknown;
      } catch {
        value = env[k];
      }
      return [path, value ?? ''];
    });
}

/** A copy of `doc` with every override from `env` applied (intermediate objects created). */
export function applyEnvOverrides(doc: unknown, env: Env): unknown {
  const overrides = envOverrides(env);
  if (overrides.length === 0) return doc;
  const root: Record<string, unknown> = isRecord(doc) ? structuredClone(doc) : {};
  for (const [path, value] of overrides) {
    let node = root;
    for (const key of path.slice(0, -1)) {
      if (!isRecord(node[key])) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = value;
  }
  return root;
}
