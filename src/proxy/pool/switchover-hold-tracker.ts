/**
 * The proxy's switchover hold (switchover-hold.ts decides): follows the cluster views, says which
 * node transaction pools lend no server on now, and calls `changed` when that changes — the hold
 * starting, its cap passing (a timer), a scheduled switchover's time coming (a timer), the request
 * going or the leader moving.
 */
import { performance } from 'node:perf_hooks';
import type { ClusterView } from '../../cluster/types.js';
import type { Logger } from '../../observability/logger.js';
import {
  heldNode,
  nextHold,
  scheduledHoldStartMs,
  switchoverPendingFrom,
  type HoldState,
} from './switchover-hold.js';

export interface HoldStatus {
  /** The leader being switched away from. */
  readonly from: string;
  readonly heldForMs: number;
  readonly capMs: number;
}

export class SwitchoverHoldTracker {
  #hold: HoldState | undefined;
  #view: ClusterView | undefined;
  #timer: NodeJS.Timeout | undefined;
  #last: string | undefined;
  readonly #capMs: () => number;
  readonly #changed: () => void;
  readonly #log: Logger;

  constructor(capMs: () => number, changed: () => void, log: Logger) {
    this.#capMs = capMs;
    this.#changed = changed;
    this.#log = log;
  }

  /** A new view of the cluster (or a reload changed the cap: observe the last view again). */
  observe(view: ClusterView | undefined = this.#view): void {
    if (view === undefined) return;
    this.#view = view;
    const now = performance.now();
    const wallNow = Date.now();
    this.#hold = nextHold(this.#hold, switchoverPendingFrom(view, wallNow), now);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const capMs = this.#capMs();
    const startAt = scheduledHoldStartMs(view, wallNow);
    if (this.#hold !== undefined && heldNode(this.#hold, now, capMs) !== undefined)
      this.#arm(this.#hold.sinceMs + capMs - now);
    else if (startAt !== undefined) this.#arm(startAt - wallNow);
    this.#report();
  }

  /** The node no transaction starts on now, if any. */
  node(): string | undefined {
    return heldNode(this.#hold, performance.now(), this.#capMs());
  }

  status(): HoldStatus | undefined {
    const node = this.node();
    if (node === undefined || this.#hold === undefined) return undefined;
    return {
      from: node,
      heldForMs: Math.round(performance.now() - this.#hold.sinceMs),
      capMs: this.#capMs(),
    };
  }

  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.observe(), Math.max(0, ms) + 1);
    this.#timer.unref();
  }

  #report(): void {
    const node = this.node();
    if (node === this.#last) return;
    const was = this.#last;
    this.#last = node;
    if (node !== undefined)
      this.#log.info(
        { from: node, capMs: this.#capMs() },
        'switchover pending: transaction-pooled clients start no transaction on the old primary',
      );
    else
      this.#log.info(
        { from: was, leader: this.#view?.leader, capReached: this.#hold !== undefined },
        this.#hold !== undefined
          ? 'switchover hold: cap reached; held clients go on'
          : 'switchover hold over',
      );
    this.#changed();
  }
}
