/**
 * Memory left behind by a burst of hand-overs to the native relay. A session handed over leaves
 * its two Node sockets behind as garbage, and with them their native handles, which Node frees only
 * when V8 collects the JavaScript objects. A proxy holding thousands of idle sessions allocates
 * next to nothing, so V8 would not collect that garbage for a long time, and the allocator would
 * keep what was freed: after 10,000 sessions opened at once, about 3 KiB each of memory nobody uses.
 *
 * After a burst of at least BURST hand-overs, once none has come for QUIET_MS, this runs one full
 * collection and asks the C allocator to give back its free pages (`trim`), at most once every
 * MIN_INTERVAL_MS. A collection of the proxy's heap (tens of MB) takes a few milliseconds of the
 * main thread; relayed sessions do not notice (their bytes move on the relay threads).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { performance } from 'node:perf_hooks';

export const BURST = 1_000;
export const QUIET_MS = 200;
export const MIN_INTERVAL_MS = 30_000;

/** V8's full collection, exposed at run time (as `node --expose-gc` would). */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** What the clean-up runs on: real ones by default; tests pass their own. */
export interface CleanupHooks {
  /** Hands the C allocator's free pages back to the system. */
  trim(): void;
  /** A full collection of V8's heap. */
  collect(): void;
  now(): number;
  /** Runs `fn` in `ms` (not keeping the process alive); returns how to cancel it. */
  later(fn: () => void, ms: number): () => void;
  /** What a clean-up took. */
  done(handovers: number, gcMs: number, trimMs: number): void;
}

let gc: (() => void) | undefined;

/** The real hooks, around the addon's trim and a report. */
export function cleanupHooks(trim: () => void, done: CleanupHooks['done']): CleanupHooks {
  return {
    trim,
    collect: () => (gc ??= exposeGc())(),
    now: () => performance.now(),
    later: (fn, ms) => {
      const t = setTimeout(fn, ms).unref();
      return () => clearTimeout(t);
    },
    done,
  };
}

export class BurstCleanup {
  readonly #hooks: CleanupHooks;
  #count = 0;
  #last = -Infinity;
  #cancel: (() => void) | undefined;

  constructor(hooks: CleanupHooks) {
    this.#hooks = hooks;
  }

  /** A session went to the native relay. */
  handedOver(): void {
    if (++this.#count < BURST) return;
    this.#schedule(QUIET_MS);
  }

  #schedule(ms: number): void {
    this.#cancel?.();
    this.#cancel = this.#hooks.later(() => this.#cleanup(), ms);
  }

  #cleanup(): void {
    this.#cancel = undefined;
    const h = this.#hooks;
    const now = h.now();
    if (now - this.#last < MIN_INTERVAL_MS) {
      this.#schedule(this.#last + MIN_INTERVAL_MS - now);
      return;
    }
    const handovers = this.#count;
    this.#count = 0;
    this.#last = now;
    h.collect();
    const collected = h.now();
    h.trim();
    h.done(handovers, collected - now, h.now() - collected);
  }

  close(): void {
    this.#cancel?.();
    this.#cancel = undefined;
  }
}
