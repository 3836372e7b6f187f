/**
 * SIGHUP for the agent (systemd's ExecReload, `kill -HUP`) and its POST /reload: read the
 * configuration file again and apply it. Invalid: every problem is logged, the error is thrown
 * to POST /reload (503), and the agent keeps running on its current configuration. Valid: `apply`
 * puts the live keys in force (agent/config-reload.ts) and the log names what was applied and what
 * waits for the agent's restart. Without a handler Node's default action for SIGHUP would end the
 * process, so a habitual `systemctl reload` would stop an agent.
 */
import type { Logger } from 'pino';
import type { ReloadPlan } from '../agent/config-reload.js';
import { errorMessage } from '../errors.js';

export interface Reloader {
  /** Reads the file again and applies it; throws (logged) when it is invalid. */
  reload(): ReloadPlan;
  /** Removes the SIGHUP handler. */
  stop(): void;
}

export function handleReload<C>(load: () => C, apply: (next: C) => ReloadPlan, log: Logger): Reloader {
  const reload = (): ReloadPlan => {
    let next: C;
    try {
      next = load();
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'reload: configuration invalid; keeping the running one');
      throw err;
    }
    const plan = apply(next);
    const { applied, restartNeeded } = plan;
    if (applied.length === 0 && restartNeeded.length === 0)
      log.info('reload: configuration valid and unchanged');
    else log.info({ applied, restartNeeded }, 'reload: configuration applied');
    return plan;
  };
  const onHup = (): void => {
    try {
      reload();
    } catch {
      // logged by reload()
    }
  };
  process.on('SIGHUP', onHup);
  return { reload, stop: () => process.off('SIGHUP', onHup) };
}
