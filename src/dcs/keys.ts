/**
 * Patroni's etcd3 key layout, in one place. Everything lives under `<namespace>/<scope>/`;
 * namespace defaults to `/service`.
 * @see https://patroni.readthedocs.io/en/latest/dcs_failsafe_mode.html and patroni/dcs/__init__.py
 */
export const KEY = {
  leader: 'leader',
  members: 'members/',
  status: 'status',
  legacyOptime: 'optime/leader',
  config: 'config',
  initialize: 'initialize',
  failover: 'failover',
  sync: 'sync',
  history: 'history',
  failsafe: 'failsafe',
} as const;

/** `/service/batman/` from namespace `/service` (or `service`, `/service/`) and scope `batman`. */
export function clusterPrefix(namespace: string, scope: string): string {
  const ns = `/${namespace.replace(/^\/+|\/+$/g, '')}`;
  return `${ns === '/' ? '' : ns}/${scope}/`;
}

export function clusterKeys(namespace: string, scope: string) {
  const p = clusterPrefix(namespace, scope);
  return {
    prefix: p,
    leader: p + KEY.leader,
    membersPrefix: p + KEY.members,
    member: (name: string) => p + KEY.members + name,
    status: p + KEY.status,
    legacyOptime: p + KEY.legacyOptime,
    config: p + KEY.config,
    initialize: p + KEY.initialize,
    failover: p + KEY.failover,
    sync: p + KEY.sync,
    history: p + KEY.history,
    failsafe: p + KEY.failsafe,
  } as const;
}

export type ClusterKeys = ReturnType<typeof clusterKeys>;
