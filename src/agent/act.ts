/**
 * Carries out a decision: its actions in order through the executor, stopping at the first that
 * fails; without the DCS only fencing (demote to read-only with no upstream, or stop) is possible.
 */
import type { Decision } from '../ha/types.js';
import { errorMessage } from '../errors.js';
import type { ParamValue } from '../postgres/conf.js';
import { execute, type ExecutorContext } from './executor.js';
import type { LocalPostgres } from './local-postgres.js';

export interface ActOutcome {
  readonly outcome: string;
  readonly failed: boolean;
}

/** Runs the actions in order, stopping at the first that fails; the outcome is the cycle's sentence. */
export async function actOn(decision: Decision, ctx: ExecutorContext): Promise<ActOutcome> {
  for (const action of decision.actions) {
    try {
      if (!(await execute(ctx, action))) {
        const sentence = decision.failureSentences?.[action.type] ?? decision.failureSentence;
        return { outcome: sentence ?? `${decision.sentence}: not done`, failed: true };
      }
    } catch (err) {
      return { outcome: `${decision.sentence}: failed: ${errorMessage(err)}`, failed: true };
    }
  }
  return { outcome: decision.sentence, failed: false };
}

/** Fencing without the DCS: demote to read-only with no upstream, or stop. */
export async function fenceAlone(
  local: LocalPostgres,
  how: 'stop' | 'demote',
  parameters: Readonly<Record<string, ParamValue>>,
): Promise<void> {
  const node = local.node;
  local.setState('stopping');
  await node.stop('fast').catch(() => undefined);
  if (how === 'stop') {
    local.state = 'stopped';
    return;
  }
  await node.start({ parameters, recovery: true, standby: undefined }).catch(() => undefined);
  local.following = undefined;
  local.state = node.isRunning() ? 'running' : 'stopped';
}
