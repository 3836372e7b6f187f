/**
 * HAProxy-style fall/rise hysteresis for one health check, as a pure step function.
 *
 *   state   | result | next
 *   --------+--------+----------------------------------------------
 *   unknown | ok     | up
 *   unknown | fail   | down
 *   up      | fail   | down after `fall` consecutive failures, else up
 *   down    | ok     | up after `rise` consecutive successes, else down
 */
import type { CheckVerdict } from '../routing/types.js';

export interface CheckState {
  readonly verdict: CheckVerdict | undefined;
  /** Consecutive results opposite to the current verdict. */
  readonly streak: number;
}

export const UNKNOWN_CHECK: CheckState = { verdict: undefined, streak: 0 };

export function stepCheck(prev: CheckState, ok: boolean, fall: number, rise: number): CheckState {
  if (prev.verdict === undefined) return { verdict: ok ? 'up' : 'down', streak: 0 };
  const agrees = (prev.verdict === 'up') === ok;
  if (agrees) return { verdict: prev.verdict, streak: 0 };
  const streak = prev.streak + 1;
  const needed = prev.verdict === 'up' ? fall : rise;
  return streak >= needed ? { verdict: ok ? 'up' : 'down', streak: 0 } : { verdict: prev.verdict, streak };
}
