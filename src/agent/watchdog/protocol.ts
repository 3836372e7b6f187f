/**
 * What the agent and its watchdog say to each other: JSON lines over a Unix socket, one agent
 * connected at a time. Pure encoding and decoding.
 *
 * agent → watchdog: `hello` (settings and the etcd section, so the watchdog can revoke the lease
 * without a config file of its own), `report` after each renewal and each change of PostgreSQL,
 * `exit` on a clean shutdown (PostgreSQL already stopped, the key released).
 * watchdog → agent: `welcome` (what a previous agent left: the postmaster, the lease, how long
 * until the fire time), `busy` (another agent holds it), `fired` (it fenced PostgreSQL).
 */
import type { WatchdogSettings } from './watchdog-state.js';

export type AgentMessage =
  | {
      readonly op: 'hello';
      readonly name: string;
      readonly settings: WatchdogSettings;
      /** The agent's `etcd3` section as parsed (for the lease revoke). */
      readonly etcd3: unknown;
      /** How long the revoke may take (the agent's retry_timeout). */
      readonly budgetMs: number;
    }
  | {
      readonly op: 'report';
      readonly pid: number | undefined;
      readonly leaseId: string | undefined;
      readonly fireInMs: number | undefined;
      readonly settings: WatchdogSettings;
    }
  | { readonly op: 'exit' };

export interface Welcome {
  readonly op: 'welcome';
  /** A previous agent left this watchdog (this agent adopts what it guards). */
  readonly adopting: boolean;
  readonly pid: number | undefined;
  readonly leaseId: string | undefined;
  /** Time left before the fire time the previous agent armed, if leading. */
  readonly fireInMs: number | undefined;
  /** It fenced PostgreSQL since the last report of a running one. */
  readonly fired: boolean;
}

export type WatchdogMessage =
  Welcome | { readonly op: 'busy' } | { readonly op: 'fired'; readonly why: string };

export function encode(msg: AgentMessage | WatchdogMessage): string {
  return `${JSON.stringify(msg)}\n`;
}

function record(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

const optNumber = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isFinite(v) ? v : undefined;
const optString = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function settingsOf(v: unknown): WatchdogSettings | undefined {
  const s = record(v);
  if (!s || typeof s.graceMs !== 'number' || typeof s.stopOnAgentDeath !== 'boolean') return undefined;
  return { graceMs: Math.max(0, s.graceMs), stopOnAgentDeath: s.stopOnAgentDeath };
}

/** One line from the agent; undefined when it is not a message the watchdog knows. */
export function parseAgentMessage(line: string): AgentMessage | undefined {
  let v: Record<string, unknown> | undefined;
  try {
    v = record(JSON.parse(line));
  } catch {
    return undefined;
  }
  if (!v) return undefined;
  const settings = settingsOf(v.settings);
  switch (v.op) {
    case 'hello':
      return settings && typeof v.name === 'string'
        ? { op: 'hello', name: v.name, settings, etcd3: v.etcd3, budgetMs: optNumber(v.budgetMs) ?? 3000 }
        : undefined;
    case 'report':
      return settings
        ? {
            op: 'report',
            pid: optNumber(v.pid),
            leaseId: optString(v.leaseId),
            fireInMs: optNumber(v.fireInMs),
            settings,
          }
        : undefined;
    case 'exit':
      return { op: 'exit' };
    default:
      return undefined;
  }
}

/** One line from the watchdog; undefined when unknown. */
export function parseWatchdogMessage(line: string): WatchdogMessage | undefined {
  let v: Record<string, unknown> | undefined;
  try {
    v = record(JSON.parse(line));
  } catch {
    return undefined;
  }
  if (!v) return undefined;
  if (v.op === 'busy') return { op: 'busy' };
  if (v.op === 'fired') return { op: 'fired', why: typeof v.why === 'string' ? v.why : '' };
  if (v.op !== 'welcome') return undefined;
  return {
    op: 'welcome',
    adopting: v.adopting === true,
    pid: optNumber(v.pid),
    leaseId: optString(v.leaseId),
    fireInMs: optNumber(v.fireInMs),
    fired: v.fired === true,
  };
}

/** Splits a stream into lines; returns the complete ones and keeps the rest. */
export class LineBuffer {
  private rest = '';

  push(chunk: string): string[] {
    const text = this.rest + chunk;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    // A peer that never ends a line cannot make us hold megabytes.
    if (this.rest.length > 1024 * 1024) this.rest = '';
    return lines.filter((l) => l.trim() !== '');
  }
}
