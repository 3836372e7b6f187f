/**
 * Active health checks against each member's REST API (Patroni's `/primary`, `/replica?lag=`),
 * the way HAProxy's `option httpchk` does for Patroni clusters: one GET per member and path every
 * `interval`, each bounded by `timeout`, with fall/rise hysteresis. 200 passes; anything else,
 * a timeout or a refused connection fails.
 */
import { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';
import { Agent, request } from 'undici';
import type { ClusterView } from '../../cluster/types.js';
import type { Logger } from '../../observability/logger.js';
import type { CheckVerdict, HealthSnapshot } from '../../routing/types.js';
import { errorMessage } from '../../errors.js';
import { reportedVerdict, stepCheck, UNKNOWN_CHECK, type CheckState } from './check-state.js';

/** How often the agents are checked at most while the proxy's DCS view is stale. */
export const STALE_INTERVAL_MS = 100;

/** What a reload may change. */
export interface HealthCheckSettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly fall: number;
  readonly rise: number;
  readonly paths: readonly string[];
}

export interface HealthCheckerOptions extends HealthCheckSettings {
  readonly log: Logger;
  /** TLS for agents whose api_url is https (`proxy.agent_tls`); read at start. */
  readonly tls?: ConnectionOptions | undefined;
  /** Called after every check with its result, for metrics. */
  readonly onResult?: (member: string, path: string, ok: boolean, verdict: CheckVerdict) => void;
}

export class HealthChecker extends EventEmitter<{ change: [HealthSnapshot] }> {
  #opts: HealthCheckerOptions;
  readonly #dispatcher: Agent;
  /** member → path → state */
  readonly #states = new Map<string, Map<string, CheckState>>();
  #targets = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #closed = false;
  #denyAtOnce = false;
  #intervalMs: number;
  /** Another round is wanted as soon as the one running ends. */
  #again = false;

  constructor(opts: HealthCheckerOptions) {
    super();
    this.#opts = opts;
    this.#intervalMs = opts.intervalMs;
    this.#dispatcher = new Agent({
      connections: 2,
      keepAliveTimeout: opts.intervalMs * 4,
      connectTimeout: opts.timeoutMs,
      ...(opts.tls ? { connect: { ...opts.tls } } : {}),
    });
  }

  /**
   * New settings (reload): the next round uses them; verdicts of paths no longer checked are
   * dropped, the others keep their fall/rise history.
   */
  configure(settings: HealthCheckSettings): void {
    this.#opts = { ...this.#opts, ...settings };
    const wanted = new Set(settings.paths);
    for (const paths of this.#states.values())
      for (const path of [...paths.keys()]) if (!wanted.has(path)) paths.delete(path);
    const stale = this.#denyAtOnce;
    this.#intervalMs = -1; // re-arms the timer at the new interval
    this.setStale(stale);
  }

  /** Tracks the members of a new view: checks start for new members and stop for gone ones. */
  setView(view: ClusterView): void {
    const next = new Map<string, string>();
    for (const m of view.members.values()) if (m.apiUrl !== undefined) next.set(m.name, m.apiUrl);
    let changed = false;
    for (const name of this.#states.keys()) {
      if (next.get(name) !== this.#targets.get(name)) {
        this.#states.delete(name);
        changed = true;
      }
    }
    this.#targets = next;
    if (changed) this.emit('change', this.snapshot());
  }

  snapshot(): HealthSnapshot {
    const out = new Map<string, Map<string, CheckVerdict>>();
    for (const [member, paths] of this.#states) {
      const m = new Map<string, CheckVerdict>();
      for (const [path, s] of paths) {
        const v = reportedVerdict(s);
        if (v !== undefined) m.set(path, v);
      }
      out.set(member, m);
    }
    return out;
  }

  /** Checks every interval from now on (again after `pause`). */
  start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => void this.#round(), this.#intervalMs);
    this.#timer.unref();
    void this.#round();
  }

  /** Stops checking and forgets every verdict, until `start` again. */
  pause(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#states.size === 0) return;
    this.#states.clear();
    this.emit('change', this.snapshot());
  }

  /**
   * While the proxy's DCS view is stale the checks are its only news of a switchover: they run
   * every STALE_INTERVAL_MS at most, and an agent that answers "no" is believed at once (no `fall`
   * hysteresis, check-state.ts).
   */
  setStale(stale: boolean): void {
    this.#denyAtOnce = stale;
    const ms = stale ? Math.min(this.#opts.intervalMs, STALE_INTERVAL_MS) : this.#opts.intervalMs;
    if (ms === this.#intervalMs) return;
    this.#intervalMs = ms;
    if (this.#timer) {
      clearInterval(this.#timer);
      this.#timer = setInterval(() => void this.#round(), ms);
      this.#timer.unref();
    }
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * Checks again now, not at the next interval: a session just failed on a node (refused, or its
   * role on the wire contradicted the table), which is how a switchover shows first.
   */
  checkSoon(): void {
    if (!this.#timer || this.#closed) return;
    if (this.#running) this.#again = true;
    else void this.#round();
  }

  async #round(): Promise<void> {
    if (this.#running || this.#closed) return;
    this.#running = true;
    this.#again = false;
    try {
      const checks: Promise<boolean>[] = [];
      for (const [member, base] of this.#targets) {
        for (const path of this.#opts.paths) checks.push(this.#checkOne(member, base, path));
      }
      const changed = (await Promise.all(checks)).some(Boolean);
      if (changed && !this.#closed) this.emit('change', this.snapshot());
    } finally {
      this.#running = false;
    }
    if (this.#again) void this.#round();
  }

  /** Runs one check; true when the member's verdict for that path changed. */
  async #checkOne(member: string, base: string, path: string): Promise<boolean> {
    let ok = false;
    let answered = false;
    let detail = '';
    try {
      const res = await request(base + path, {
        method: 'GET',
        dispatcher: this.#dispatcher,
        headersTimeout: this.#opts.timeoutMs,
        bodyTimeout: this.#opts.timeoutMs,
        signal: AbortSignal.timeout(this.#opts.timeoutMs),
      });
      await res.body.dump();
      ok = res.statusCode === 200;
      answered = true;
      detail = `HTTP ${res.statusCode}`;
    } catch (err) {
      detail = errorMessage(err);
    }
    if (this.#closed || !this.#timer || this.#targets.get(member) !== base) return false;
    let paths = this.#states.get(member);
    if (!paths) this.#states.set(member, (paths = new Map()));
    const prev = paths.get(path) ?? UNKNOWN_CHECK;
    const next = stepCheck(prev, ok, this.#opts.fall, this.#opts.rise, answered, this.#denyAtOnce);
    paths.set(path, next);
    const verdict = reportedVerdict(next)!;
    this.#opts.onResult?.(member, path, ok, verdict);
    if (verdict !== reportedVerdict(prev)) {
      this.#opts.log.info({ member, path, verdict, detail }, `health check ${path} on ${member}: ${verdict}`);
      return true;
    }
    return false;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#dispatcher.close().catch(() => undefined);
  }

  async destroy(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#dispatcher.destroy().catch(() => undefined);
  }
}
