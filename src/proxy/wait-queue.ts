/**
 * Clients waiting for something to change (a node to qualify, a routing table to move on).
 * `wait()` resolves true when woken by `wakeAll()`, false when its deadline passes first.
 * One timer per waiter, cleared on wake; the queue is bounded by max_client_connections.
 */
export class WaitQueue {
  readonly #waiters = new Set<{ wake: (woken: boolean) => void }>();
  readonly #onSize: (size: number) => void;

  constructor(onSize: (size: number) => void = () => undefined) {
    this.#onSize = onSize;
  }

  get size(): number {
    return this.#waiters.size;
  }

  wait(timeoutMs: number): { promise: Promise<boolean>; cancel: () => void } {
    let waiter!: { wake: (woken: boolean) => void };
    const promise = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => waiter.wake(false), Math.max(0, timeoutMs));
      waiter = {
        wake: (woken) => {
          clearTimeout(timer);
          if (this.#waiters.delete(waiter)) this.#onSize(this.#waiters.size);
          resolve(woken);
        },
      };
      this.#waiters.add(waiter);
      this.#onSize(this.#waiters.size);
    });
    return { promise, cancel: () => waiter.wake(false) };
  }

  wakeAll(): void {
    for (const w of [...this.#waiters]) w.wake(true);
  }
}
