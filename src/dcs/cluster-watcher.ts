/**
 * Follows one Patroni cluster in etcd: a full read of the cluster prefix, then one watch from the
 * next revision, so no event falls in between. Any watch error, disconnect or compaction, and any
 * failed liveness probe, ends the watch and starts over with a fresh read (with backoff).
 *
 * States:
 *   connecting → synced (watching) → down (probe or watch failed; last view kept) → synced …
 *
 * The last good view is kept while etcd is unreachable; `status` tells how stale it is.
 */
import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, IWatchResponse } from 'etcd3';
import type { ClusterView } from '../cluster/types.js';
import type { Logger } from '../observability/logger.js';
import { errorMessage } from '../errors.js';
import type { ClusterKeys } from './keys.js';
import { buildView } from './patroni-json.js';
import { toDcsError } from './etcd-client.js';

export interface DcsStatus {
  readonly connected: boolean;
  /** Monotonic ms of the last successful exchange with etcd (0: never). */
  readonly lastContactMs: number;
  readonly lastError: string | undefined;
}

export interface ClusterWatcherOptions {
  readonly scope: string;
  readonly keys: ClusterKeys;
  readonly probeIntervalMs: number;
  readonly log: Logger;
  /** Monotonic clock in ms. */
  readonly now: () => number;
}

export interface ClusterWatcherEvents {
  view: [ClusterView];
  status: [DcsStatus];
}

const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2_000;
const CANCEL_TIMEOUT_MS = 1_000;

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

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export class ClusterWatcher extends EventEmitter<ClusterWatcherEvents> {
  readonly #client: Etcd3;
  readonly #opts: ClusterWatcherOptions;
  readonly #values = new Map<string, string>();
  #view: ClusterView | undefined;
  #status: DcsStatus = { connected: false, lastContactMs: 0, lastError: undefined };
  #closed = false;
  #breakWatch: (() => void) | undefined;
  #wake: (() => void) | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  /** When the watch last delivered events (monotonic ms). */
  #lastWatchDataMs: number | undefined;
  #loop: Promise<void> | undefined;

  constructor(client: Etcd3, opts: ClusterWatcherOptions) {
    super();
    this.#client = client;
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
      try {
        const revision = await this.#resync();
        firstAttempt();
        backoff = MIN_BACKOFF_MS;
        await this.#watchUntilBroken(revision);
      } catch (err) {
        firstAttempt();
        this.#markDown(err);
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  async #resync(): Promise<number> {
    const res = await this.#client.getAll().prefix(this.#opts.keys.prefix).exec();
    this.#values.clear();
    for (const kv of res.kvs) this.#apply('Put', kv);
    const revision = Number(res.header.revision);
    this.#markUp();
    this.#publish(revision);
    return revision;
  }

  async #watchUntilBroken(revision: number): Promise<void> {
    // `watcher()` (what `create()` wraps) attaches at once; our handlers are in place before it
    // connects, so a probe failure or close() can break a watch that never gets created.
    const watcher = this.#client
      .watch()
      .prefix(this.#opts.keys.prefix)
      .startRevision(String(revision + 1))
      .watcher();
    try {
      await new Promise<void>((resolve, reject) => {
        this.#breakWatch = () => reject(new Error('liveness probe failed'));
        watcher.on('data', (res: IWatchResponse) => this.#onWatchData(res));
        watcher.on('error', (err) => reject(err));
        watcher.on('disconnected', (err) => reject(err));
        watcher.on('end', () => resolve());
        if (this.#closed) resolve();
      });
    } finally {
      this.#breakWatch = undefined;
      watcher.removeAllListeners();
      watcher.on('error', () => undefined);
      // Cancelling waits for etcd's answer, which never comes while it is unreachable: bound it.
      await Promise.race([watcher.cancel().catch(() => undefined), delay(CANCEL_TIMEOUT_MS)]);
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
    this.emit('view', view);
  }

  async #probe(): Promise<void> {
    if (this.#closed) return;
    if (!probeDue(this.#opts.now(), this.#lastWatchDataMs, this.#opts.probeIntervalMs)) return;
    try {
      await this.#client.get(this.#opts.keys.leader).exec();
      this.#markUp();
    } catch (err) {
      this.#markDown(err);
      this.#breakWatch?.();
    }
  }

  #markUp(): void {
    const was = this.#status.connected;
    this.#status = { connected: true, lastContactMs: this.#opts.now(), lastError: undefined };
    if (!was) {
      this.#opts.log.info('DCS connected');
      this.emit('status', this.#status);
    }
  }

  #markDown(err: unknown): void {
    if (this.#closed) return;
    const message = errorMessage(toDcsError(err, 'watch'));
    const was = this.#status.connected;
    this.#status = { ...this.#status, connected: false, lastError: message };
    if (was || this.#status.lastContactMs === 0) {
      this.#opts.log.warn({ err: message }, 'DCS unreachable: keeping the last known routing table');
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
    this.#breakWatch?.();
    await this.#loop;
  }
}
