/**
 * Deadlines of many short-lived things on one interval timer, checked every `tickMs`, instead of a
 * setTimeout each. A session re-arms its deadline at each phase of its startup (accept, routing,
 * connect, handshake) and nearly always clears it a few milliseconds later at ReadyForQuery. With
 * one client at a time
 * (`pgbench -C -c 1`) every setTimeout found Node's list for its duration empty, so it made a new
 * list, put it in the priority queue and re-armed libuv's timer, and clearTimeout undid it all: a
 * sixth of the proxy's JavaScript per connection in a --cpu-prof. Here arming and clearing are an
 * array slot's write (the item keeps its slot); a deadline fires up to `tickMs` late, the earliest
 * first. The timer stops after IDLE_TICKS ticks with
 * nothing armed (not at once: between one client's connections the wheel is often empty for a
 * moment), and does not keep the process alive.
 */
import { performance } from 'node:perf_hooks';

/** Something with a deadline; `onDeadline` runs once when it passes (unless cleared first). */
export interface HasDeadline {
  onDeadline(): void;
  /** Where the wheel keeps it (the wheel's own; -1 or absent: not armed). */
  deadlineSlot?: number;
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
  /**
   * The armed items and their due times, in two arrays (an item knows its slot): a Map here, armed
   * and cleared at every connection, was rehashed every few connections, and each discarded table,
   * garbage in the old generation, kept its successor and the sessions in it alive through young
   * collections (promoted, then freed only by a full one).
   */
  readonly #items: T[] = [];
  readonly #dueAt: number[] = [];
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
    return this.#items.length;
  }

  /** Arms (or re-arms) `item` to fire `inMs` from now. */
  set(item: T, inMs: number): void {
    const at = this.#clock.now() + Math.max(0, inMs);
    const slot = this.#slot(item);
    if (slot >= 0) this.#dueAt[slot] = at;
    else {
      item.deadlineSlot = this.#items.length;
      this.#items.push(item);
      this.#dueAt.push(at);
    }
    this.#ticker ??= this.#clock.every(this.#tickMs, () => this.#tick());
  }

  /** Disarms `item`; nothing when it is not armed. */
  clear(item: T): void {
    const slot = this.#slot(item);
    if (slot < 0) return;
    const last = this.#items.length - 1;
    if (slot !== last) {
      const moved = this.#items[last]!;
      this.#items[slot] = moved;
      this.#dueAt[slot] = this.#dueAt[last]!;
      moved.deadlineSlot = slot;
    }
    this.#items.pop();
    this.#dueAt.pop();
    item.deadlineSlot = -1;
  }

  #slot(item: T): number {
    const slot = item.deadlineSlot ?? -1;
    return slot >= 0 && this.#items[slot] === item ? slot : -1;
  }

  #tick(): void {
    const now = this.#clock.now();
    // The due ones first, earliest first (firing may arm or clear others, itself included).
    let due: { item: T; at: number }[] | undefined;
    for (let i = 0; i < this.#items.length; i++)
      if (this.#dueAt[i]! <= now) (due ??= []).push({ item: this.#items[i]!, at: this.#dueAt[i]! });
    if (due !== undefined) {
      due.sort((a, b) => a.at - b.at);
      for (const { item, at } of due) {
        // (Still armed for that time: not cleared or set again by an earlier one's onDeadline.)
        const slot = this.#slot(item);
        if (slot < 0 || this.#dueAt[slot] !== at) continue;
        this.clear(item);
        try {
          item.onDeadline();
        } catch (err) {
          this.#onError(err);
        }
      }
    }
    if (this.#items.length > 0) this.#idleTicks = 0;
    else if (++this.#idleTicks >= IDLE_TICKS) {
      this.#ticker?.stop();
      this.#ticker = undefined;
      this.#idleTicks = 0;
    }
  }
}
