/**
 * Deadlines of many short-lived things on one interval timer, checked every `tickMs`, instead of a
 * setTimeout each. A session re-arms its deadline at each phase of its startup (accept, routing,
 * connect, handshake) and nearly always clears it a few milliseconds later at ReadyForQuery. With
 * one client at a time
 * (`pgbench -C -c 1`) every setTimeout found Node's list for its duration empty, so it made a new
 * list, put it in the priority queue and re-armed libuv's timer, and clearTimeout undid it all: a
 * sixth of the proxy's JavaScript per connection in a --cpu-prof. Here arming and clearing are a Map
 * set and delete; a deadline fires up to `tickMs` late. The timer stops after IDLE_TICKS ticks with
 * nothing armed (not at once: between one client's connections the wheel is often empty for a
 * moment), and does not keep the process alive.
 */
import { performance } from 'node:perf_hooks';

/** Something with a deadline; `onDeadline` runs once when it passes (unless cleared first). */
export interface HasDeadline {
  onDeadline(): void;
}

/** The wheel's time and timer (real ones by default; tests pass a manual clock). */
export interface WheelClock {
  now(): number;
  every(ms: number, fn: () => void): { stop(): void };
}

/** Empty ticks before the timer stops. */
export const IDLE_TICKS = 40;

const realClock: WheelClock = {
  now: () => performance.now(),
  every: (ms, fn) => {
    const t = setInterval(fn, ms).unref();
    return { stop: () => clearInterval(t) };
  },
};

export class DeadlineWheel<T extends HasDeadline = HasDeadline> {
  readonly #tickMs: number;
  readonly #clock: WheelClock;
  readonly #onError: (err: unknown) => void;
  /** Item → due time; insertion order, so items armed with one duration are in deadline order. */
  readonly #due = new Map<T, number>();
  #ticker: { stop(): void } | undefined;
  #idleTicks = 0;

  constructor(tickMs: number, onError: (err: unknown) => void, clock: WheelClock = realClock) {
    if (!(tickMs > 0)) throw new RangeError(`tickMs must be positive, got ${tickMs}`);
    this.#tickMs = tickMs;
    this.#onError = onError;
    this.#clock = clock;
  }

  /** How many items are armed. */
  get size(): number {
    return this.#due.size;
  }

  /** Arms (or re-arms) `item` to fire `inMs` from now. */
  set(item: T, inMs: number): void {
    this.#due.delete(item);
    this.#due.set(item, this.#clock.now() + Math.max(0, inMs));
    this.#ticker ??= this.#clock.every(this.#tickMs, () => this.#tick());
  }

  /** Disarms `item`; nothing when it is not armed. */
  clear(item: T): void {
    this.#due.delete(item);
  }

  #tick(): void {
    const now = this.#clock.now();
    for (const [item, at] of this.#due) {
      if (at > now) continue;
      this.#due.delete(item);
      try {
        item.onDeadline();
      } catch (err) {
        this.#onError(err);
      }
    }
    if (this.#due.size > 0) this.#idleTicks = 0;
    else if (++this.#idleTicks >= IDLE_TICKS) {
      this.#ticker?.stop();
      this.#ticker = undefined;
      this.#idleTicks = 0;
    }
  }
}
