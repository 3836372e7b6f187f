/**
 * Read-your-writes: the leader's current WAL position, from its agent's `GET /patroni`
 * (`xlog.location`, which both Patroni and pgfleet's agent read from PostgreSQL when asked). A
 * position is only good for read sessions that arrived before it was asked for: every commit
 * acknowledged before then is at or below it. So callers that arrive while a request is out wait
 * for the next one, and every caller waiting shares it: at most one request is out at a time.
 */
import type { ConnectionOptions } from 'node:tls';
import { Agent, request } from 'undici';
import { errorMessage } from '../../errors.js';

/** Where the leader's agent answers, or why there is none to ask. */
export type LeaderApi = { readonly url: string } | { readonly error: string };

interface Waiter {
  resolve(lsn: bigint): void;
  reject(err: Error): void;
}

/** `GET /patroni`'s body → the primary's position; throws naming what is wrong. */
export function writePositionOf(body: unknown): bigint {
  const b = body as { role?: unknown; xlog?: { location?: unknown } } | null;
  if (b?.role !== 'primary' && b?.role !== 'master')
    throw new Error(`the leader's agent reports role ${JSON.stringify(b?.role)}, not primary`);
  const loc = b.xlog?.location;
  if (typeof loc !== 'number' || !Number.isSafeInteger(loc) || loc < 0)
    throw new Error(`the leader's agent reports no xlog.location (${JSON.stringify(loc)})`);
  return BigInt(loc);
}

export class WritePositionSource {
  readonly #leader: () => LeaderApi;
  readonly #timeoutMs: () => number;
  readonly #dispatcher: Agent;
  /** Callers for the request out now; callers for the next one. */
  #current: Waiter[] | undefined;
  #next: Waiter[] = [];
  #closed = false;

  /** `tls`: for a leader whose api_url is https (`proxy.agent_tls`). */
  constructor(leader: () => LeaderApi, timeoutMs: () => number, tls?: ConnectionOptions) {
    this.#dispatcher = new Agent({ connections: 2, pipelining: 1, ...(tls ? { connect: { ...tls } } : {}) });
    this.#leader = leader;
    this.#timeoutMs = timeoutMs;
  }

  /** The leader's position, asked for after this call. */
  get(): Promise<bigint> {
    return new Promise<bigint>((resolve, reject) => {
      if (this.#closed) {
        reject(new Error('the proxy is closing'));
        return;
      }
      this.#next.push({ resolve, reject });
      if (this.#current === undefined) this.#ask();
    });
  }

  #ask(): void {
    const waiters = this.#next;
    this.#next = [];
    this.#current = waiters;
    this.#fetch().then(
      (lsn) => this.#settle(waiters, (w) => w.resolve(lsn)),
      (err: unknown) => {
        const e = new Error(errorMessage(err));
        this.#settle(waiters, (w) => w.reject(e));
      },
    );
  }

  #settle(waiters: Waiter[], fn: (w: Waiter) => void): void {
    this.#current = undefined;
    for (const w of waiters) fn(w);
    if (this.#next.length > 0 && !this.#closed) this.#ask();
  }

  async #fetch(): Promise<bigint> {
    const leader = this.#leader();
    if ('error' in leader) throw new Error(leader.error);
    const timeoutMs = this.#timeoutMs();
    const res = await request(`${leader.url}/patroni`, {
      method: 'GET',
      dispatcher: this.#dispatcher,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`the leader's agent answered GET /patroni with HTTP ${res.statusCode}`);
    }
    return writePositionOf(await res.body.json());
  }

  async close(): Promise<void> {
    this.#closed = true;
    const e = new Error('the proxy is closing');
    for (const w of this.#next) w.reject(e);
    this.#next = [];
    await this.#dispatcher.close();
  }
}
