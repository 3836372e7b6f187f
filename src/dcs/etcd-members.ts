/**
 * Which etcd member to ask, as pure functions over a list of member states: the decisions behind
 * EtcdCluster (etcd-cluster.ts), tested as tables.
 *
 * A call goes to the member in use (sticky, as Patroni's `_base_uri`); a member that fails is put
 * at the back of the line, the others are tried in turn within the call's budget, each attempt
 * bounded by its share of the budget (Patroni's `_calculate_timeouts`: budget ÷ members, at least
 * one second), so one dead or partitioned member never spends a whole budget.
 */

/** Where a member's URL came from: the config file, a DNS SRV record, or etcd's own member list. */
export type MemberSource = 'config' | 'srv' | 'cluster';

export interface MemberState {
  /** `http://127.0.0.1:2379`. */
  readonly url: string;
  readonly source: MemberSource;
  /** Monotonic ms of the last failed call, cleared by a call that succeeds. */
  readonly failedAtMs: number | undefined;
  readonly lastError: string | undefined;
}

/** The shortest attempt on one member: shorter ones fail on a loaded but healthy etcd. */
export const MIN_ATTEMPT_MS = 1_000;

/**
 * The order in which to try members: the one in use first unless it has failed since it was
 * chosen, then members without a failure in list order, then failed members, the longest-ago
 * failure first (the likeliest to be back).
 */
export function attemptOrder(members: readonly MemberState[], currentUrl: string | undefined): string[] {
  const healthy = members.filter((m) => m.failedAtMs === undefined);
  const failed = members
    .filter((m) => m.failedAtMs !== undefined)
    .sort((a, b) => (a.failedAtMs ?? 0) - (b.failedAtMs ?? 0));
  const current = healthy.find((m) => m.url === currentUrl);
  return [
    ...(current ? [current.url] : []),
    ...healthy.filter((m) => m !== current).map((m) => m.url),
    ...failed.map((m) => m.url),
  ];
}

/**
 * How long one attempt on one member may take: the budget split over the members, at least
 * MIN_ATTEMPT_MS, never more than the budget.
 */
export function attemptTimeoutMs(budgetMs: number, memberCount: number): number {
  const share = Math.floor(budgetMs / Math.max(1, memberCount));
  return Math.min(budgetMs, Math.max(MIN_ATTEMPT_MS, share));
}

/** Normalises an etcd client URL for comparison: scheme and host lowercased, no trailing slash. */
export function normalizeUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  const port = u.port === '' ? (u.protocol === 'https:' ? '443' : '80') : u.port;
  return `${u.protocol}//${u.hostname.toLowerCase()}:${port}`;
}

/**
 * The members to use after learning `found` from `source`: configured members always stay (the
 * fallback when everything learnt is gone, as Patroni keeps its config hosts); members earlier
 * learnt from the same source are replaced by the new list; a URL already known keeps its state
 * and the source it was first known by.
 */
export function mergeMembers(
  members: readonly MemberState[],
  found: readonly string[],
  source: Exclude<MemberSource, 'config'>,
): MemberState[] {
  const urls = [...new Set(found.map(normalizeUrl).filter((u): u is string => u !== undefined))];
  const kept = members.filter((m) => m.source !== source || urls.includes(m.url));
  const known = new Set(kept.map((m) => m.url));
  const added = urls
    .filter((u) => !known.has(u))
    .map((url): MemberState => ({ url, source, failedAtMs: undefined, lastError: undefined }));
  return [...kept, ...added];
}

/**
 * DNS SRV names to look up for `srv: example.com`, in Patroni's order of preference (client
 * records over plain ones, TLS first), each with the scheme it implies. Patroni's `-server`
 * records (peer URLs, answered through the v2 `/members` API) are not used: etcd v3 clusters
 * publish client records.
 */
export function srvQueries(
  domain: string,
  suffix: string | undefined,
): { name: string; protocol: 'http' | 'https' }[] {
  return ['-client-ssl', '-client', '-ssl', ''].map((kind) => {
    const r = suffix ? `${kind}-${suffix}` : kind;
    return { name: `_etcd${r}._tcp.${domain}`, protocol: kind.includes('-ssl') ? 'https' : 'http' };
  });
}

/** `http://host:port` from an SRV answer (target names may end with a dot). */
export function srvUrl(protocol: 'http' | 'https', target: string, port: number): string {
  const host = target.replace(/\.$/, '');
  return `${protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
