/**
 * The pools' decisions, pure: which node may get one more server connection for a pool, and what
 * an idle server's age and idleness mean. Counts and times are passed in.
 */

export interface PoolLimits {
  readonly poolSize: number;
  readonly minPoolSize: number;
  readonly reservePool: number;
  readonly reservePoolTimeoutMs: number;
  readonly serverIdleTimeoutMs: number;
  readonly serverLifetimeMs: number;
}

/**
 * The node to open one more server on, among `nodes` (in the listener's order of preference) but
 * `skip` (a node a switchover is leaving): the first with room under pool_size (plus reserve_pool
 * once the oldest client has waited reserve_pool_timeout); undefined when every node is full.
 * Asked at every acquire of a busy pool: no allocation.
 */
export function nodeWithRoom(
  nodes: readonly { readonly name: string }[],
  serversOn: (node: string) => number,
  limits: PoolLimits,
  oldestWaitMs: number,
  skip?: string,
): string | undefined {
  const cap = limits.poolSize + (oldestWaitMs >= limits.reservePoolTimeoutMs ? limits.reservePool : 0);
  for (let i = 0; i < nodes.length; i++) {
    const name = nodes[i]!.name;
    if (name !== skip && serversOn(name) < cap) return name;
  }
  return undefined;
}

/**
 * The nodes (by key) a new server login must not try: `held` (a switchover is leaving it) and
 * those already at pool_size + reserve_pool.
 */
export function fullNodeKeys(
  nodes: readonly { readonly name: string; readonly key: string }[],
  serversOn: (node: string) => number,
  limits: PoolLimits,
  held: string | undefined,
): Set<string> {
  const cap = limits.poolSize + limits.reservePool;
  return new Set(nodes.filter((n) => n.name === held || serversOn(n.name) >= cap).map((n) => n.key));
}

/** What an idle server is, for takeIdle. */
export interface IdleServerFacts {
  readonly state: string;
  readonly retiring: boolean;
  readonly node: { readonly name: string };
}

/**
 * Takes the idle server to lend out of `idle` (the pool's idle list, most recently used last): the
 * most recently used one still idle, not retiring and on a routed node, other than on `held` (a
 * node a switchover is leaving: its servers stay idle, unlent). The ones passed over that cannot
 * be lent any more leave the list too, each to `close`. Walked in place at every lend: no
 * allocation.
 */
export function takeIdle<S extends IdleServerFacts>(
  idle: S[],
  routed: (server: S) => boolean,
  held: string | undefined,
  close: (server: S) => void,
): S | undefined {
  for (let i = idle.length - 1; i >= 0; i--) {
    const s = idle[i]!;
    const use = idleServerUse(s, routed(s), held);
    if (use === 'keep') continue;
    idle.splice(i, 1);
    if (use === 'lend') return s;
    close(s);
  }
  return undefined;
}

/**
 * One idle server: lent, closed (not idle any more, retiring, on a node no longer routed) or left
 * idle (on the `held` node).
 */
export function idleServerUse(
  s: IdleServerFacts,
  routed: boolean,
  held: string | undefined,
): 'lend' | 'close' | 'keep' {
  if (s.state !== 'idle' || s.retiring || !routed) return 'close';
  return s.node.name === held ? 'keep' : 'lend';
}

/** Why an idle server should close now, or undefined to keep it. */
export function idleServerVerdict(
  server: { readonly createdAt: number; readonly lastUsedAt: number },
  limits: PoolLimits,
  now: number,
  keptForMinimum: boolean,
): 'lifetime' | 'idle_timeout' | undefined {
  if (now - server.createdAt >= limits.serverLifetimeMs) return 'lifetime';
  if (!keptForMinimum && now - server.lastUsedAt >= limits.serverIdleTimeoutMs) return 'idle_timeout';
  return undefined;
}

/**
 * What an idle server sent (`chunk`, from a message boundary) says about it: true when it holds an
 * ErrorResponse. An idle backend reports an error only as it ends (FATAL 57P01 at a shutdown, a
 * terminated backend): the server must not be lent, even before its socket's close is seen (a
 * transaction written to it then would be lost without a reply). Notices, ParameterStatus and
 * notifications keep it. A message cut at the chunk's end counts by its type byte.
 */
export function idleServerEnding(chunk: Uint8Array): boolean {
  let at = 0;
  while (at + 5 <= chunk.length) {
    if (chunk[at] === 0x45 /* E */) return true;
    const len =
      ((chunk[at + 1]! << 24) | (chunk[at + 2]! << 16) | (chunk[at + 3]! << 8) | chunk[at + 4]!) >>> 0;
    if (len < 4) return true; // not a message stream any more: nothing to lend
    at += 1 + len;
  }
  return at < chunk.length && chunk[at] === 0x45;
}
