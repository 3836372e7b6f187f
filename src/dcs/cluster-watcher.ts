/**
 * Follows one Patroni cluster in etcd: a full read of the cluster prefix, then one watch from the
 * next revision on one etcd member, so no event falls in between. Any watch error, disconnect or
 * compaction, and any failed liveness probe (a read on the watch's own member: a member cut from
 * its quorum keeps a watch open but silent), ends the watch: the member is reported to
 * EtcdCluster, and the follower starts over at once with a fresh read on another member (with
 * backoff only when no member answers).
 *
 * States:
 *   connecting → synced (watching member M) → down (no member answers; last view kept) → synced …
 *
 * The last good view is kept while etcd is unreachable; `status` tells how stale it is and which
 * member the view comes from.
 */
import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, IWatchResponse } from 'etcd3';
import type { ClusterView } from '../cluster/types.js';
import type { Logger } from '../observability/logger.js';
import { errorMessage } from '../errors.js';
import type { ClusterKeys } from './keys.js';
import { buildView } from './patroni-json.js';
import { toDcsError } from './etcd-client.js';
import type { EtcdCluster } from './etcd-cluster.js';

export interface DcsStatus {
  readonly connected: boolean;
  /** Monotonic ms of the last successful exchange with etcd (0: never). */
  readonly lastContactMs: number;
  readonly lastError: string | undefined;
  /** The etcd member the view is read from (its client URL), when connected. */
  readonly member: string | undefined;
}

export interface ClusterWatcherOptions {
  readonly scope: string;
  readonly keys: ClusterKeys;
  readonly probeIntervalMs: number;
  readonly log: Logger;
  /** Monotonic clock in ms. */
  readonly now: () => number;
  /** Logged when etcd stops answering (the proxy: it keeps its last routing table). */
  readonly outageMessage?: string;
}

export interface ClusterWatcherEvents {
  /** A new view, with the raw values under the cluster prefix it was built from. */
  view: [ClusterView, ReadonlyMap<string, string>];
  status: [DcsStatus];
}

const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2_000;

/**
 * Whether the liveness probe (one read of the leader key) should go out now. The watch delivering
 * data within the last interval proves etcd answered as well as a probe would: each probe costs
 * a gRPC call, several ms of CPU on an otherwise idle proxy, and Patroni rewrites its keys every
 * `loop_wait`. With the watch silent, a probe goes every interval, so a silent outage is noticed
 * within two intervals at most.
 */
export function probeDue(nowMs: number, lastWatchDataMs: number | undefined, intervalMs: number): boolean {
  return lastWatchDataMs === undefined || nowMs - lastWatchDataMs >= intervalMs;
}

export class ClusterWatcher extends EventEmitter<ClusterWatcherEvents> {
  readonly #cluster: EtcdCluster;
  readonly #opts: ClusterWatcherOptions;
  readonly #values = new Map<string, string>();
  #view: ClusterView | undefined;
  #status: DcsStatus = { connected: false, lastContactMs: 0, lastError: undefined, member: undefined };
  /** The member the current watch runs on. */
  #member: string | undefined;
  #closed = false;
  #breakWatch: ((err: Error) => void) | undefined;
  #endWatch: (() => void) | undefined;
  #wake: (() => void) | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  /** When the watch last delivered events (monotonic ms). */
  #lastWatchDataMs: number | undefined;
  #loop: Promise<void> | undefined;

  constructor(cluster: EtcdCluster, opts: ClusterWatcherOptions) {
    super();
    this.#cluster = cluster;
    this.#opts = opts;
  }

  get view(): ClusterView | undefined {
    return this.#view;
  }

  get status(): DcsStatus {
    return this.#status;
  }

  /** Starts following; resolves after the first read attempt, whether or not etcd answered. */
  async start(): Promise<void> {
    if (this.#loop) return;
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((r) => (firstAttempt = r));
    this.#loop = this.#run(firstAttempt);
    this.#probeTimer = setInterval(() => void this.#probe(), this.#opts.probeIntervalMs);
    this.#probeTimer.unref();
    await attempted;
  }

  async #run(firstAttempt: () => void): Promise<void> {
    let backoff = MIN_BACKOFF_MS;
    while (!this.#closed) {
      let revision: number;
      try {
        revision = await this.#resync();
      } catch (err) {
        // No member answered within the budget: etcd is down for us.
        firstAttempt();
        this.#markDown(err);
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        continue;
      }
      firstAttempt();
      const pinned = this.#cluster.pinned();
      if (!pinned) continue;
      const watchedSince = this.#opts.now();
      try {
        await this.#watchUntilBroken(pinned.client, pinned.url, revision);
      } catch (err) {
        // One member failed; the next read goes to another at once.
        if (!this.#closed) {
          this.#opts.log.info(
            { member: pinned.url, err: errorMessage(err) },
            `watch on etcd member ${pinned.url} ended; moving to another member`,
          );
          this.#cluster.reportFault(pinned.url, err);
        }
      }
      // A watch that breaks as soon as it starts (refused by every member) must not spin.
      if (this.#opts.now() - watchedSince < MAX_BACKOFF_MS) {
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      } else backoff = MIN_BACKOFF_MS;
    }
  }

  async #resync(): Promise<number> {
    const prefix = this.#opts.keys.prefix;
    const res = await this.#cluster.run(`get ${prefix}`, (c) => c.getAll().prefix(prefix).exec());
    this.#values.clear();
    for (const kv of res.kvs) this.#apply('Put', kv);
    const revision = Number(res.header.revision);
    this.#member = this.#cluster.currentUrl;
    this.#markUp();
    this.#publish(revision);
    return revision;
  }

  async #watchUntilBroken(client: Etcd3, member: string, revision: number): Promise<void> {
    this.#member = member;
    // `watcher()` (what `create()` wraps) attaches at once; our handlers are in place before it
    // connects, so a probe failure or close() can break a watch that never gets created.
    const watcher = client
      .watch()
      .prefix(this.#opts.keys.prefix)
      .startRevision(String(revision + 1))
      .watcher();
    try {
      await new Promise<void>((resolve, reject) => {
        this.#breakWatch = reject;
        watcher.on('data', (res: IWatchResponse) => this.#onWatchData(res));
        watcher.on('error', (err) => reject(err));
        watcher.on('disconnected', (err) => reject(err));
        watcher.on('end', () => reject(new Error('watch stream ended')));
        this.#endWatch = resolve;
        if (this.#closed) resolve();
      });
    } finally {
      this.#breakWatch = undefined;
      this.#endWatch = undefined;
      watcher.removeAllListeners();
      watcher.on('error', () => undefined);
      // Cancelling waits for etcd's answer, which never comes from a dead member: not awaited,
      // so the move to another member is not held up.
      void watcher.cancel().catch(() => undefined);
    }
  }

  #onWatchData(res: IWatchResponse): void {
    if (res.events.length === 0) return;
    this.#lastWatchDataMs = this.#opts.now();
    for (const ev of res.events) this.#apply(ev.type, ev.kv);
    this.#markUp();
    this.#publish(Number(res.header.revision));
  }

  #apply(type: string, kv: IKeyValue): void {
    const key = kv.key.toString('utf8');
    if (!key.startsWith(this.#opts.keys.prefix)) return;
    const rel = key.slice(this.#opts.keys.prefix.length);
    if (type === 'Delete') this.#values.delete(rel);
    else this.#values.set(rel, kv.value.toString('utf8'));
  }

  #publish(revision: number): void {
    const { view, problems } = buildView(this.#opts.scope, this.#values, revision);
    for (const p of problems) this.#opts.log.warn({ revision }, `skipped DCS value: ${p}`);
    this.#view = view;
    this.emit('view', view, this.#values);
  }

  /** A linearizable read on the watch's own member: it fails on a member without a quorum. */
  async #probe(): Promise<void> {
    const breakWatch = this.#breakWatch;
    const member = this.#member;
    if (this.#closed || !breakWatch || member === undefined) return;
    if (!probeDue(this.#opts.now(), this.#lastWatchDataMs, this.#opts.probeIntervalMs)) return;
    const pinned = this.#cluster.pinned();
    if (pinned?.url !== member) {
      breakWatch(new Error(`etcd member ${member} is no longer the one in use`));
      return;
    }
    const ms = this.#cluster.attemptMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        pinned.client.get(this.#opts.keys.leader).exec(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`liveness probe timed out after ${ms} ms`)), ms);
        }),
      ]);
      this.#markUp();
    } catch (err) {
      // With no other member to move to, etcd is down for us now, not after another read.
      const others = this.#cluster.members().some((m) => m.url !== member && !m.failing);
      if (!others) this.#markDown(err);
      breakWatch(new Error(`liveness probe failed: ${errorMessage(err)}`));
    } finally {
      clearTimeout(timer);
    }
  }

  #markUp(): void {
    const was = this.#status.connected;
    this.#status = {
      connected: true,
      lastContactMs: this.#opts.now(),
      lastError: undefined,
      member: this.#member,
    };
    if (!was) {
      this.#opts.log.info('DCS connected');
      this.emit('status', this.#status);
    }
  }

  #markDown(err: unknown): void {
    if (this.#closed) return;
    const message = errorMessage(toDcsError(err, 'watch'));
    const was = this.#status.connected;
    this.#status = { ...this.#status, connected: false, lastError: message, member: undefined };
    if (was || this.#status.lastContactMs === 0) {
      this.#opts.log.warn({ err: message }, this.#opts.outageMessage ?? 'DCS unreachable');
    }
    if (was) this.emit('status', this.#status);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Stops following. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#probeTimer) clearInterval(this.#probeTimer);
    this.#wake?.();
    this.#endWatch?.();
    await this.#loop;
  }
}
