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
 *   admitted  | the StartupMessage accepted | the session's end        | max_client_connections
 *
 * Plain counters: the session engine asks `hasClientRoom()`, the session reports its moves.
 */
export interface AdmissionLimits {
  readonly maxClients: number;
  readonly maxStarting: number;
  readonly maxStartingPerSource: number;
}

export class Admission {
  readonly #limits: AdmissionLimits;
  #starting = 0;
  #admitted = 0;
  readonly #startingBySource = new Map<string, number>();

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
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

  leaveStartup(source: string): void {
    const fromSource = this.#startingBySource.get(source) ?? 0;
    if (fromSource <= 1) this.#startingBySource.delete(source);
    else this.#startingBySource.set(source, fromSource - 1);
    this.#starting--;
  }

  hasClientRoom(): boolean {
    return this.#admitted < this.#limits.maxClients;
  }

  admit(): void {
    this.#admitted++;
  }

  release(): void {
    this.#admitted--;
  }
}
