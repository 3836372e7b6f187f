/**
 * A pool's housekeeping, run once a second by its PoolManager: idle servers past
 * server_idle_timeout or server_lifetime close (min_pool_size kept on each node), and clients that
 * waited past the listener's wait timeout are refused. The verdicts are pool-rules.ts's.
 */
import { SQLSTATE, errorResponse } from '../../protocol/index.js';
import type { Pool } from './pool.js';
import { idleServerVerdict, type PoolLimits } from './pool-rules.js';
import type { PooledServer } from './pooled-server.js';
import { defer } from '../microtasks.js';

/** Closes (through `close`, which also forgets it) each idle server whose time is up. */
export function closeExpired(
  p: Pool,
  limits: PoolLimits,
  now: number,
  close: (s: PooledServer) => void,
): void {
  const perNode = new Map<string, number>();
  for (const s of p.servers) perNode.set(s.node.name, (perNode.get(s.node.name) ?? 0) + 1);
  for (const s of [...p.idle]) {
    const onNode = perNode.get(s.node.name) ?? 0;
    const verdict = idleServerVerdict(s, limits, now, onNode <= limits.minPoolSize);
    if (verdict === undefined) continue;
    perNode.set(s.node.name, onNode - 1);
    close(s);
  }
}

/** Refuses (57P03, in a microtask) each client that has waited `waitMs` or more for a server. */
export function endLongWaits(p: Pool, now: number, waitMs: number, listener: string): void {
  while (p.waiters.length > 0 && now - p.waiters[0]!.since >= waitMs) {
    const w = p.waiters.shift()!;
    const fatal = errorResponse({
      severity: 'FATAL',
      code: SQLSTATE.CANNOT_CONNECT_NOW,
      message: `pgfleet: no server connection for database "${p.database}" user "${p.user}" on listener "${listener}" within ${waitMs / 1000}s`,
    });
    defer(() => w.client.onPoolFailed(fatal));
  }
}
