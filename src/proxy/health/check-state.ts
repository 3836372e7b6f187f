/**
 * HAProxy-style fall/rise hysteresis for one health check, as a pure step function.
 *
 *   state   | result | next
 *   --------+--------+----------------------------------------------
 *   unknown | ok     | up
 *   unknown | fail   | down
 *   up      | fail   | down after `fall` consecutive failures, else up
 *   down    | ok     | up after `rise` consecutive successes, else down
 *
 * A failure is either an answer (another status than 200: the agent says no) or none (refused,
 * timed out: no news). A `down` verdict reached without any "no" is reported `unreachable`; once an
 * agent has said no, its silence afterwards does not turn that back into no news.
 * With `denyAtOnce` (the proxy's DCS view is stale, the agents are its only news) an answered
 * failure takes an `up` verdict down at once: an agent saying "not primary" is not a flaky link.
 */
import type { CheckVerdict } from '../../routing/types.js';

export interface CheckState {
  readonly verdict: 'up' | 'down' | undefined;
  /** Consecutive results opposite to the current verdict. */
  readonly streak: number;
  /**
   * An agent answered "no" (a status other than 200): while up, within the current failure
   * streak; while down, since the verdict went down. Silence never clears it.
   */
  readonly denied: boolean;
}

export const UNKNOWN_CHECK: CheckState = { verdict: undefined, streak: 0, denied: false };

export function stepCheck(
  prev: CheckState,
  ok: boolean,
  fall: number,
  rise: number,
  answered = true,
  denyAtOnce = false,
): CheckState {
  const saidNo = !ok && answered;
  if (prev.verdict === undefined) return { verdict: ok ? 'up' : 'down', streak: 0, denied: saidNo };
  if (denyAtOnce && saidNo) return { verdict: 'down', streak: 0, denied: true };
  const denied = prev.denied || saidNo;
  if (prev.verdict === 'up') {
    if (ok) return { verdict: 'up', streak: 0, denied: false };
    const streak = prev.streak + 1;
    return streak >= fall ? { verdict: 'down', streak: 0, denied } : { verdict: 'up', streak, denied };
  }
  if (!ok) return { verdict: 'down', streak: 0, denied };
  const streak = prev.streak + 1;
  return streak >= rise ? { verdict: 'up', streak: 0, denied: false } : { verdict: 'down', streak, denied };
}

/**
 * The verdict as routing sees it: `down` when an agent said no, `unreachable` when it went down
 * without ever answering (no news: a stale view keeps its last table for it).
 */
export function reportedVerdict(state: CheckState): CheckVerdict | undefined {
  return state.verdict === 'down' && !state.denied ? 'unreachable' : state.verdict;
}
