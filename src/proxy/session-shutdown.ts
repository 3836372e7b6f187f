/**
 * How a stopping proxy ends its sessions: it stops accepting; after a handover it waits for them
 * to end by themselves; it drains them (57P01 at their next idle point) up to the timeout; then it
 * ends the rest, and destroys what did not go within a short grace. destroy() cuts any wait short.
 */
import type { Logger } from '../observability/logger.js';
import type { ListenerSet } from './listener-set.js';
import { termination } from './routing/connection-registry.js';

/** How long sessions get to say goodbye (FATAL 57P01, then the FIN) before their sockets are destroyed. */
const SHUTDOWN_GRACE_MS = 2_000;

export interface SessionShutdownOptions {
  readonly listeners: ListenerSet;
  readonly log: Logger;
  /** Closes the admin HTTP port (a handover: the new process answers there). */
  readonly closeAdmin: () => Promise<void> | undefined;
  /** Wakes the clients waiting for a route (they end). */
  readonly wakeWaiters: () => void;
}

export class SessionShutdown {
  readonly #opts: SessionShutdownOptions;
  /** Set while a graceful stop waits for sessions to end. */
  #draining = false;
  /** Ends a graceful stop's wait early (destroy()). */
  #drainCut: (() => void) | undefined;
  /** destroy() was called: no wait any more. */
  #stopNow = false;

  constructor(opts: SessionShutdownOptions) {
    this.#opts = opts;
  }

  /** A graceful stop waits for sessions to end now. */
  get draining(): boolean {
    return this.#draining;
  }

  /** destroy(): the wait in progress ends now, and no other starts. */
  cut(): void {
    this.#stopNow = true;
    this.#drainCut?.();
  }

  /** Waits until every session ended, `ms` passed, or destroy() was called. */
  async #awaitSessions(ms: number): Promise<void> {
    if (this.#stopNow) return;
    this.#draining = true;
    const cut = new Promise<void>((resolve) => (this.#drainCut = resolve));
    await Promise.race([this.#opts.listeners.sessionsEnded(ms), cut]);
    this.#drainCut = undefined;
    this.#draining = false;
  }

  /** Ends every session: at once with `drainMs` 0, else as the header says. */
  async endSessions(drainMs: number, handedOver: boolean): Promise<void> {
    const { listeners, log } = this.#opts;
    listeners.stopAccepting();
    const bye = termination('shutdown', 'terminating connection because the pgfleet proxy is shutting down');
    if (handedOver) {
      // The new process answers on the admin port from now on.
      await this.#opts.closeAdmin();
      log.info(
        { sessions: listeners.sessionCount, timeoutMs: drainMs },
        'handed over: no longer accepting; waiting for the sessions to end',
      );
      await this.#awaitSessions(drainMs);
      drainMs = listeners.sessionCount > 0 && !this.#stopNow ? SHUTDOWN_GRACE_MS : 0;
    }
    if (drainMs > 0) {
      log.info(
        { sessions: listeners.sessionCount, timeoutMs: drainMs },
        'draining: sessions end at their next idle point',
      );
      listeners.drain(bye);
      await this.#awaitSessions(drainMs);
      const left = listeners.sessionCount;
      if (left > 0) log.info({ sessions: left }, 'drain over: ending the sessions left with 57P01');
    }
    listeners.terminateAll(bye);
    this.#opts.wakeWaiters();
    await listeners.sessionsEnded(SHUTDOWN_GRACE_MS);
    listeners.destroySessions();
  }
}
