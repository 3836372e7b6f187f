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
 * timed out: no news). A `down` verdict whose last result was no answer is reported `unreachable`.
 * With `denyAtOnce` (the proxy's DCS view is stale, the agents are its only news) an answered
 * failure takes an `up` verdict down at once: an agent saying "not primary" is not a flaky link.
 */
import type { CheckVerdict } from '../routing/types.js';

export interface CheckState {
  readonly verdict: 'up' | 'down' | undefined;
  /** Consecutive results opposite to the current verdict. */
  readonly streak: number;
  /** Whether the last check got an HTTP answer. */
  readonly answered: boolean;
}

export const UNKNOWN_CHECK: CheckState = { verdict: undefined, streak: 0, answered: false };

export function stepCheck(
  prev: CheckState,
  ok: boolean,
  fall: number,
  rise: number,
  answered = true,
  denyAtOnce = false,
): CheckState {
  if (prev.verdict === undefined) return { verdict: ok ? 'up' : 'down', streak: 0, answered };
  if (denyAtOnce && !ok && answered) return { verdict: 'down', streak: 0, answered };
  const agrees = (prev.verdict === 'up') === ok;
  if (agrees) return { verdict: prev.verdict, streak: 0, answered };
  const streak = prev.streak + 1;
  const needed = prev.verdict === 'up' ? fall : rise;
  return streak >= needed
    ? { verdict: ok ? 'up' : 'down', streak: 0, answered }
    : { verdict: prev.verdict, streak, answered };
}

/** The verdict as routing sees it: a `down` without an answer is `unreachable`. */
export function reportedVerdict(state: CheckState): CheckVerdict | undefined {
  return state.verdict === 'down' && !state.answered ? 'unreachable' : state.verdict;
}
