/**
 * What the admin console (admin-console.ts) and the admin HTTP port read and change of a proxy:
 * its pools' views, its pooled listeners' PAUSE / KILL / RECONNECT / DISABLE state
 * (listener-commands.ts), its configuration, routes and reload.
 */
import type { ProxyConfig } from '../../config/proxy-schema.js';
import type { RouteNode } from '../../routing/types.js';
import type { ReloadOutcome } from '../reload-status.js';
import { termination } from '../routing/connection-registry.js';
import type { Termination } from '../session/session-types.js';
import type { Showable } from './admin-command.js';
import type { ListenerAdminState, ListenerCommand } from './listener-commands.js';
import type { PoolSet } from './pool-set.js';

export interface AdminTarget {
  view(what: Showable): Readonly<Record<string, readonly object[]>>;
  /** The pooled listeners' names. */
  listeners(): readonly string[];
  /** A pooled listener's PAUSE / DISABLE state; undefined: no pooled listener of that name. */
  state(listener: string): ListenerAdminState | undefined;
  /** An operator command on one pooled listener; false: no pooled listener of that name. */
  command(listener: string, command: ListenerCommand): boolean;
  /** listener → its open server connections, each naming its node. */
  servers(): Readonly<Record<string, readonly { readonly node: string }[]>>;
  /** The running configuration (after a reload, its effective one). */
  config(): ProxyConfig;
  /** The nodes a listener routes to now. */
  nodes(listener: string): readonly RouteNode[];
  /** pgfleet's version (package.json's). */
  readonly version: string;
  /** Reads the configuration file again and applies it (SIGHUP's reload); never rejects. */
  reload(): Promise<ReloadOutcome>;
}

/** pgbouncer's SHOW POOLS, CLIENTS, SERVERS and STATS: the pools' views by listener. */
export function poolView(pools: PoolSet, what: Showable): Record<string, readonly object[]> {
  switch (what) {
    case 'pools':
      return pools.status();
    case 'servers':
      return pools.servers();
    case 'clients':
      return pools.clients();
    case 'stats':
      return Object.fromEntries(
        Object.entries(pools.status()).map(([l, rows]) => [
          l,
          rows.map((x) => ({
            database: x.database,
            user: x.user,
            ...x.totals,
            avgWaitMs: x.totals.waits === 0 ? 0 : x.totals.waitMs / x.totals.waits,
          })),
        ]),
      );
  }
}

/** What KILL tells each client of the listener: pg_terminate_backend's FATAL, and whose it was. */
export function killTermination(listener: string): Termination {
  return termination(
    'admin_kill',
    'terminating connection due to administrator command',
    `pgfleet: KILL of listener "${listener}"; new clients wait until RESUME`,
  );
}

/** What the console reads of the proxy beyond its pools, and how it ends a listener's sessions. */
export type ProxySide = Pick<AdminTarget, 'config' | 'nodes' | 'version' | 'reload'> & {
  /** Ends every client session of the listener (its admin console's aside) with `t`. */
  endClients(listener: string, t: Termination): void;
};

/** The console's target: a proxy's pools, configuration, routes and reload. */
export function proxyTarget(pools: PoolSet, proxy: ProxySide): AdminTarget {
  return {
    view: (what) => poolView(pools, what),
    listeners: () => Object.keys(pools.status()),
    state: (listener) => pools.state(listener),
    command: (listener, command) =>
      pools.command(listener, command, (l) => proxy.endClients(l, killTermination(l))),
    servers: () => pools.servers(),
    config: () => proxy.config(),
    nodes: (listener) => proxy.nodes(listener),
    version: proxy.version,
    reload: () => proxy.reload(),
  };
}
