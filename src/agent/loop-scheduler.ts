/**
 * When the agent's work runs: a cycle on a timer (at once after it acted, soon after a wake),
 * a status tick on an interval, and every task one at a time on the exclusive chain.
 */
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';

export interface LoopWork {
  /** One HA cycle; resolves with whether it acted (then the next cycle follows at once). */
  cycle(): Promise<boolean>;
  /** The wait before the next cycle after one that did not act. */
  nextCycleDelayMs(): number;
}

export class LoopScheduler {
  private cycleTimer: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private busy: Promise<void> = Promise.resolve();
  #running = false;
  private wakePending = false;
  /** Tasks queued or running on the exclusive chain. */
  #pending = 0;

  constructor(
    private readonly work: LoopWork,
    private readonly log: Logger,
  ) {}

  get running(): boolean {
    return this.#running;
  }

  get pending(): number {
    return this.#pending;
  }

  /** Runs `first` on the chain, then the cycles; `statusTick` every `statusIntervalMs`. */
  start(first: () => Promise<void>, statusIntervalMs: number, statusTick: () => void): void {
    this.#running = true;
    this.exclusive(first);
    this.scheduleCycle(0);

    this.statusTimer = setInterval(statusTick, statusIntervalMs);
  }

  /** Runs a cycle soon (debounced), unless one is about to run. */
  wake(): void {
    if (!this.#running || this.wakePending) return;
    this.wakePending = true;
    setTimeout(() => {
      this.wakePending = false;
      this.scheduleCycle(0);
    }, 50).unref();
  }

  /** Runs `fn` after any cycle or publish in progress; never two at once. */
  exclusive(fn: () => Promise<void>): void {
    this.#pending++;
    this.busy = this.busy
      .then(fn)
      .catch((err: unknown) => {
        this.log.error({ err: errorMessage(err) }, 'unexpected agent error');
      })
      .finally(() => {
        this.#pending--;
      });
  }

  scheduleCycle(delayMs: number): void {
    if (!this.#running) return;
    clearTimeout(this.cycleTimer);
    this.cycleTimer = setTimeout(() => {
      this.exclusive(async () => {
        const acted = await this.work.cycle();
        this.scheduleCycle(acted ? 0 : this.work.nextCycleDelayMs());
      });
    }, delayMs);
  }

  /** Runs `fn` on the exclusive chain; settles with its outcome. */
  onChain(fn: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => this.exclusive(() => fn().then(resolve, reject)));
  }

  /** No more cycles or status ticks; the one running (if any) finishes on `idle()`. */
  stop(): void {
    this.#running = false;
    clearTimeout(this.cycleTimer);
    clearInterval(this.statusTimer);
  }

  /** Settles when the task on the chain now (and those queued before it) has run. */
  idle(): Promise<void> {
    return this.busy;
  }
}
