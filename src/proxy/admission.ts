/**
 * Who may connect: clients still in their startup (before the proxy has read a StartupMessage)
 * count against their own limits, never against the room kept for admitted clients, so that
 * connections that say nothing cannot lock anyone out.
 *
 *   count     | from                        | until                    | limit (refused with 53300)
 *   ----------+-----------------------------+--------------------------+--------------------------------
 *   starting  | TCP accept                  | the first packet decided | max_startup_connections, and
 *             |                             | (StartupMessage, cancel, | max_startup_connections_per_source
 *             |                             | refusal, close, timeout) | per client address
 *   admitted  | the StartupMessage accepted | the session's end        | max_client_connections, and the
 *             |                             |                          | listener's own max_client_connections
 *
 * Plain counters: the session engine asks `hasClientRoom(listener)`, the session reports its moves.
 * The limits may be replaced (reload): counts stay, the new limits apply to the next client.
 */
export interface AdmissionLimits {
  readonly maxClients: number;
  readonly maxStarting: number;
  readonly maxStartingPerSource: number;
  /** listener → its own cap on admitted clients (listeners without one share only the total). */
  readonly maxClientsByListener: ReadonlyMap<string, number>;
}

/** Addresses kept at a count of 0 before they are dropped (leaveStartup). */
const IDLE_SOURCES_KEPT = 1024;

export class Admission {
  #limits: AdmissionLimits;
  #starting = 0;
  #admitted = 0;
  readonly #startingBySource = new Map<string, number>();
  readonly #admittedByListener = new Map<string, number>();

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
  }

  /** New limits (reload): clients already counted stay; the limits apply from the next one. */
  setLimits(limits: AdmissionLimits): void {
    this.#limits = limits;
  }

  /** Admitted clients of one listener. */
  admittedOn(listener: string): number {
    return this.#admittedByListener.get(listener) ?? 0;
  }

  get starting(): number {
    return this.#starting;
  }

  get admitted(): number {
    return this.#admitted;
  }

  /** Counts a newly accepted client from `source`; false (not counted) when it must be refused. */
  enterStartup(source: string): boolean {
    const fromSource = this.#startingBySource.get(source) ?? 0;
    if (this.#starting >= this.#limits.maxStarting || fromSource >= this.#limits.maxStartingPerSource)
      return false;
    this.#starting++;
    this.#startingBySource.set(source, fromSource + 1);
    return true;
  }

  /**
   * An address's count stays in the table at 0 (no delete and insert per connection of a client
   * that connects again and again, as under `pgbench -C`); the zeros go once there are
   * IDLE_SOURCES_KEPT more entries than clients in their startup.
   */
  leaveStartup(source: string): void {
    const table = this.#startingBySource;
    table.set(source, Math.max(0, (table.get(source) ?? 0) - 1));
    this.#starting--;
    if (table.size > this.#starting + IDLE_SOURCES_KEPT)
      for (const [s, n] of table) if (n === 0) table.delete(s);
  }

  /** Addresses in the per-source table (those at 0 included): for tests. */
  get sourcesTracked(): number {
    return this.#startingBySource.size;
  }

  hasClientRoom(listener: string): boolean {
    const own = this.#limits.maxClientsByListener.get(listener);
    if (own !== undefined && this.admittedOn(listener) >= own) return false;
    return this.#admitted < this.#limits.maxClients;
  }

  admit(listener: string): void {
    this.#admitted++;
    this.#admittedByListener.set(listener, this.admittedOn(listener) + 1);
  }

  release(listener: string): void {
    this.#admitted--;
    const n = this.admittedOn(listener) - 1;
    if (n <= 0) this.#admittedByListener.delete(listener);
    else this.#admittedByListener.set(listener, n);
  }
}
