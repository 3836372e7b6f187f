import { performance } from 'node:perf_hooks';
import type { ListenerConfig, ProxyConfig } from '../../config/proxy-schema.js';
import type { RouteNode } from '../../routing/types.js';
import type { ProxyMetrics } from '../../observability/proxy-metrics.js';
import { freshestNodes, pickNode } from '../routing/balancer.js';
import { parseIdentitySpec, type IdentitySpec } from './read-your-writes.js';
import type { Logger } from '../../observability/logger.js';
import type { ListenerMetrics } from '../../observability/proxy-metrics.js';
import type { Admission } from '../admission.js';
import type { NativeRelay } from '../relay/native-relay.js';
import type { NativeTransport } from '../relay/native-conn.js';
import type { ConnectionRegistry, Terminable } from '../routing/connection-registry.js';
import type { RouteWaiters } from '../routing/route-waiters.js';
import type { CancelForwarder } from './cancel-forward.js';
import type { CancelRegistry } from './cancel-registry.js';
import type { WritePositionSource } from '../health/write-position.js';
import type { DeadlineWheel } from './deadline-wheel.js';
import type { WriteTracker } from './read-your-writes.js';
import type { SocketTuning } from './server-connect.js';
import type { PoolManager } from '../pool/pool-manager.js';
import type { SecretSource } from '../auth/index.js';
import type { ReadYourWritesSettings, SessionSettings, SessionWorld } from './session-types.js';
import type { ListenerTls, ServerTls } from '../tls/tls-contexts.js';

/** What a client session needs from its listener and the proxy; built once per listener. */
export interface SessionContext {
  readonly settings: SessionSettings;
  readonly tuning: SocketTuning;
  /** Moves relaying sessions' bytes off the JavaScript thread; undefined for `relay: js`. */
  readonly nativeRelay: NativeRelay | undefined;
  /**
   * Pooled sessions' sockets on the addon's transport (native-conn.ts) instead of Node's streams;
   * undefined for `relay: js` or without the addon.
   */
  readonly transport?: NativeTransport | undefined;
  readonly log: Logger;
  readonly metrics: ListenerMetrics;
  readonly registry: ConnectionRegistry<Terminable>;
  readonly cancels: CancelRegistry;
  readonly cancelForwarder: CancelForwarder;
  readonly admission: Admission;
  /** Every session's startup deadlines, on one timer. */
  readonly deadlines: DeadlineWheel;
  /** Sessions waiting for the routing table to change. */
  readonly waiters: RouteWaiters;
  /**
   * The engine's view of the proxy at `now` (performance.now(); see SessionWorld); without it, the
   * time is read when the engine first asks.
   */
  world(now?: number): SessionWorld;
  /** The listener's certificate now (`tls: terminate | require`), else undefined. */
  tls(): ListenerTls | undefined;
  /** The proxy's TLS to the servers now (proxy.server_tls). */
  serverTls(): ServerTls;
  /** The listener's nodes in the current routing table. */
  nodes(): readonly RouteNode[];
  /** Read-your-writes: identities with recent sessions on primary listeners (shared by all). */
  readonly writes: WriteTracker;
  /** Read-your-writes: the leader's WAL position; undefined when no listener uses it. */
  readonly writePosition: WritePositionSource | undefined;
  /** A try at `node` failed (refused, timed out, wrong role on the wire): check the agents again now. */
  nodeFailed(node: RouteNode): void;
  /** Pooled listeners (pool_mode session or transaction): the listener's pools. */
  readonly pool?: PoolManager | undefined;
  /** proxy.auth (not passthrough): where pooled clients' secrets come from. */
  readonly secrets?: SecretSource | undefined;
  /** A switchover pending away from this node: transaction pools start no transaction there. */
  readonly heldNode?: (() => string | undefined) | undefined;
  /**
   * The admin console's answer to a command (pool/admin-console.ts), ReadyForQuery included; a
   * promise (RELOAD) when it comes later.
   */
  readonly admin?: ((sql: string) => Buffer | Promise<Buffer>) | undefined;
}

/** The proxy's parts every listener's sessions share, and how to read its live state. */
export interface SharedParts extends Pick<
  SessionContext,
  | 'nativeRelay'
  | 'transport'
  | 'registry'
  | 'cancels'
  | 'cancelForwarder'
  | 'admission'
  | 'waiters'
  | 'deadlines'
  | 'nodeFailed'
  | 'serverTls'
  | 'writes'
  | 'writePosition'
  | 'secrets'
  | 'heldNode'
  | 'admin'
> {
  /** Seconds a member's replay is behind, as the leader last published it (read-your-writes). */
  replayLagS(member: string): number | undefined;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  /** A listener's nodes in the routing table now. */
  nodes(listener: string): readonly RouteNode[];
  /** A listener's certificate now. */
  tls(listener: string): ListenerTls | undefined;
  /** The default wait_timeout now (proxy/wait-timeout.ts). */
  derivedWaitTimeoutMs(): number;
}

/** What `listener`'s new sessions share under `config` (built again by a reload). */
export function sessionContext(
  listener: ListenerConfig,
  config: ProxyConfig,
  parts: SharedParts,
): SessionContext {
  const p = config.proxy;
  const name = listener.name;
  const { registry, admission } = parts;
  const nodes = () => parts.nodes(name);
  // Round robin and tie-breaking, per listener.
  let cursor = 0;
  const pick = (tried: ReadonlySet<string>) =>
    pickNode(nodes(), tried, listener.balance, (key) => registry.count(name, key), cursor++);
  const stillRouted = (node: { key: string; role: string }) =>
    nodes().some((n) => n.key === node.key && n.role === node.role);
  const hasClientRoom = () => admission.hasClientRoom(name);
  const count = (key: string) => registry.count(name, key);
  // Read-your-writes' sessions go first to the replicas least behind in replay.
  const pickFreshest = (tried: ReadonlySet<string>) => {
    const turn = cursor++;
    return (
      pickNode(
        freshestNodes(nodes(), (m) => parts.replayLagS(m)),
        tried,
        listener.balance,
        count,
        turn,
      ) ?? pickNode(nodes(), tried, listener.balance, count, turn)
    );
  };
  const writes = parts.writes;
  // Built once: its picks read the routing table when called.
  const primary = fallbackTo(config, parts);
  // One world per context, its time set at each event (a session's step reads it and keeps
  // nothing of it): an object and closures per event cost the pooled path a few percent. The time,
  // when not given, is read at its first use (most pooled events never ask).
  let at: number | undefined;
  const world: SessionWorld = {
    get now(): number {
      return (at ??= performance.now());
    },
    pick,
    stillRouted,
    hasClientRoom,
    get derivedWaitTimeoutMs() {
      return parts.derivedWaitTimeoutMs();
    },
    pickFreshest,
    recentlyWrote: (identity) => writes.recentlyWrote(identity, world.now),
    primary,
  };
  return {
    ...parts,
    settings: {
      listener: name,
      cluster: config.scope,
      tls: listener.tls,
      serverTls: p.server_tls.mode,
      waitTimeoutMs: listener.wait_timeout ?? p.wait_timeout,
      connectTimeoutMs: p.connect_timeout,
      startupTimeoutMs: p.startup_timeout,
      ...readYourWritesSettings(listener, p),
      pool:
        listener.pool_mode === 'none'
          ? undefined
          : {
              mode: listener.pool_mode,
              auth: p.auth.type === 'passthrough' ? undefined : p.auth.type,
              ignoreStartupParameters: p.ignore_startup_parameters,
              maxPreparedStatements: p.max_prepared_statements,
              adminUsers: p.admin_users,
            },
    },
    tuning: { keepaliveIdleMs: p.keepalive.idle },
    log: parts.log.child({ component: 'session', listener: name }),
    metrics: parts.metrics.forListener(name),
    world: (now?: number): SessionWorld => {
      at = now;
      return world;
    },
    tls: () => parts.tls(name),
    nodes,
  };
}

/** A replica listener's read-your-writes; a primary listener's identity kinds to track writes by. */
function readYourWritesSettings(
  listener: ListenerConfig,
  p: ProxyConfig['proxy'],
): { readYourWrites: ReadYourWritesSettings | undefined; writeIdentities: IdentitySpec[] } {
  const ryw = listener.read_your_writes;
  const kinds = new Set(
    p.listeners.flatMap((l) => (l.read_your_writes ? [l.read_your_writes.identity] : [])),
  );
  return {
    readYourWrites: ryw
      ? { identity: parseIdentitySpec(ryw.identity)!, timeoutMs: ryw.timeout, fallback: ryw.fallback }
      : undefined,
    writeIdentities: listener.role === 'primary' ? [...kinds].map((k) => parseIdentitySpec(k)!) : [],
  };
}

/** Read-your-writes' fallback: the first primary listener, picked by its balance, counted under it. */
function fallbackTo(config: ProxyConfig, parts: SharedParts): SessionWorld['primary'] {
  const l = config.proxy.listeners.find((x) => x.role === 'primary');
  if (l === undefined) return undefined;
  const nodes = () => parts.nodes(l.name);
  return {
    listener: l.name,
    pick: (tried) => pickNode(nodes(), tried, l.balance, (key) => parts.registry.count(l.name, key), 0),
    stillRouted: (node) => nodes().some((n) => n.key === node.key && n.role === node.role),
  };
}
