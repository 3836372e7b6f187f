/**
 * The watchdog's decisions, pure: it owns the lease deadline outside the agent's event loop, and
 * what happens to PostgreSQL when the agent is gone. `now` is the watchdog's monotonic clock.
 *
 * | agent     | event                                 | decision                                   |
 * |-----------|---------------------------------------|--------------------------------------------|
 * | connected | report (pid, lease, fire in N ms)     | remember; fire at now + N while leading    |
 * | connected | fire time passes (agent frozen)       | fence PostgreSQL, revoke the lease         |
 * | connected | agent closes cleanly (`exit`)         | exit, nothing to fence (it stopped PG)     |
 * | connected | connection lost (agent died, handover)| gone: the grace period starts              |
 * | gone      | an agent connects                     | it adopts PostgreSQL and the lease         |
 * | gone      | grace ends, or the fire time passes   | fence PostgreSQL, revoke the lease, exit   |
 *
 * The fire time is the agent's lease deadline plus half of retry_timeout, still before the key can
 * expire; the grace ends at whichever comes first of it and `restart_grace` after the agent was
 * lost. So PostgreSQL keeps serving while a restarted agent is on its way, never past the point
 * where another member may take the key, and once fenced the key is released at once rather than
 * at its expiry. `stop_postgres_on_agent_death: false` keeps PostgreSQL running past the grace
 * (Patroni's behaviour) — a primary is still fenced at its fire time.
 */

export interface WatchdogSettings {
  /** `agent.restart_grace`. */
  readonly graceMs: number;
  /** `agent.stop_postgres_on_agent_death`. */
  readonly stopOnAgentDeath: boolean;
}

export interface WatchdogState {
  readonly agent: 'connected' | 'gone';
  /** When the agent was lost (monotonic), while gone. */
  readonly goneAtMs: number | undefined;
  /** The postmaster to fence, whatever its role; undefined when PostgreSQL is not running. */
  readonly pid: number | undefined;
  /** The agent's etcd lease (member key, and the leader key when leading). */
  readonly leaseId: string | undefined;
  /** Armed while leading: fence at this time unless a report moves it. */
  readonly fireAtMs: number | undefined;
  readonly settings: WatchdogSettings;
  /** Fenced since the agent last reported a running PostgreSQL. */
  readonly fired: boolean;
}

export type WatchdogEvent =
  | { readonly type: 'connected'; readonly nowMs: number }
  | {
      readonly type: 'report';
      readonly nowMs: number;
      readonly pid: number | undefined;
      readonly leaseId: string | undefined;
      /** Undefined: not leading, nothing to fire at. */
      readonly fireInMs: number | undefined;
      readonly settings: WatchdogSettings;
    }
  | { readonly type: 'gone'; readonly nowMs: number }
  | { readonly type: 'exit' }
  | { readonly type: 'tick'; readonly nowMs: number };

export type WatchdogAction =
  | {
      readonly type: 'fence';
      readonly pid: number | undefined;
      readonly leaseId: string | undefined;
      readonly why: string;
    }
  | { readonly type: 'exit' };

export interface WatchdogStep {
  readonly state: WatchdogState;
  readonly actions: readonly WatchdogAction[];
}

export function initialWatchdogState(settings: WatchdogSettings): WatchdogState {
  return {
    agent: 'gone',
    goneAtMs: undefined,
    pid: undefined,
    leaseId: undefined,
    fireAtMs: undefined,
    settings,
    fired: false,
  };
}

/** When the next tick is due (monotonic), or undefined when nothing is pending. */
export function nextDeadline(s: WatchdogState): number | undefined {
  const grace =
    s.agent === 'gone' && s.goneAtMs !== undefined && s.settings.stopOnAgentDeath
      ? s.goneAtMs + s.settings.graceMs
      : undefined;
  const times = [s.fireAtMs, grace].filter((t): t is number => t !== undefined);
  return times.length === 0 ? undefined : Math.min(...times);
}

function fence(s: WatchdogState, why: string): WatchdogStep {
  const next: WatchdogState = { ...s, pid: undefined, fireAtMs: undefined, fired: true };
  const actions: WatchdogAction[] = [{ type: 'fence', pid: s.pid, leaseId: s.leaseId, why }];
  if (s.agent === 'gone') actions.push({ type: 'exit' });
  return { state: { ...next, leaseId: undefined }, actions };
}

export function watchdogStep(s: WatchdogState, e: WatchdogEvent): WatchdogStep {
  switch (e.type) {
    case 'connected':
      return { state: { ...s, agent: 'connected', goneAtMs: undefined }, actions: [] };
    case 'report':
      return {
        state: {
          ...s,
          pid: e.pid,
          leaseId: e.leaseId,
          fireAtMs: e.fireInMs === undefined ? undefined : e.nowMs + e.fireInMs,
          settings: e.settings,
          fired: e.pid === undefined ? s.fired : false,
        },
        actions: [],
      };
    case 'gone':
      if (s.agent === 'gone') return { state: s, actions: [] };
      return { state: { ...s, agent: 'gone', goneAtMs: e.nowMs }, actions: [] };
    case 'exit':
      return { state: s, actions: [{ type: 'exit' }] };
    case 'tick': {
      if (s.fireAtMs !== undefined && e.nowMs >= s.fireAtMs) {
        return fence(s, 'the lease deadline passed without a renewal');
      }
      const due = nextDeadline(s);
      if (s.agent === 'gone' && due !== undefined && e.nowMs >= due) {
        return fence(s, 'the agent did not come back within restart_grace');
      }
      return { state: s, actions: [] };
    }
  }
}
