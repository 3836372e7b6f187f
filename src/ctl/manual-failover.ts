/**
 * `pgfleet ctl switchover | failover`, as patronictl does them: check the request against the
 * cluster (pure, `planManualFailover`), then POST it to the leader's REST API (`/switchover`,
 * `/failover`), which writes the `failover` key and answers once the leader moved (200) or not
 * (412 / 503). When no member's API answers, fall back to writing the `failover` key ourselves and
 * polling the leader key, as patronictl does.
 * @see patroni/ctl.py _do_failover_or_switchover
 */
import type { Agent, Response } from 'undici';
import { restFetch } from '../api/rest-tls.js';
import type { ClusterView } from '../cluster/types.js';
import type { AgentDcs } from '../dcs/agent-store.js';
import { PgfleetError, errorMessage } from '../errors.js';
import { formatScheduledAt, parseScheduledAt } from '../ha/schedule.js';

export type ManualAction = 'switchover' | 'failover';

export interface ManualFailoverPlan {
  readonly action: ManualAction;
  /** The current leader (required for a switchover). */
  readonly leader: string | undefined;
  readonly candidate: string | undefined;
  /** Where to POST: the leader's API, or the candidate's when there is no leader. */
  readonly apiUrl: string | undefined;
  /** When a scheduled switchover is to run (`scheduled_at`, UTC ISO 8601); undefined: now. */
  readonly scheduledAt?: string | undefined;
}

const reject = (message: string) => new PgfleetError('ERR_CTL_REJECTED', message);

/**
 * `--scheduled TIME`: undefined or `now` → now (undefined); otherwise ISO 8601 with a timezone, in
 * the future, returned as Patroni writes it. Throws ERR_CTL_REJECTED with the reason.
 */
export function parseScheduleOption(text: string | undefined, nowMs: number): string | undefined {
  if (text === undefined || text === 'now') return undefined;
  const parsed = parseScheduledAt(text);
  if (parsed.ms === undefined) {
    throw reject(
      parsed.error === 'no_timezone'
        ? `--scheduled '${text}' has no timezone: write it like 2026-05-01T10:00:00+00:00`
        : `--scheduled '${text}' is not an ISO 8601 time like 2026-05-01T10:00:00+00:00 (or 'now')`,
    );
  }
  if (parsed.ms < nowMs) throw reject(`--scheduled '${text}' is in the past`);
  return formatScheduledAt(parsed.ms);
}

/** Validates a request against the cluster; throws ERR_CTL_REJECTED with patronictl's reasons. */
export function planManualFailover(
  view: ClusterView,
  action: ManualAction,
  candidate: string | undefined,
  scheduledAt?: string,
): ManualFailoverPlan {
  const leader = view.leader;
  if (action === 'failover' && scheduledAt !== undefined) throw reject("failover can't be scheduled");
  if (action === 'switchover' && leader === undefined) {
    throw reject(`cluster '${view.scope}' has no leader: a switchover needs one (use failover)`);
  }
  if (action === 'failover' && candidate === undefined) {
    throw reject('failover could be performed only to a specific candidate (--candidate NAME)');
  }
  if (candidate !== undefined) {
    const m = view.members.get(candidate);
    const known = [...view.members.keys()].sort().join(', ');
    if (!m) throw reject(`candidate '${candidate}' is not a member of '${view.scope}' (members: ${known})`);
    if (candidate === leader) throw reject(`member '${candidate}' is already the leader`);
    if (m.tags.nofailover) throw reject(`member '${candidate}' is tagged nofailover`);
    if (m.state !== 'running') throw reject(`candidate '${candidate}' is not running (state: ${m.state})`);
  } else if (![...view.members.values()].some((m) => m.name !== leader && m.state === 'running')) {
    throw reject(`${action} is not possible: no running replica to take over`);
  }
  const target = view.members.get(leader ?? candidate ?? '');
  return { action, leader, candidate, apiUrl: target?.apiUrl, ...(scheduledAt ? { scheduledAt } : {}) };
}

export interface RunOptions {
  readonly dcs: Pick<AgentDcs, 'load' | 'writeFailover'>;
  readonly auth: { readonly username: string; readonly password?: string | undefined } | undefined;
  /** TLS for an https api_url (api/rest-tls.ts). */
  readonly dispatcher?: Agent | undefined;
  /** Deadline for the REST call (the agent polls up to about 20 s) and for the DCS fallback. */
  readonly timeoutMs: number;
  /** Where progress lines go (stdout in the CLI). */
  readonly say: (line: string) => void;
}

/**
 * Carries out a plan; resolves with the agent's success sentence (a scheduled switchover: once the
 * agent accepted it, 202), throws ERR_CTL_FAILED otherwise.
 */
export async function runManualFailover(plan: ManualFailoverPlan, opts: RunOptions): Promise<string> {
  const body = JSON.stringify({
    ...(plan.leader !== undefined ? { leader: plan.leader } : {}),
    ...(plan.candidate !== undefined ? { candidate: plan.candidate } : {}),
    ...(plan.scheduledAt !== undefined ? { scheduled_at: plan.scheduledAt } : {}),
  });
  if (plan.apiUrl !== undefined) {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (opts.auth) {
      const token = Buffer.from(`${opts.auth.username}:${opts.auth.password ?? ''}`).toString('base64');
      headers.authorization = `Basic ${token}`;
    }
    let res: Response | undefined;
    try {
      res = await restFetch(`${plan.apiUrl}/${plan.action}`, {
        dispatcher: opts.dispatcher,
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(opts.timeoutMs),
      });
    } catch (err) {
      opts.say(`REST API at ${plan.apiUrl} did not answer (${errorMessage(err)}); writing the failover key`);
    }
    if (res) {
      const text = (await res.text()).trim();
      if (res.status === 200) return text;
      if (res.status === 202 && plan.scheduledAt !== undefined) return `${text} at ${plan.scheduledAt}`;
      throw new PgfleetError('ERR_CTL_FAILED', `${plan.action} failed (HTTP ${res.status}): ${text}`);
    }
  }
  return await failoverThroughDcs(plan, opts);
}

async function failoverThroughDcs(plan: ManualFailoverPlan, opts: RunOptions): Promise<string> {
  const { values } = await opts.dcs.load();
  if (values.has('failover')) throw new PgfleetError('ERR_CTL_FAILED', 'another failover is in progress');
  await opts.dcs.writeFailover(
    JSON.stringify({
      ...(plan.leader !== undefined ? { leader: plan.leader } : {}),
      ...(plan.candidate !== undefined ? { member: plan.candidate } : {}),
      ...(plan.scheduledAt !== undefined ? { scheduled_at: plan.scheduledAt } : {}),
    }),
  );
  if (plan.scheduledAt !== undefined) return `Switchover scheduled at ${plan.scheduledAt}`;
  const deadline = Date.now() + opts.timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    const { view, values: now } = await opts.dcs.load();
    if (view.leader !== undefined && view.leader !== plan.leader) {
      return `Successfully ${plan.action === 'switchover' ? 'switched' : 'failed'} over to "${view.leader}"`;
    }
    if (!now.has('failover')) break;
  }
  throw new PgfleetError(
    'ERR_CTL_FAILED',
    `${plan.action} did not complete: the leader is still '${plan.leader ?? 'none'}'`,
  );
}
