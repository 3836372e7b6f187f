/**
 * A listener context for unit tests of session logic: listener "rw" (primary) of cluster "s",
 * with real registries and metrics, and a route of `nodes()`.
 */
import { parseProxyConfig } from '../../../src/config/proxy-schema.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { CancelRegistry } from '../../../src/proxy/cancel-registry.js';
import { ConnectionRegistry, type Terminable } from '../../../src/proxy/connection-registry.js';
import { DeadlineWheel } from '../../../src/proxy/deadline-wheel.js';
import type { ListenerContext } from '../../../src/proxy/listener-context.js';
import { ProxyMetrics } from '../../../src/proxy/metrics.js';
import { WaitQueue } from '../../../src/proxy/wait-queue.js';
import type { RouteNode } from '../../../src/routing/types.js';

export function fakeListenerContext(
  nodes: () => readonly RouteNode[],
  opts: { waitTimeoutMs: number; connectTimeoutMs: number; balance?: 'round_robin' },
): ListenerContext<Terminable> {
  const config = parseProxyConfig({
    scope: 's',
    etcd3: { hosts: ['127.0.0.1:2379'] },
    proxy: {
      listeners: [{ name: 'rw', listen: '127.0.0.1:6432', role: 'primary', balance: opts.balance }],
    },
  });
  let cursor = 0;
  return {
    listener: config.proxy.listeners[0]!,
    cluster: 's',
    waitTimeoutMs: opts.waitTimeoutMs,
    connectTimeoutMs: opts.connectTimeoutMs,
    startupTimeoutMs: opts.connectTimeoutMs,
    tuning: { keepaliveIdleMs: 0 },
    nativeRelay: undefined,
    log: silentLogger(),
    metrics: new ProxyMetrics().forListener('rw'),
    registry: new ConnectionRegistry(),
    cancels: new CancelRegistry(),
    waits: new WaitQueue(),
    deadlines: new DeadlineWheel(5, (err) => {
      throw err;
    }),
    route: () => ({ listener: 'rw', nodes: [...nodes()], excluded: {}, reasons: {} }),
    nextCursor: () => cursor++,
    released: () => undefined,
  };
}
