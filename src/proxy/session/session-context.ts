import type { ListenerConfig, ProxyConfig } from '../../config/proxy-schema.js';
import type { RouteNode } from '../../routing/types.js';
import type { ProxyMetrics } from '../../observability/proxy-metrics.js';
import { pickNode } from '../routing/balancer.js';
import type { Logger } from '../../observability/logger.js';
import type { ListenerMetrics } from '../../observability/proxy-metrics.js';
import type { Admission } from '../admission.js';
import type { NativeRelay } from '../relay/native-relay.js';
import type { ConnectionRegistry, Terminable } from '../routing/connection-registry.js';
import type { RouteWaiters } from '../routing/route-waiters.js';
import type { CancelForwarder } from './cancel-forward.js';
import type { CancelRegistry } from './cancel-registry.js';
import type { DeadlineWheel } from './deadline-wheel.js';
import type { SocketTuning } from './server-connect.js';
import type { SessionSettings, SessionWorld } from './session-types.js';
import type { ListenerTls, ServerTls } from '../tls/tls-contexts.js';

/** What a client session needs from its listener and the proxy; built once per listener. */
export interface SessionContext {
  readonly settings: SessionSettings;
  readonly tuning: SocketTuning;
  /** Moves relaying sessions' bytes off the JavaScript thread; undefined for `relay: js`. */
  readonly nativeRelay: NativeRelay | undefined;
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
  /** The engine's view of the proxy at `now` (see SessionWorld). */
  world(now: number): SessionWorld;
  /** The listener's certificate now (`tls: terminate | require`), else undefined. */
  tls(): ListenerTls | undefined;
  /** The proxy's TLS to the servers now (proxy.server_tls). */
  serverTls(): ServerTls;
  /** The listener's nodes in the current routing table. */
  nodes(): readonly RouteNode[];
  /** A try at `node` failed (refused, timed out, wrong role on the wire): check the agents again now. */
  nodeFailed(node: RouteNode): void;
}

/** The proxy's parts every listener's sessions share, and how to read its live state. */
export interface SharedParts extends Pick<
  SessionContext,
  | 'nativeRelay'
  | 'registry'
  | 'cancels'
  | 'cancelForwarder'
  | 'admission'
  | 'waiters'
  | 'deadlines'
  | 'nodeFailed'
  | 'serverTls'
> {
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
    },
    tuning: { keepaliveIdleMs: p.keepalive.idle },
    log: parts.log.child({ component: 'session', listener: name }),
    metrics: parts.metrics.forListener(name),
    world: (now): SessionWorld => ({
      now,
      pick,
      stillRouted,
      hasClientRoom,
      derivedWaitTimeoutMs: parts.derivedWaitTimeoutMs(),
    }),
    tls: () => parts.tls(name),
    nodes,
  };
}
