/**
 * `pgfleet watchdog --socket PATH`: the agent's watchdog process (started by the agent, not by
 * hand): owns the lease deadline and PostgreSQL's fate when the agent is gone. Exits when it has
 * nothing left to guard; SIGTERM/SIGINT fence first when no agent is connected.
 */
import { WatchdogServer } from '../agent/watchdog/watchdog-server.js';
import { errorMessage } from '../errors.js';
import { createLogger } from '../observability/logger.js';

export async function runWatchdog(opts: { socket: string }): Promise<number> {
  const log = createLogger({ level: process.env.PGFLEET_LOG_LEVEL ?? 'info', name: 'watchdog' });
  const server = new WatchdogServer({ socketPath: opts.socket, log });
  try {
    await server.start();
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'cannot listen');
    return 1;
  }
  const done = new Promise<void>((resolve) => server.once('done', resolve));
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void server.terminate());
  // A terminal hang-up or a SIGHUP sent by habit must not take PostgreSQL's guard away.
  process.on('SIGHUP', () => log.info('SIGHUP ignored'));
  await done;
  return 0;
}
