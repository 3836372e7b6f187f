/**
 * The proxy's `/status` document (and the HTML page's data), from snapshots of its parts. Pure but
 * for the clock it is given.
 */
import { performance } from 'node:perf_hooks';
import type { ProxyConfig } from '../config/proxy-schema.js';
import type { ClusterView } from '../cluster/types.js';
import { memberReplayLagBytes } from '../cluster/types.js';
import type { DcsStatus } from '../dcs/cluster-watcher.js';
import type { EtcdMemberStatus } from '../dcs/etcd-cluster.js';
import type { HealthSnapshot, RoutingTable } from '../routing/types.js';
import type { ListenerTls } from './tls/tls-contexts.js';
import type { ReloadStatus } from './reload-status.js';
import type { PoolStatus } from './pool/pool-manager.js';
import type { HoldStatus } from './pool/switchover-hold-tracker.js';

export interface ProxyStatus {
  readonly cluster: string;
  /** `running`, or `draining` during a graceful stop (no new clients; sessions end when idle). */
  readonly state: 'running' | 'draining' | 'stopping';
  readonly generation: number;
  /** Which relay moves relaying sessions' bytes: the native addon's threads, or Node's streams. */
  readonly relay: 'native' | 'js';
  /** Where pooled sessions' sockets are served: the addon's transport (with how many open), or Node's streams. */
  readonly pooledSockets:
    { readonly transport: 'native'; readonly open: number } | { readonly transport: 'js' };
  readonly dcs: {
    connected: boolean;
    stale: boolean;
    staleSeconds: number | null;
    lastError: string | null;
    revision: number;
    /** The etcd member the view is read from (client URL), null while none answers. */
    member: string | null;
    /** Every etcd member known: configured, from DNS SRV or from etcd's member list. */
    members: readonly EtcdMemberStatus[];
    /** The agents' REST checks run because the DCS is unreachable (health_check off). */
    checkingAgents: boolean;
  };
  readonly leader: string | null;
  readonly listeners: Record<string, unknown>;
  readonly members: Record<string, unknown>;
  readonly sessions: Record<string, Record<string, number>>;
  readonly clientConnections: number;
  /** Of clientConnections, those still in their startup (no StartupMessage read yet). */
  readonly startingConnections: number;
  /** The configuration's loads: the last good one, the last reload and its problems. */
  readonly config: ReloadStatus;
  /** Pooled listeners: their pools (clients active and waiting, servers per node, wait time). */
  readonly pools: Record<string, readonly PoolStatus[]>;
  /**
   * A switchover pending away from the leader: transaction-pooled clients start no transaction on
   * it (held clients: the pools' clientsHeld); null otherwise.
   */
  readonly switchoverHold: HoldStatus | null;
}

export interface StatusSources {
  readonly config: ProxyConfig;
  readonly state: ProxyStatus['state'];
  readonly dcs: DcsStatus;
  readonly view: ClusterView;
  readonly table: RoutingTable;
  readonly health: HealthSnapshot;
  readonly checkingAgents: boolean;
  readonly etcdMembers: readonly EtcdMemberStatus[];
  readonly nativeRelay: boolean;
  /** Sockets on the native transport (pooled servers and clients), or undefined without it. */
  readonly nativeSockets: number | undefined;
  readonly sessions: Record<string, Record<string, number>>;
  readonly admission: { readonly starting: number; readonly admitted: number };
  readonly tls: ReadonlyMap<string, ListenerTls>;
  readonly derivedWaitTimeoutMs: number;
  readonly reload: ReloadStatus;
  readonly pools: Record<string, readonly PoolStatus[]>;
  readonly switchoverHold?: HoldStatus | undefined;
}

export function proxyStatus(src: StatusSources): ProxyStatus {
  const s = src.dcs;
  return {
    cluster: src.config.scope,
    state: src.state,
    generation: src.table.generation,
    relay: src.nativeRelay ? 'native' : 'js',
    // Pooled sessions' sockets: the native transport (native-conn.ts), or Node's streams.
    pooledSockets:
      src.nativeSockets === undefined
        ? { transport: 'js' }
        : { transport: 'native', open: src.nativeSockets },
    dcs: {
      connected: s.connected,
      stale: src.table.stale,
      staleSeconds:
        s.lastContactMs === 0 ? null : Math.round((performance.now() - s.lastContactMs) / 100) / 10,
      lastError: s.lastError ?? null,
      revision: src.view.revision,
      member: s.member ?? null,
      members: src.etcdMembers,
      checkingAgents: src.checkingAgents,
    },
    leader: src.view.leader ?? null,
    listeners: listenersStatus(src),
    members: membersStatus(src.view, src.health),
    sessions: src.sessions,
    clientConnections: src.admission.starting + src.admission.admitted,
    startingConnections: src.admission.starting,
    config: src.reload,
    pools: src.pools,
    switchoverHold: src.switchoverHold ?? null,
  };
}

function membersStatus(view: ClusterView, health: HealthSnapshot): Record<string, unknown> {
  const members: Record<string, unknown> = {};
  for (const m of view.members.values()) {
    members[m.name] = {
      host: m.host,
      port: m.port,
      role: m.role,
      state: m.state,
      timeline: m.timeline ?? null,
      xlog_location: m.xlogLocation ?? null,
      lag_bytes:
        view.optime !== undefined && m.xlogLocation !== undefined
          ? Math.max(0, view.optime - m.xlogLocation)
          : null,
      replay_lsn: m.replayLsn ?? null,
      replay_lag_bytes: m.name === view.leader ? null : (memberReplayLagBytes(view, m) ?? null),
      replay_lag_seconds: view.replayLagS?.get(m.name) ?? null,
      tags: m.tags.all,
      health: Object.fromEntries(health.get(m.name) ?? []),
    };
  }
  return members;
}

function listenersStatus(src: StatusSources): Record<string, unknown> {
  const p = src.config.proxy;
  const listeners: Record<string, unknown> = {};
  for (const l of p.listeners) {
    const r = src.table.listeners.get(l.name);
    listeners[l.name] = {
      listen: `${l.listen.host}:${l.listen.port}`,
      role: l.role,
      max_lag: l.max_lag ?? null,
      max_lag_time: l.max_lag_time === undefined ? null : l.max_lag_time / 1000,
      wait_timeout: (l.wait_timeout ?? p.wait_timeout ?? src.derivedWaitTimeoutMs) / 1000,
      wait_timeout_derived: (l.wait_timeout ?? p.wait_timeout) === undefined,
      max_client_connections: l.max_client_connections ?? null,
      nodes: r?.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, role: n.role })) ?? [],
      excluded: r?.excluded ?? {},
      ...tlsStatus(src.tls.get(l.name), l.tls, src.nativeRelay),
    };
  }
  return listeners;
}

/** A listener's TLS: its mode, and for one that terminates TLS its certificate. */
function tlsStatus(t: ListenerTls | undefined, mode: string, nativeRelay: boolean): Record<string, unknown> {
  if (t === undefined) return { tls: mode };
  return {
    tls: mode,
    // Where TLS-terminated sessions are served: the relay threads (OpenSSL, tls-bridge.ts), or Node.
    tls_relay: nativeRelay && t.native !== undefined ? 'native' : 'js',
    tls_certificate: {
      file: t.certFile,
      subject: t.subject,
      not_after: t.notAfter,
      fingerprint256: t.fingerprint256,
      verify_clients: t.verifyClients,
    },
  };
}
