import type { RouteNode } from '../../routing/types.js';
import type { Logger } from '../../observability/logger.js';
import type { ListenerMetrics } from '../../observability/proxy-metrics.js';
import type { Admission } from '../admission.js';
import type { NativeRelay } from '../relay/native-relay.js';
import type { ConnectionRegistry, Terminable } from '../routing/connection-registry.js';
import type { RouteWaiters } from '../routing/route-waiters.js';
import type { CancelForwarder } from './cancel-forward.js';
import type { CancelRegistry } from './cancel-registry.js';
import type { WritePositionSource } from '../health/write-position.js';
import type { DeadlineWheel } from './deadline-wheel.js';
import type { WriteTracker } from './read-your-writes.js';
import type { SocketTuning } from './server-connect.js';
import type { SessionSettings, SessionWorld } from './session-types.js';

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
  /** The listener's nodes in the current routing table. */
  nodes(): readonly RouteNode[];
  /** Read-your-writes: identities with recent sessions on primary listeners (shared by all). */
  readonly writes: WriteTracker;
  /** Read-your-writes: the leader's WAL position; undefined when no listener uses it. */
  readonly writePosition: WritePositionSource | undefined;
  /** A try at `node` failed (refused, timed out, wrong role on the wire): check the agents again now. */
  nodeFailed(node: RouteNode): void;
}
