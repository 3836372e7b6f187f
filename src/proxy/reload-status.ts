/**
 * The record of the proxy's configuration loads, for `/status` and the metrics: when the running
 * configuration was last loaded whole, and how the last reload went (applied, waiting for a
 * restart, or invalid with every problem).
 */
export interface ReloadOutcome {
  readonly ok: boolean;
  /** Keys applied live (ok), e.g. `proxy.listeners[rw]`, `proxy.wait_timeout`. */
  readonly applied: readonly string[];
  /** Keys whose new value waits for a restart (ok). */
  readonly restartNeeded: readonly string[];
  /** Every problem (not ok): the running configuration stays. */
  readonly errors: readonly string[];
}

export interface ReloadStatus {
  /** 1/0 as `pgfleet_proxy_config_reload_success`: the last reload (or the start) succeeded. */
  readonly reload_success: boolean;
  /** ISO time of the last good load: the start, or the last successful reload. */
  readonly last_good_load: string;
  readonly last_reload: (ReloadOutcome & { readonly at: string }) | null;
}

export class ReloadRecord {
  #lastGood: Date;
  #last: (ReloadOutcome & { at: string }) | null = null;

  constructor(startedAt: Date) {
    this.#lastGood = startedAt;
  }

  get success(): boolean {
    return this.#last?.ok ?? true;
  }

  /** Seconds since the epoch of the last good load. */
  get lastGoodSeconds(): number {
    return this.#lastGood.getTime() / 1000;
  }

  record(outcome: ReloadOutcome, at: Date): void {
    this.#last = { ...outcome, at: at.toISOString() };
    if (outcome.ok) this.#lastGood = at;
  }

  status(): ReloadStatus {
    return {
      reload_success: this.success,
      last_good_load: this.#lastGood.toISOString(),
      last_reload: this.#last,
    };
  }
}
