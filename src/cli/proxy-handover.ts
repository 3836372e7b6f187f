/**
 * `pgfleet proxy`'s upgrade hand-over, wired (src/proxy/handover/ does the work): with
 * `--takeover`, take the listening sockets of the proxy serving `proxy.handover_socket`; once
 * started, serve that path for the next upgrade.
 */
import type { Logger } from 'pino';
import { formatHostPort } from '../config/common.js';
import type { ProxyConfig } from '../config/proxy-schema.js';
import { PgfleetError, errorMessage } from '../errors.js';
import { FdPassing } from '../proxy/handover/fd-passing.js';
import { HandoverServer } from '../proxy/handover/handover-server.js';
import { takeOver, type TakenOver } from '../proxy/handover/take-over.js';
import type { Proxy } from '../proxy/proxy.js';

/** How long the old process may take to send its sockets, and to release the path. */
const HANDOVER_TIMEOUT_MS = 5_000;

/** The addresses a configuration listens on: its listeners and its admin port. */
export function listenAddresses(p: ProxyConfig['proxy']): string[] {
  const addresses = p.listeners.map((l) => formatHostPort(l.listen));
  if (p.admin) addresses.push(formatHostPort(p.admin.listen));
  return addresses;
}

function fdPassing(addonPath: string | undefined): FdPassing {
  const fdp = FdPassing.load(addonPath);
  if (fdp instanceof Error)
    throw new PgfleetError(
      'ERR_CONFIG_INVALID',
      `proxy.handover_socket needs the native addon: ${fdp.message}`,
    );
  return fdp;
}

/**
 * --takeover: the sockets of the proxy serving proxy.handover_socket (undefined when none does:
 * a fresh start, logged). Throws when the option cannot be honoured or the exchange fails.
 */
export function inheritSockets(
  config: ProxyConfig,
  addonPath: string | undefined,
  log: Logger,
): TakenOver | undefined {
  const path = config.proxy.handover_socket;
  if (path === undefined)
    throw new PgfleetError('ERR_CONFIG_INVALID', 'proxy.handover_socket: must be set to use --takeover');
  const taken = takeOver(fdPassing(addonPath), path, listenAddresses(config.proxy), HANDOVER_TIMEOUT_MS);
  if (taken === undefined)
    log.info({ path }, 'takeover: no proxy serves the hand-over socket; starting afresh');
  else
    log.info(
      { fromPid: taken.fromPid, inherited: [...taken.inherited.keys()], dropped: taken.dropped },
      'takeover: listening sockets received',
    );
  return taken;
}

/** After start: tells the old process (if any) to stop accepting, then waits for it to release the path. */
export async function releaseOld(taken: TakenOver | undefined, log: Logger): Promise<void> {
  if (taken === undefined) return;
  const ok = await taken.release(HANDOVER_TIMEOUT_MS);
  if (ok) log.info({ fromPid: taken.fromPid }, 'takeover done: the old process stops accepting and drains');
  else log.warn({ fromPid: taken.fromPid }, 'takeover: the old process did not confirm; serving anyway');
}

/**
 * Serves proxy.handover_socket for the next upgrade; `onTakenOver` when a new process took the
 * sockets. A path that cannot be served is logged (the proxy serves its clients regardless).
 */
export async function serveHandover(
  config: ProxyConfig,
  proxy: Proxy,
  addonPath: string | undefined,
  log: Logger,
  onTakenOver: () => void,
): Promise<HandoverServer | undefined> {
  const path = config.proxy.handover_socket;
  if (path === undefined) return undefined;
  try {
    const server = new HandoverServer({
      path,
      fdPassing: fdPassing(addonPath),
      sockets: () => proxy.listeningSockets(),
      onTakenOver,
      log: log.child({ component: 'handover' }),
    });
    await server.start();
    return server;
  } catch (err) {
    log.error({ err: errorMessage(err), path }, 'hand-over socket not served: an upgrade cannot take over');
    return undefined;
  }
}
