/**
 * auth.query's short cache: a user's secret (or its absence) is kept `ttlMs` so a burst of logins
 * costs one query, and a changed password is seen within `ttlMs`. Bounded: the oldest entry goes
 * when `maxEntries` is reached. `now` is passed in.
 */
import type { StoredSecret } from '../../protocol/auth/secret.js';

interface Entry {
  readonly secret: StoredSecret | undefined;
  readonly expiresAtMs: number;
}

export class SecretCache {
  readonly #entries = new Map<string, Entry>();

  constructor(
    readonly ttlMs: number,
    readonly maxEntries: number,
  ) {}

  /** `found: false` when not cached or expired; `secret: undefined` caches "no such user". */
  get(user: string, nowMs: number): { found: true; secret: StoredSecret | undefined } | { found: false } {
    const entry = this.#entries.get(user);
    if (entry === undefined) return { found: false };
    if (entry.expiresAtMs <= nowMs) {
      this.#entries.delete(user);
      return { found: false };
    }
    return { found: true, secret: entry.secret };
  }

  set(user: string, secret: StoredSecret | undefined, nowMs: number): void {
    this.#entries.delete(user);
    if (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(user, { secret, expiresAtMs: nowMs + this.ttlMs });
  }

  delete(user: string): void {
    this.#entries.delete(user);
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
