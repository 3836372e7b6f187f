/**
 * Patroni's restart rules, pure: which POST /restart bodies are admitted (with Patroni's status
 * codes and messages for each refusal), whether a restart's conditions hold on this node, and
 * when a scheduled restart runs.
 *
 * | body key           | admitted when                           | refusal                          |
 * |--------------------|-----------------------------------------|----------------------------------|
 * | `schedule`         | ISO 8601 with a timezone, not in the past, not paused | 400 / 422 / 500   |
 * | `role`             | `primary` (or `master`) or `replica`    | 400                              |
 * | `postgres_version` | `X.Y` (X ≥ 10) or `X.Y.Z`               | 400                              |
 * | `timeout`          | a positive number of seconds            | 400                              |
 * | `restart_pending`  | always (its presence is the filter)     |                                  |
 * | anything else      | never                                   | 400 Unknown filter               |
 *
 * Conditions (Patroni's restart_matches): the role matches, the running server version is lower
 * than `postgres_version`, and with `restart_pending` PostgreSQL has a pending restart.
 * @see patroni/api.py do_POST_restart, parse_schedule; patroni/ha.py restart_matches,
 *   evaluate_scheduled_restart; patroni/postgresql/misc.py postgres_version_to_int
 */
import { parseDurationMs } from '../config/units.js';
import { formatScheduledAt, parseScheduledAt, scheduleTiming } from '../ha/schedule.js';

export interface RestartRequest {
  /** Epoch ms of a scheduled restart; undefined: restart now. */
  readonly scheduleMs?: number;
  readonly role?: 'primary' | 'replica';
  readonly postgresVersion?: string;
  /** Patroni tests the key's presence, not its value. */
  readonly restartPending: boolean;
  readonly timeoutS?: number;
}

export type Reply = { readonly status: number; readonly body: string };

export type Admission = { readonly request: RestartRequest } | { readonly refused: Reply };

/** Patroni's schedule answers (api.py parse_schedule), for `action` restart or switchover. */
export function checkSchedule(text: unknown, action: string, nowMs: number): { ms: number } | Reply {
  const parsed = typeof text === 'string' ? parseScheduledAt(text) : { error: 'unparsable' as const };
  if (parsed.ms === undefined && parsed.error === 'no_timezone')
    return { status: 400, body: `Timezone information is mandatory for the scheduled ${action}` };
  if (parsed.ms === undefined)
    return {
      status: 422,
      body: 'Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601',
    };
  if (parsed.ms < nowMs) return { status: 422, body: `Cannot schedule ${action} in the past` };
  return { ms: parsed.ms };
}

/** `9.6.3` → 90603, `15.4` → 150004; a message (Patroni's) when malformed. */
export function postgresVersionToInt(text: unknown): number | string {
  const s = String(text);
  const parts = s.split('.');
  if (parts.some((p) => !/^\s*[+-]?\d+\s*$/.test(p))) return `Invalid PostgreSQL version: ${s}`;
  const nums = parts.map(Number);
  if (nums.length < 2 || (nums.length === 2 && nums[0]! < 10) || nums.length > 3)
    return `Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: ${s}`;
  if (nums.length === 2) nums.splice(1, 0, 0);
  return Number(nums.map((n) => String(n).padStart(2, '0')).join(''));
}

/** POST /restart's body, checked key by key in the order given, as Patroni does. */
export function admitRestart(
  body: Readonly<Record<string, unknown>>,
  nowMs: number,
  paused: boolean,
): Admission {
  if (paused && 'schedule' in body)
    return { refused: { status: 500, body: "Can't schedule restart in the paused state" } };
  const request: { -readonly [K in keyof RestartRequest]: RestartRequest[K] } = { restartPending: false };
  for (const [key, value] of Object.entries(body)) {
    if (key === 'schedule') {
      const at = checkSchedule(value, 'restart', nowMs);
      if ('status' in at) return { refused: at };
      request.scheduleMs = at.ms;
    } else if (key === 'role') {
      if (value !== 'master' && value !== 'primary' && value !== 'replica')
        return { refused: { status: 400, body: 'PostgreSQL role should be either primary or replica' } };
      request.role = value === 'replica' ? 'replica' : 'primary';
    } else if (key === 'postgres_version') {
      const v = postgresVersionToInt(value);
      if (typeof v === 'string') return { refused: { status: 400, body: v } };
      request.postgresVersion = String(value);
    } else if (key === 'timeout') {
      const ms = parseDurationMs(value);
      if (ms === undefined || ms <= 0)
        return { refused: { status: 400, body: 'Timeout should be a positive number of seconds' } };
      request.timeoutS = ms / 1000;
    } else if (key === 'restart_pending') {
      request.restartPending = true;
    } else {
      return { refused: { status: 400, body: `Unknown filter for the scheduled restart: ${key}` } };
    }
  }
  return { request };
}

export interface RestartFacts {
  /** undefined when PostgreSQL does not answer. */
  readonly role: 'primary' | 'replica' | undefined;
  /** server_version_num, e.g. 150004. */
  readonly serverVersion: number;
  readonly pendingRestart: boolean;
}

/** Why a restart's conditions do not hold here (Patroni's reason_to_cancel); undefined: go. */
export function restartMismatch(req: RestartRequest, facts: RestartFacts): string | undefined {
  let reason: string | undefined;
  if (req.role !== undefined && req.role !== facts.role) reason = 'host role mismatch';
  if (req.postgresVersion !== undefined) {
    const wanted = postgresVersionToInt(req.postgresVersion);
    if (typeof wanted === 'number' && wanted <= facts.serverVersion) reason = 'postgres version mismatch';
  }
  if (req.restartPending && !facts.pendingRestart) reason = 'pending restart flag is not set';
  return reason;
}

/** The member key's (and /patroni's) `scheduled_restart`, as Patroni writes it. */
export function scheduledRestartJson(
  req: RestartRequest,
  postmasterStartMs?: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = { schedule: formatScheduledAt(req.scheduleMs ?? 0) };
  if (req.role !== undefined) out.role = req.role;
  if (req.postgresVersion !== undefined) out.postgres_version = req.postgresVersion;
  if (req.restartPending) out.restart_pending = true;
  if (req.timeoutS !== undefined) out.timeout = req.timeoutS;
  if (postmasterStartMs !== undefined) out.postmaster_start_time = new Date(postmasterStartMs).toISOString();
  return out;
}

export type ScheduledRestartStep =
  | { readonly kind: 'wait' }
  | { readonly kind: 'run'; readonly sleepMs: number }
  | { readonly kind: 'drop'; readonly reason: string };

/**
 * A scheduled restart in this cycle (Patroni's evaluate_scheduled_restart): dropped when the
 * postmaster restarted since it was asked for, or when stale; run up to loop_wait early (after
 * sleeping until the moment); paused: it waits.
 */
export function scheduledRestartStep(s: {
  readonly scheduleMs: number;
  readonly askedWithStartMs: number | undefined;
  readonly postmasterStartMs: number | undefined;
  readonly wallNowMs: number;
  readonly loopWaitMs: number;
  readonly paused: boolean;
}): ScheduledRestartStep {
  if (
    s.askedWithStartMs !== undefined &&
    s.postmasterStartMs !== undefined &&
    s.askedWithStartMs !== s.postmasterStartMs
  )
    return { kind: 'drop', reason: 'postgres restart has already happened' };
  if (s.paused) return { kind: 'wait' };
  const timing = scheduleTiming(s.scheduleMs, s.wallNowMs, s.loopWaitMs);
  if (timing === 'wait') return { kind: 'wait' };
  if (timing === 'stale') return { kind: 'drop', reason: 'stale scheduled restart' };
  return { kind: 'run', sleepMs: Math.max(0, s.scheduleMs - s.wallNowMs) };
}
