/**
 * What the admin views and metrics show of a pool (pgbouncer's SHOW POOLS, SERVERS, CLIENTS), read
 * from its record at `now`. Pure.
 */
import type { Pool, PoolClient, PoolTotals } from './pool.js';
import { RUNNING, type ListenerAdminState } from './listener-commands.js';

export interface PoolStatus {
  readonly database: string;
  readonly user: string;
  readonly mode: string;
  /** PAUSE (or KILL): the listener lends no server until RESUME. */
  readonly paused: boolean;
  /** DISABLE: the listener refuses new clients until ENABLE. */
  readonly disabled: boolean;
  readonly clientsActive: number;
  readonly clientsWaiting: number;
  /** Of clientsWaiting, those held by a pending switchover (they wait for the new primary). */
  readonly clientsHeld: number;
  readonly clients: number;
  readonly serversActive: number;
  readonly serversIdle: number;
  readonly serversLogin: number;
  readonly maxWaitMs: number;
  readonly nodes: Record<string, { active: number; idle: number }>;
  readonly totals: PoolTotals;
}

export interface ServerRow {
  readonly id: number;
  readonly database: string;
  readonly user: string;
  readonly node: string;
  readonly state: string;
  readonly pid: number | undefined;
  readonly ageS: number;
  readonly statements: number;
}

export interface ClientRow {
  readonly database: string;
  readonly user: string;
  readonly state: 'waiting' | 'active' | 'idle';
  readonly server: number | undefined;
}

export function poolStatus(
  p: Pool,
  mode: string,
  now: number,
  holding = false,
  state: ListenerAdminState = RUNNING,
): PoolStatus {
  const nodes: Record<string, { active: number; idle: number }> = {};
  let active = 0;
  for (const s of p.servers) {
    const row = (nodes[s.node.name] ??= { active: 0, idle: 0 });
    if (s.state === 'idle') row.idle++;
    else {
      row.active++;
      active++;
    }
  }
  return {
    database: p.database,
    user: p.user,
    mode,
    paused: state.paused,
    disabled: state.disabled,
    clients: p.clients.size,
    clientsActive: active,
    clientsWaiting: p.waiters.length,
    clientsHeld: holding ? p.waiters.length : 0,
    serversActive: active,
    serversIdle: p.idle.length,
    serversLogin: p.logins,
    maxWaitMs: p.waiters.length > 0 ? now - p.waiters[0]!.since : 0,
    nodes,
    totals: { ...p.totals },
  };
}

export function serverRows(p: Pool, now: number): ServerRow[] {
  return [...p.servers].map((s) => ({
    id: s.id,
    database: s.database,
    user: s.user,
    node: s.node.name,
    state: s.state,
    pid: s.backendKey?.processId,
    ageS: Math.round((now - s.createdAt) / 1000),
    statements: s.statements.size,
  }));
}

export function clientRows(p: Pool): ClientRow[] {
  const holding = new Map<PoolClient, number>();
  for (const s of p.servers) if (s.borrower !== undefined) holding.set(s.borrower as PoolClient, s.id);
  const waiting = new Set(p.waiters.map((w) => w.client));
  return [...p.clients].map((c) => ({
    database: p.database,
    user: p.user,
    state: waiting.has(c) ? 'waiting' : holding.has(c) ? 'active' : 'idle',
    server: holding.get(c),
  }));
}
