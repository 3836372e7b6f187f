import type { ListenerConfig } from '../config/proxy-schema.js';
import type { Logger } from '../observability/logger.js';
import type { ListenerRoute, RouteNode } from '../routing/types.js';
import type { CancelRegistry } from './cancel-registry.js';
import type { ConnectionRegistry, Terminable } from './connection-registry.js';
import type { DeadlineWheel } from './deadline-wheel.js';
import type { ListenerMetrics } from './metrics.js';
import type { NativeRelay } from './native-relay.js';
import type { SocketTuning } from './upstream.js';
import type { WaitQueue } from './wait-queue.js';

/** What a client session needs from its listener and the proxy; built once per listener. */
export interface ListenerContext<S extends Terminable = Terminable> {
  readonly listener: ListenerConfig;
  readonly cluster: string;
  readonly waitTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly startupTimeoutMs: number;
  readonly tuning: SocketTuning;
  /** Moves relaying sessions' bytes off the JavaScript thread; undefined for `relay: js`. */
  readonly nativeRelay: NativeRelay | undefined;
  readonly log: Logger;
  readonly metrics: ListenerMetrics;
  readonly registry: ConnectionRegistry<S>;
  readonly cancels: CancelRegistry;
  /** The native front's sessions' connect and startup deadlines (one timer for the process). */
  readonly deadlines: DeadlineWheel;
  /** Woken whenever the routing table changes. */
  readonly waits: WaitQueue;
  /** This listener's entry in the current routing table. */
  route(): ListenerRoute | undefined;
  /** A new value for round-robin and tie-breaking. */
  nextCursor(): number;
  /** A client connection ended (in any phase). */
  released(): void;
  /** A try at `node` failed (refused, timed out, wrong role on the wire): check the agents again now. */
  nodeFailed?(node: RouteNode): void;
}
