/**
 * Signals an operator may send by habit that must not end a daemon by surprise: SIGUSR1 (HAProxy's
 * soft stop, pgbouncer's PAUSE; Node would start its inspector), SIGUSR2 (pgbouncer's RESUME; Node's
 * default action ends the process; the agent keeps it for its hand-over) and SIGPIPE. Each is logged and otherwise ignored. SIGHUP is
 * reload.ts's; SIGTERM and SIGINT are the entry point's.
 */
import type { Logger } from 'pino';

const IGNORED = ['SIGUSR1', 'SIGUSR2', 'SIGPIPE'] as const;

/** Installs the handlers; returns a function that removes them. */
export function ignoreHabitSignals(log: Logger, except: readonly NodeJS.Signals[] = []): () => void {
  const handlers = IGNORED.filter((s) => !except.includes(s)).map((signal) => {
    const onSignal = (): void =>
      log.info({ signal }, `${signal} ignored (SIGHUP reloads, SIGTERM stops gracefully, SIGINT stops now)`);
    process.on(signal, onSignal);
    return [signal, onSignal] as const;
  });
  return () => {
    for (const [signal, onSignal] of handlers) process.off(signal, onSignal);
  };
}
