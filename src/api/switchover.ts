/**
 * POST /switchover and /failover with Patroni's checks, status codes and messages, so that
 * `patronictl switchover` / `failover` work against pgfleet agents:
 * 400 malformed request, 412 precondition failed, 200 done (after polling the DCS), 503 failed.
 * Scheduled switchovers (`scheduled_at`) are not supported yet (400).
 * @see patroni/api.py do_POST_failover, is_failover_possible, poll_failover_result
 */
import type http from 'node:http';
import type { Agent } from '../agent/agent.js';

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

export async function handleFailover(
  agent: Agent,
  action: 'switchover' | 'failover',
  request: Record<string, unknown> | undefined,
  pollTimeoutMs: number,
): Promise<Reply> {
  if (!request) return { status: 400, body: 'Bad request: a JSON object is required' };
  const leader = str(request.leader);
  const candidate = str(request.candidate) ?? str(request.member);
  if (action === 'failover' && !candidate) {
    return { status: 400, body: 'Failover could be performed only to a specific candidate' };
  }
  if (action === 'switchover' && !leader) {
    return { status: 400, body: 'Switchover could be performed only from a specific leader' };
  }
  if (str(request.scheduled_at))
    return { status: 400, body: `Scheduled ${action} is not supported by pgfleet yet` };
  const { view } = await agent.loadCluster();
  let problem: string | undefined;
  if (leader && view.leader !== leader) problem = 'leader name does not match';
  else if (candidate && !view.members.has(candidate)) problem = 'candidate does not exists';
  else {
    const eligible = [...view.members.values()].filter(
      (m) =>
        m.name !== view.leader &&
        (candidate === undefined || m.name === candidate) &&
        m.state === 'running' &&
        !m.tags.nofailover,
    );
    if (eligible.length === 0) problem = `${action} is not possible: no good candidates have been found`;
  }
  if (problem) return { status: 412, body: problem };
  await agent.requestFailover(leader ?? view.leader, candidate);
  return await pollResult(agent, view.leader, candidate, action, pollTimeoutMs);
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
      const { view, values } = await agent.loadCluster();
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
