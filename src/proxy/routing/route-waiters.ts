/**
 * Sessions waiting for the routing table to change (no node qualifies yet, or every node failed).
 * Each waits with its own deadline (the session engine's timer); the proxy wakes them all on a
 * change. Bounded by the clients admitted.
 */
export interface RouteWaiter {
  onRouteChanged(): void;
}

export class RouteWaiters {
  readonly #waiting = new Set<RouteWaiter>();
  readonly #onSize: (size: number) => void;

  constructor(onSize: (size: number) => void = () => undefined) {
    this.#onSize = onSize;
  }

  get size(): number {
    return this.#waiting.size;
  }

  add(w: RouteWaiter): void {
    if (this.#waiting.has(w)) return;
    this.#waiting.add(w);
    this.#onSize(this.#waiting.size);
  }

  delete(w: RouteWaiter): void {
    if (this.#waiting.delete(w)) this.#onSize(this.#waiting.size);
  }

  /** Wakes every session waiting now (those that start waiting meanwhile wait for the next change). */
  wakeAll(): void {
    for (const w of [...this.#waiting]) w.onRouteChanged();
  }
}
