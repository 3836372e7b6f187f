/**
 * Parts every session of the proxy shares, made at start from the configuration: the one timer
 * wheel of startup deadlines, the cancel forwarder with its broadcast limits, and read-your-writes'
 * source of the leader's WAL position.
 */
import type { ConnectionOptions } from 'node:tls';
import type { ProxyConfig } from '../config/proxy-schema.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { ProxyMetrics } from '../observability/proxy-metrics.js';
import { WritePositionSource, type LeaderApi } from './health/write-position.js';
import { CancelForwarder } from './session/cancel-forward.js';
import type { CancelRegistry } from './session/cancel-registry.js';
import { DeadlineWheel } from './session/deadline-wheel.js';

/** How late a session's startup deadline may fire (one timer for all of them). */
const DEADLINE_TICK_MS = 25;

/** How long the leader's WAL position may take: the longest read_your_writes timeout (1 s if none). */
function rywTimeoutMs(p: ProxyConfig['proxy']): number {
  return Math.max(1_000, ...p.listeners.map((l) => l.read_your_writes?.timeout ?? 0));
}
/** Client addresses whose cancel broadcasts are remembered at most (the rest start afresh). */
const CANCEL_SOURCES_REMEMBERED = 10_000;

export function deadlineWheel(log: Logger): DeadlineWheel {
  return new DeadlineWheel(DEADLINE_TICK_MS, (err) =>
    log.error({ err: errorMessage(err) }, 'session deadline handler failed'),
  );
}

/** Asks `leaderApi()` for the leader's WAL position, within the running configuration's timeout. */
export function writePositionSource(
  leaderApi: () => LeaderApi,
  config: () => ProxyConfig,
  agentTls: ConnectionOptions | undefined,
): WritePositionSource {
  return new WritePositionSource(leaderApi, () => rywTimeoutMs(config().proxy), agentTls);
}

export function cancelForwarder(
  cancels: CancelRegistry,
  p: ProxyConfig['proxy'],
  metrics: ProxyMetrics,
): CancelForwarder {
  return new CancelForwarder(
    cancels,
    {
      perSecond: p.cancel_broadcasts_per_second,
      burst: Math.max(1, 2 * p.cancel_broadcasts_per_second),
      maxSources: CANCEL_SOURCES_REMEMBERED,
    },
    p.connect_timeout,
    (result) => metrics.cancelRequests.inc({ result }),
  );
}
