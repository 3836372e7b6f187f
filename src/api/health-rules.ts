/**
 * Patroni's REST health semantics as a pure function: path + query + facts → 200 or 503.
 * @see https://patroni.readthedocs.io/en/latest/rest_api.html#health-check-endpoints
 *
 * | endpoint                                   | 200 when                                              |
 * |--------------------------------------------|-------------------------------------------------------|
 * | / /primary /master /leader /read-write     | running as primary and holding the leader key         |
 * | /replica                                   | running replica, not noloadbalance, lag/tags match    |
 * | /read-only                                 | /primary or /replica would say 200 (lag/tags apply)   |
 * | /health                                    | PostgreSQL is running                                 |
 * | /liveness                                  | the HA loop ran within the last ttl                   |
 * | /readiness                                 | leader running as primary, or a running replica       |
 * | /sync /synchronous                         | /replica would say 200 and it is a sync standby       |
 * | /quorum                                    | /replica would say 200 and it is a quorum standby     |
 * | /async /asynchronous                       | /replica would say 200, neither sync nor quorum       |
 * | /read-only-sync /read-only-synchronous     | primary (as /primary), or as /sync                    |
 * | /read-only-quorum                          | primary (as /primary), or as /quorum                  |
 * | /standby-leader /standby_leader            | never: pgfleet runs no standby clusters               |
 *
 * The sync endpoints answer 503 while the DCS is unreachable (the role comes from the `sync` key).
 * | /patroni /cluster /history /metrics        | always (they report, they do not judge)               |
 */
import { parseSizeBytes } from '../config/units.js';

export interface HealthFacts {
  readonly running: boolean;
  readonly role: 'primary' | 'replica' | undefined;
  readonly holdsLeaderKey: boolean;
  readonly lagBytes: number | undefined;
  readonly tags: Readonly<Record<string, unknown>>;
  readonly loopAlive: boolean;
  /** Synchronous mode on and this member among the `sync` key's standbys (sync-failover.ts syncRole). */
  readonly syncRole: 'sync' | 'quorum' | undefined;
  /** The DCS answered this member's last cycle (Patroni's sync endpoints need the cluster). */
  readonly dcsKnown: boolean;
}

export const HEALTH_PATHS = [
  '/',
  '/primary',
  '/master',
  '/leader',
  '/read-write',
  '/replica',
  '/read-only',
  '/health',
  '/liveness',
  '/readiness',
  '/sync',
  '/synchronous',
  '/quorum',
  '/async',
  '/asynchronous',
  '/read-only-sync',
  '/read-only-synchronous',
  '/read-only-quorum',
  '/standby-leader',
  '/standby_leader',
] as const;

export type HealthPath = (typeof HEALTH_PATHS)[number];

export function isHealthPath(p: string): p is HealthPath {
  return (HEALTH_PATHS as readonly string[]).includes(p);
}

function tagText(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'
    ? String(v)
    : JSON.stringify(v);
}

function tagsMatch(query: URLSearchParams, tags: Readonly<Record<string, unknown>>): boolean {
  for (const [k, v] of query) {
    if (!k.startsWith('tag_')) continue;
    const have = tags[k.slice(4)];
    if (have === undefined || tagText(have).toLowerCase() !== v.toLowerCase()) return false;
  }
  return true;
}

function lagOk(query: URLSearchParams, lagBytes: number | undefined): boolean {
  const raw = query.get('lag');
  if (raw === null) return true;
  const max = parseSizeBytes(raw);
  if (max === undefined) return true;
  return lagBytes !== undefined && lagBytes <= max;
}

function syncPathStatus(path: HealthPath, f: HealthFacts, primary: boolean, replica: boolean): boolean {
  if (!f.dcsKnown) return false;
  switch (path) {
    case '/sync':
    case '/synchronous':
      return f.syncRole === 'sync' && replica;
    case '/quorum':
      return f.syncRole === 'quorum' && replica;
    case '/async':
    case '/asynchronous':
      return f.syncRole === undefined && replica;
    case '/read-only-sync':
    case '/read-only-synchronous':
      return primary || (f.syncRole === 'sync' && replica);
    case '/read-only-quorum':
      return primary || (f.syncRole === 'quorum' && replica);
    default:
      return false;
  }
}

export function healthStatus(path: HealthPath, query: URLSearchParams, f: HealthFacts): 200 | 503 {
  const primary = f.running && f.role === 'primary' && f.holdsLeaderKey;
  const replica =
    f.running &&
    f.role === 'replica' &&
    f.tags.noloadbalance !== true &&
    lagOk(query, f.lagBytes) &&
    tagsMatch(query, f.tags);
  let ok: boolean;
  switch (path) {
    case '/':
    case '/primary':
    case '/master':
    case '/leader':
    case '/read-write':
      ok = primary;
      break;
    case '/replica':
      ok = replica;
      break;
    case '/read-only':
      ok = (primary && tagsMatch(query, f.tags)) || replica;
      break;
    case '/health':
      ok = f.running;
      break;
    case '/liveness':
      ok = f.loopAlive;
      break;
    case '/readiness':
      ok = primary || (f.running && f.role === 'replica');
      break;
    case '/standby-leader':
    case '/standby_leader':
      ok = false;
      break;
    default:
      // The sync endpoints: tags are matched for the primary too (Patroni checks them on any 200).
      ok = syncPathStatus(path, f, primary && tagsMatch(query, f.tags), replica);
  }
  return ok ? 200 : 503;
}
