/**
 * The one place pgfleet talks to an etcd cluster. Every call and stream of the agent, the proxy
 * and `ctl` goes through here, so every one of them survives the loss of a member.
 *
 * - One library client per member (etcd3's own pool picks a random host per call and gives up on
 *   the first error, so one dead member of three failed a third of all calls).
 * - Calls go to the member in use; on a member fault the call moves to the next member within
 *   its budget, each attempt bounded by its share of the budget (etcd-members.ts). Rounds repeat,
 *   100 ms apart, while budget remains (a raft election makes every member answer "no leader"
 *   for a moment).
 * - Watches are opened on `pinned()`; their owner reports a broken or silent watch with
 *   `reportFault`, and the next call or watch goes to another member.
 * - Members: the configured hosts (or DNS SRV records), plus etcd's own member list, refreshed
 *   every `cacheTtlMs` (Patroni's cache_ttl, 5 minutes) and after a member fails, so a member
 *   added or replaced later is used (not with `use_proxies`, Patroni's key for hosts that are
 *   proxies).
 *
 * States: open → closed (close() is idempotent; calls after it fail with ERR_DCS_UNAVAILABLE).
 */
import { Resolver } from 'node:dns/promises';
import { performance } from 'node:perf_hooks';
import type { Etcd3 } from 'etcd3';
import type { Etcd3Config } from '../config/common.js';
import { PgfleetError, errorMessage } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { createMemberClient, etcdHostUrls, isMemberFault, toDcsError } from './etcd-client.js';
import {
  attemptOrder,
  attemptTimeoutMs,
  mergeMembers,
  normalizeUrl,
  srvQueries,
  srvUrl,
  type MemberSource,
  type MemberState,
} from './etcd-members.js';

/** Pause between rounds over all members. */
const ROUND_PAUSE_MS = 100;
/** Patroni's etcd `cache_ttl`: how often the member list is read again. */
const DEFAULT_CACHE_TTL_MS = 300_000;
/** After a member fault, the member list is read again at most this often. */
const FAULT_REFRESH_MS = 10_000;

/** Resolves SRV records; tests pass a resolver pointed at their own DNS server. */
export type SrvLookup = (name: string) => Promise<{ name: string; port: number }[]>;

export interface EtcdClusterOptions {
  readonly log: Logger;
  /** Total time one call may take across members (the agent sets retry_timeout). */
  readonly budgetMs?: number;
  readonly cacheTtlMs?: number;
  readonly srvLookup?: SrvLookup;
}

export interface EtcdMemberStatus {
  readonly url: string;
  readonly source: MemberSource;
  readonly inUse: boolean;
  readonly failing: boolean;
  readonly lastError: string | null;
}

interface Member {
  state: MemberState;
  client: Etcd3 | undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

async function withDeadline<T>(p: Promise<T>, ms: number, op: string, url: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new PgfleetError('ERR_DCS_UNAVAILABLE', `etcd ${op} on ${url} timed out after ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export class EtcdCluster {
  readonly #config: Etcd3Config;
  readonly #log: Logger;
  readonly #cacheTtlMs: number;
  readonly #srvLookup: SrvLookup;
  #members: Member[];
  #current: string | undefined;
  #budgetMs: number;
  #listRefreshedAtMs = -Infinity;
  #listRefresh: Promise<void> | undefined;
  #srvLoaded = false;
  #closed = false;

  constructor(config: Etcd3Config, opts: EtcdClusterOptions) {
    this.#config = config;
    this.#log = opts.log;
    this.#budgetMs = opts.budgetMs ?? config.request_timeout;
    this.#cacheTtlMs = opts.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
    const resolver = new Resolver({ timeout: 1_000, tries: 2 });
    this.#srvLookup = opts.srvLookup ?? ((name) => resolver.resolveSrv(name));
    const configured = etcdHostUrls(config)
      .map(normalizeUrl)
      .filter((u): u is string => u !== undefined);
    this.#members = [...new Set(configured)].map((url) => ({
      state: { url, source: 'config', failedAtMs: undefined, lastError: undefined },
      client: undefined,
    }));
  }

  /** Sets the total time one call may take (the agent: its `retry_timeout`). */
  setBudget(ms: number): void {
    this.#budgetMs = ms;
  }

  get budgetMs(): number {
    return this.#budgetMs;
  }

  /** How long one attempt on one member may take now. */
  get attemptMs(): number {
    return attemptTimeoutMs(this.#budgetMs, this.#members.length);
  }

  /** The member calls go to now (undefined before the first call). */
  get currentUrl(): string | undefined {
    return this.#current;
  }

  members(): EtcdMemberStatus[] {
    return this.#members.map(({ state }) => ({
      url: state.url,
      source: state.source,
      inUse: state.url === this.#current,
      failing: state.failedAtMs !== undefined,
      lastError: state.lastError ?? null,
    }));
  }

  /**
   * Runs `fn` on one member after another until it succeeds, etcd gives a definitive answer, or
   * the budget is spent. `fn` gets the member's client and the attempt's deadline (for streams;
   * unary calls carry it already).
   */
  async run<T>(
    op: string,
    fn: (client: Etcd3, deadline: Date) => Promise<T>,
    budgetMs: number = this.#budgetMs,
  ): Promise<T> {
    await this.#loadSrvOnce();
    const started = performance.now();
    const perAttempt = attemptTimeoutMs(budgetMs, this.#members.length);
    const tried: string[] = [];
    let lastError: unknown;
    for (;;) {
      for (const url of attemptOrder(
        this.#members.map((m) => m.state),
        this.#current,
      )) {
        const remaining = budgetMs - (performance.now() - started);
        if (remaining <= 0 || this.#closed) break;
        const ms = Math.min(perAttempt, remaining);
        const client = this.#clientFor(url);
        if (!client) continue;
        try {
          const result = await withDeadline(fn(client, new Date(Date.now() + ms)), ms, op, url);
          this.#succeeded(url);
          return result;
        } catch (err) {
          if (!isMemberFault(err)) {
            this.#succeeded(url);
            throw toDcsError(err, op);
          }
          lastError = err;
          tried.push(url);
          this.#failed(url, err);
        }
      }
      const left = budgetMs - (performance.now() - started);
      if (this.#closed || left <= 0) break;
      await sleep(Math.min(ROUND_PAUSE_MS, left));
    }
    if (this.#closed) throw new PgfleetError('ERR_DCS_UNAVAILABLE', `etcd ${op}: the client is closed`);
    const detail = lastError === undefined ? 'no member to ask' : errorMessage(lastError);
    throw new PgfleetError(
      'ERR_DCS_UNAVAILABLE',
      `etcd ${op} failed on every member within ${budgetMs} ms (${[...new Set(tried)].join(', ')}): ${detail}`,
      { cause: lastError },
    );
  }

  /** The member to open a watch on, and its client: the one calls go to. */
  pinned(): { url: string; client: Etcd3 } | undefined {
    for (const url of attemptOrder(
      this.#members.map((m) => m.state),
      this.#current,
    )) {
      const client = this.#clientFor(url);
      if (client) {
        this.#select(url);
        return { url, client };
      }
    }
    return undefined;
  }

  /** A stream owner saw `url` fail (watch broken, probe unanswered): move off it. */
  reportFault(url: string, err: unknown): void {
    this.#failed(url, err);
  }

  #clientFor(url: string): Etcd3 | undefined {
    const m = this.#members.find((x) => x.state.url === url);
    if (!m || this.#closed) return undefined;
    m.client ??= createMemberClient(url, this.#config, () => this.attemptMs);
    return m.client;
  }

  #select(url: string): void {
    if (this.#current === url) return;
    const previous = this.#current;
    this.#current = url;
    if (previous !== undefined) this.#log.info({ member: url, previous }, `using etcd member ${url}`);
  }

  #succeeded(url: string): void {
    const m = this.#members.find((x) => x.state.url === url);
    if (m && m.state.failedAtMs !== undefined) {
      m.state = { ...m.state, failedAtMs: undefined, lastError: undefined };
      this.#log.info({ member: url }, `etcd member ${url} answers again`);
    }
    this.#select(url);
    if (performance.now() - this.#listRefreshedAtMs >= this.#cacheTtlMs) this.#refreshListSoon();
  }

  #failed(url: string, err: unknown): void {
    const m = this.#members.find((x) => x.state.url === url);
    if (!m) return;
    const message = errorMessage(err);
    if (m.state.failedAtMs === undefined)
      this.#log.warn({ member: url, err: message }, `etcd member ${url} failed; trying the others`);
    m.state = { ...m.state, failedAtMs: performance.now(), lastError: message };
    if (this.#current === url) this.#current = undefined;
    if (performance.now() - this.#listRefreshedAtMs >= FAULT_REFRESH_MS) this.#refreshListSoon();
  }

  #refreshListSoon(): void {
    if (this.#listRefresh || this.#closed) return;
    this.#listRefreshedAtMs = performance.now();
    this.#listRefresh = this.refreshMembers()
      .catch((err: unknown) =>
        this.#log.debug({ err: errorMessage(err) }, 'could not read the etcd member list'),
      )
      .finally(() => {
        this.#listRefresh = undefined;
      });
  }

  /**
   * Reads etcd's member list (and SRV records when configured) and uses what it finds; with
   * `use_proxies` the configured hosts are all there is (they may be proxies or relays, and the
   * members' own URLs may not be reachable).
   */
  async refreshMembers(): Promise<void> {
    if (this.#config.srv !== undefined) await this.#loadSrv();
    if (this.#config.use_proxies) return;
    const res = await this.run('member list', (c) => c.cluster.memberList({}));
    const urls = (res.members ?? []).flatMap((m) => m.clientURLs ?? []);
    if (urls.length > 0) this.#use(mergeMembers(this.#states(), urls, 'cluster'));
  }

  async #loadSrvOnce(): Promise<void> {
    if (this.#srvLoaded || this.#config.srv === undefined) return;
    this.#srvLoaded = true;
    await this.#loadSrv();
  }

  /** The first SRV name with records wins, as in Patroni. */
  async #loadSrv(): Promise<void> {
    const domain = this.#config.srv;
    if (domain === undefined) return;
    for (const q of srvQueries(domain, this.#config.srv_suffix)) {
      const records = await this.#srvLookup(q.name).catch(() => []);
      if (records.length === 0) continue;
      const urls = records.map((r) => srvUrl(q.protocol, r.name, r.port));
      this.#log.info({ srv: q.name, members: urls }, 'etcd members from DNS SRV');
      this.#use(mergeMembers(this.#states(), urls, 'srv'));
      return;
    }
    this.#log.warn({ srv: domain }, `no etcd SRV records found for ${domain}`);
  }

  #states(): MemberState[] {
    return this.#members.map((m) => m.state);
  }

  /** Adopts a new member list: clients of members that are gone are closed. */
  #use(states: readonly MemberState[]): void {
    const before = this.#members;
    this.#members = states.map((state) => ({
      state,
      client: before.find((m) => m.state.url === state.url)?.client,
    }));
    for (const m of before) {
      if (!states.some((s) => s.url === m.state.url)) {
        m.client?.close();
        if (this.#current === m.state.url) this.#current = undefined;
      }
    }
    const added = states.filter((s) => !before.some((m) => m.state.url === s.url)).map((s) => s.url);
    if (added.length > 0) this.#log.info({ added }, 'etcd members added');
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const m of this.#members) m.client?.close();
  }
}
