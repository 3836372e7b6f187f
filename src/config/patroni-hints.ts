/**
 * What an unknown key that Patroni knows is told (`etcd:` is the v2 API, `watchdog:` is done
 * differently…), so that a Patroni YAML either loads or fails naming each key pgfleet does not
 * support, and why — never silently ignored. Used by common.ts's error messages.
 */

/** Why a key Patroni knows is refused, by its path (`log.format`) or top-level name. */
const PATRONI_ONLY: Readonly<Record<string, string>> = {
  etcd: 'the etcd v2 API is not supported: use an `etcd3:` section',
  consul: 'only etcd (`etcd3:`) is supported as the DCS',
  zookeeper: 'only etcd (`etcd3:`) is supported as the DCS',
  exhibitor: 'only etcd (`etcd3:`) is supported as the DCS',
  kubernetes: 'only etcd (`etcd3:`) is supported as the DCS',
  raft: 'only etcd (`etcd3:`) is supported as the DCS',
  citus: 'Citus clusters are not supported',
  watchdog:
    "not supported: pgfleet's own watchdog process fences PostgreSQL (agent.stop_postgres_on_agent_death, agent.restart_grace)",
  'log.format': 'not supported: the agent logs JSON lines (pino)',
  'log.dateformat': 'not supported: the agent logs JSON lines with epoch milliseconds',
  'log.traceback_level': 'not supported: errors are logged with their message at their own level',
  'log.loggers': 'not supported: one level for the whole agent (log.level)',
  'log.max_queue_size': 'not supported: pino writes through its own transport thread',
  'restapi.allowlist': 'not supported yet: restrict the REST port with a firewall',
  'restapi.allowlist_include_members': 'not supported yet',
  'restapi.ciphers': 'not supported yet: Node.js default ciphers are used',
  'restapi.http_extra_headers': 'not supported yet',
  'restapi.https_extra_headers': 'not supported yet',
  'postgresql.custom_conf': 'not supported: use postgresql.parameters',
  'postgresql.config_dir': 'not supported: configuration files live in data_dir',
  'postgresql.recovery_conf': 'not supported (standby clusters are not supported)',
  'bootstrap.dcs.standby_cluster': 'standby clusters are not supported',
};

/** The hint for an unknown key at `path` (dotted, without indices), or undefined. */
export function patroniKeyHint(path: string): string | undefined {
  return PATRONI_ONLY[path];
}
