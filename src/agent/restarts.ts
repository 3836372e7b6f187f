/**
 * Operator restarts with Patroni's rules (restart-rules.ts): at once (POST /restart), or scheduled
 * (`schedule`), kept in memory and shown in the member key as `scheduled_restart`, run by the HA
 * cycle when due, cancelled by DELETE /restart (`patronictl flush … restart`). One scheduled restart
 * at a time; it is dropped when PostgreSQL restarted since it was asked for.
 *
 * States: none → scheduled → (due: run | stale / already restarted: dropped | DELETE: none).
 * @see patroni/ha.py schedule_future_restart, delete_future_restart, evaluate_scheduled_restart
 */
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import {
  restartMismatch,
  scheduledRestartJson,
  scheduledRestartStep,
  type Reply,
  type RestartFacts,
  type RestartRequest,
} from './restart-rules.js';

/** A timer that fires this early still counts as on time. */
const EARLY_MS = 20;

interface Scheduled {
  readonly request: RestartRequest;
  readonly askedWithStartMs: number | undefined;
}

export interface CycleFacts {
  readonly wallNowMs: number;
  readonly loopWaitMs: number;
  readonly paused: boolean;
  readonly postmasterStartMs: number | undefined;
}

export class Restarts {
  private scheduled: Scheduled | undefined;

  constructor(
    private readonly facts: () => RestartFacts,
    private readonly log: Logger,
  ) {}

  /** POST /restart without `schedule`: checks the conditions, then runs `restart` (Patroni's answers). */
  async now(request: RestartRequest, restart: () => Promise<void>): Promise<Reply> {
    const why = restartMismatch(request, this.facts());
    if (why !== undefined) {
      this.log.info(`not proceeding with the restart: ${why}`);
      return { status: 503, body: 'restart conditions are not satisfied' };
    }
    try {
      await restart();
      return { status: 200, body: 'restarted successfully' };
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'restart failed');
      return { status: 503, body: `restart failed: ${errorMessage(err)}` };
    }
  }

  /** POST /restart with `schedule`: 202, or 409 when one is already scheduled. */
  schedule(request: RestartRequest, postmasterStartMs: number | undefined): Reply {
    if (this.scheduled) return { status: 409, body: 'Another restart is already scheduled' };
    this.scheduled = { request, askedWithStartMs: postmasterStartMs };
    this.log.info({ scheduled: scheduledRestartJson(request) }, 'restart scheduled');
    return { status: 202, body: 'Restart scheduled' };
  }

  /** DELETE /restart. */
  cancel(): Reply {
    if (!this.scheduled) return { status: 404, body: 'no restarts are scheduled' };
    this.scheduled = undefined;
    this.log.info('scheduled restart deleted');
    return { status: 200, body: 'scheduled restart deleted' };
  }

  /** Milliseconds until the scheduled restart is due; undefined: none, or due already (the next cycle runs it). */
  dueInMs(wallNowMs: number): number | undefined {
    const at = this.scheduled?.request.scheduleMs;
    return at === undefined || at <= wallNowMs ? undefined : at - wallNowMs;
  }

  /** The member key's operator fields: Patroni's `pending_restart` and `scheduled_restart`. */
  memberFields(pendingRestart: boolean): Record<string, unknown> {
    const scheduled = this.memberJson();
    return {
      ...(pendingRestart ? { pending_restart: true } : {}),
      ...(scheduled ? { scheduled_restart: scheduled } : {}),
    };
  }

  /** The member key's `scheduled_restart` (with `postmaster_start_time`), or undefined. */
  memberJson(): Record<string, unknown> | undefined {
    const s = this.scheduled;
    return s && scheduledRestartJson(s.request, s.askedWithStartMs);
  }

  /**
   * In an HA cycle: runs the scheduled restart when due, or drops it (stale, or PostgreSQL
   * restarted meanwhile). Returns the cycle's sentence when it acted.
   */
  async evaluate(f: CycleFacts, restart: () => Promise<void>): Promise<string | undefined> {
    const s = this.scheduled;
    if (!s) return undefined;
    const step = scheduledRestartStep({
      scheduleMs: s.request.scheduleMs ?? 0,
      askedWithStartMs: s.askedWithStartMs,
      ...f,
    });
    if (step.kind === 'wait') return undefined;
    if (step.kind === 'drop') {
      this.log.info(`cancelling scheduled restart: ${step.reason}`);
      this.scheduled = undefined;
      return undefined;
    }
    // Due within loop_wait: the agent times its next cycle to the moment (dueInMs) instead of
    // sleeping on the loop's chain as Patroni does (a timer may fire a little early).
    if (step.sleepMs > EARLY_MS) return undefined;
    this.scheduled = undefined;
    const reply = await this.now(s.request, restart);
    if (reply.status !== 200) {
      this.log.warn(`scheduled restart: ${reply.body}`);
      return undefined;
    }
    return 'scheduled restart done';
  }
}
