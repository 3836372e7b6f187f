/**
 * SIGHUP for the agent (systemd's ExecReload, `kill -HUP`) and its POST /reload: read the
 * configuration file again and report. Invalid: every problem is logged and the agent keeps
 * running on its current configuration. Valid: the sections that changed are named; they take
 * effect at the next restart (no agent setting is applied live yet; the proxy applies its file
 * live: Proxy.reload). Without a handler Node's default action for SIGHUP would end the process,
 * so a habitual `systemctl reload` would stop an agent.
 */
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';

/** Top-level sections whose content differs between two configurations. */
export function changedSections(prev: object, next: object): string[] {
  const a = prev as Record<string, unknown>;
  const b = next as Record<string, unknown>;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
}

export interface Reloader {
  /** Reads the file again; the changed sections, or throws (logged) when it is invalid. */
  reload(): string[];
  /** Removes the SIGHUP handler. */
  stop(): void;
}

export function handleReload<C extends object>(initial: C, load: () => C, log: Logger): Reloader {
  const reload = (): string[] => {
    let next: C;
    try {
      next = load();
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'reload: configuration invalid; keeping the running one');
      throw err;
    }
    const changed = changedSections(initial, next);
    log.info(
      { changed },
      changed.length === 0
        ? 'reload: configuration valid and unchanged'
        : `reload: configuration valid; ${changed.join(', ')} changed and take effect at the next restart`,
    );
    return changed;
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
