/**
 * POST /switchover and /failover with Patroni's checks, status codes and messages, so that
 * `patronictl switchover` / `failover` work against pgfleet agents:
 * 400 malformed request, 412 precondition failed, 200 done (after polling the DCS), 503 failed;
 * with `scheduled_at` (switchover only): 202 `Switchover scheduled` (the `failover` key carries the
 * time; the leader acts on it then), 400 no timezone or paused, 422 in the past or unparsable.
 * DELETE /switchover removes a scheduled one.
 * @see patroni/api.py do_POST_failover, parse_schedule, is_failover_possible, poll_failover_result,
 *   do_DELETE_switchover
 */
import type http from 'node:http';
import type { Agent } from '../agent/agent.js';
import type { ClusterView } from '../cluster/types.js';
import { isPaused } from '../ha/dynamic-config.js';
import { formatScheduledAt } from '../ha/schedule.js';
import { checkSchedule } from '../agent/restart-rules.js';
import { syncFacts } from '../ha/sync-failover.js';
import { syncSettingsOf } from '../ha/sync-settings.js';

const MAX_BODY_BYTES = 64 * 1024;

export interface Reply {
  readonly status: number;
  readonly body: string;
}

export async function readJsonBody(req: http.IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

const str = (x: unknown): string | undefined => (typeof x === 'string' && x !== '' ? x : undefined);

/** A scheduled switchover's `scheduled_at`, checked as Patroni's parse_schedule: 400 no timezone, 422 past or unparsable. */
function checkSwitchoverSchedule(text: string, nowMs: number): Reply | { text: string } {
  const at = checkSchedule(text, 'switchover', nowMs);
  return 'status' in at ? at : { text: formatScheduledAt(at.ms) };
}

/** Patroni's is_failover_possible, over member keys: the 412 reason, if any. */
function failoverProblem(
  view: ClusterView,
  leader: string | undefined,
  candidate: string | undefined,
  action: string,
): string | undefined {
  if (leader && view.leader !== leader) return 'leader name does not match';
  // Synchronous mode `on`: a switchover goes to a sync standby (a failover may go anywhere).
  const sync =
    syncSettingsOf(view.config).mode === 'on' ? syncFacts(view, syncSettingsOf(view.config)) : undefined;
  if (candidate && action === 'switchover' && sync && !sync.standbys.has(candidate))
    return 'candidate name does not match with sync_standby';
  if (candidate && !view.members.has(candidate)) return 'candidate does not exists';
  if (!candidate && sync && ![...view.members.keys()].some((n) => sync.standbys.has(n)))
    return `${action} is not possible: can not find sync_standby`;
  const eligible = [...view.members.values()].filter(
    (m) =>
      m.name !== view.leader &&
      (candidate === undefined || m.name === candidate) &&
      (candidate !== undefined || sync === undefined || sync.standbys.has(m.name)) &&
      m.state === 'running' &&
      !m.tags.nofailover,
  );
  return eligible.length === 0 ? `${action} is not possible: no good candidates have been found` : undefined;
}

export async function handleFailover(
  agent: Agent,
  action: 'switchover' | 'failover',
  request: Record<string, unknown> | undefined,
  pollTimeoutMs: number,
): Promise<Reply> {
  if (!request) return { status: 400, body: 'Bad request: a JSON object is required' };
  const leader = str(request.leader);
  const candidate = str(request.candidate) ?? str(request.member);
  const scheduledAt = str(request.scheduled_at);
  if (action === 'failover' && !candidate) {
    return { status: 400, body: 'Failover could be performed only to a specific candidate' };
  }
  if (action === 'switchover' && !leader) {
    return { status: 400, body: 'Switchover could be performed only from a specific leader' };
  }
  const { view } = await agent.requests.loadCluster();
  const paused = isPaused(view.config);
  let scheduled: string | undefined;
  if (scheduledAt) {
    if (action === 'failover') return { status: 400, body: "Failover can't be scheduled" };
    if (paused) return { status: 400, body: "Can't schedule switchover in the paused state" };
    const checked = checkSwitchoverSchedule(scheduledAt, Date.now());
    if ('status' in checked) return checked;
    scheduled = checked.text;
  }
  if (paused && !candidate) {
    return { status: 400, body: 'Switchover is possible only to a specific candidate in a paused state' };
  }
  if (leader && leader === candidate)
    return { status: 400, body: 'Switchover target and source are the same' };
  // Patroni checks a scheduled request only when its time comes (the leader then drops a bad one).
  const problem = scheduled === undefined ? failoverProblem(view, leader, candidate, action) : undefined;
  if (problem) return { status: 412, body: problem };
  await agent.requests.requestFailover(leader ?? view.leader, candidate, scheduled);
  if (scheduled !== undefined) return { status: 202, body: 'Switchover scheduled' };
  return await pollResult(agent, view.leader, candidate, action, pollTimeoutMs);
}

/** DELETE /switchover: 200 deleted, 404 none scheduled, 409 the key changed meanwhile. */
export async function handleDeleteSwitchover(agent: Agent): Promise<Reply> {
  const outcome = await agent.requests.deleteScheduledSwitchover();
  if (outcome === 'deleted') return { status: 200, body: 'scheduled switchover deleted' };
  if (outcome === 'none') return { status: 404, body: 'no switchover is scheduled' };
  return { status: 409, body: 'Conflict' };
}

async function pollResult(
  agent: Agent,
  oldLeader: string | undefined,
  candidate: string | undefined,
  action: string,
  timeoutMs: number,
): Promise<Reply> {
  const verb = action === 'switchover' ? 'switched' : 'failed';
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    try {
      const { view, values } = await agent.requests.loadCluster();
      if (view.leader !== undefined && view.leader !== oldLeader) {
        if (!candidate || candidate === view.leader) {
          return { status: 200, body: `Successfully ${verb} over to "${view.leader}"` };
        }
        return {
          status: 200,
          body: `${verb[0]!.toUpperCase()}${verb.slice(1)} over to "${view.leader}" instead of "${candidate}"`,
        };
      }
      if (!values.has('failover'))
        return { status: 503, body: `${action[0]!.toUpperCase()}${action.slice(1)} failed` };
    } catch {
      // DCS hiccup: keep polling until the deadline
    }
  }
  return { status: 503, body: `${action[0]!.toUpperCase()}${action.slice(1)} status unknown` };
}
