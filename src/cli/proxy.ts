/**
 * `pgfleet proxy -c FILE [--check] [--takeover]`: load and validate the config, build the proxy
 * (with --takeover: on the listening sockets of the proxy it replaces), start it, and own signals
 * and the shutdown order (bounded by a timeout).
 */
import { isPgfleetError, errorMessage } from '../errors.js';
import { loadProxyConfig, type ProxyConfig } from '../config/proxy-schema.js';
import { logFileSettings } from '../config/patroni-keys.js';
import { createLogger } from '../observability/logger.js';
import { Proxy } from '../proxy/proxy.js';
import { loadServerTls, loadTlsContexts } from '../proxy/tls/tls-contexts.js';
import { formatHostPort } from '../config/common.js';
import { ignoreHabitSignals } from './signals.js';
import { inheritSockets, releaseOld, serveHandover } from './proxy-handover.js';
import type { TakenOver } from '../proxy/handover/take-over.js';

/** Beyond proxy.shutdown_timeout: how long closing etcd, the admin port and the relay may take. */
const SHUTDOWN_MARGIN_MS = 10_000;

export async function runProxy(opts: {
  config: string;
  check?: boolean;
  takeover?: boolean;
}): Promise<number> {
  let config: ProxyConfig;
  try {
    config = loadProxyConfig(opts.config, process.env);
  } catch (err) {
    process.stderr.write(`pgfleet proxy: ${errorMessage(err)}\n`);
    return 2;
  }
  if (opts.check) {
    try {
      // The certificate files too: a start would fail on them.
      loadTlsContexts(config.proxy);
      loadServerTls(config.proxy);
    } catch (err) {
      process.stderr.write(`pgfleet proxy: ${errorMessage(err)}\n`);
      return 2;
    }
    const listeners = config.proxy.listeners
      .map((l) => `${l.name} (${l.role}) on ${formatHostPort(l.listen)}`)
      .join(', ');
    process.stdout.write(
      `${opts.config}: configuration is valid; cluster "${config.scope}", listeners: ${listeners}\n`,
    );
    return 0;
  }
  const log = createLogger({
    level: config.log.level,
    name: 'pgfleet-proxy',
    file: logFileSettings(config.log, 'pgfleet-proxy'),
  });
  let proxy: Proxy | undefined;
  let started = false;
  let hupWhileStarting = false;
  // Before start(): a SIGHUP that arrives before the handler would end the process (Node's default
  // action). SIGHUP reloads the file and applies it live (Proxy.reload; so does POST /reload); one
  // that arrives while the proxy starts (its admin port already answers) is applied once started.
  const onHup = (): void => {
    if (started) void proxy?.reload();
    else {
      hupWhileStarting = true;
      log.info('SIGHUP while starting: the reload follows the start');
    }
  };
  process.on('SIGHUP', onHup);
  const unignore = ignoreHabitSignals(log);
  // PGFLEET_NATIVE_ADDON: another build of the native relay (CI runs a sanitizer build this way).
  const nativeAddonPath = process.env.PGFLEET_NATIVE_ADDON || undefined;
  let taken: TakenOver | undefined;
  try {
    if (opts.takeover) taken = inheritSockets(config, nativeAddonPath, log);
    proxy = new Proxy(config, log, {
      nativeAddonPath,
      loadConfig: () => loadProxyConfig(opts.config, process.env),
      inherited: taken?.inherited,
    });
    await proxy.start();
    started = true;
    await releaseOld(taken, log);
    if (hupWhileStarting) void proxy.reload();
  } catch (err) {
    log.fatal(
      { err: errorMessage(err), code: isPgfleetError(err) ? err.code : undefined },
      'proxy failed to start',
    );
    taken?.abandon();
    process.off('SIGHUP', onHup);
    unignore();
    await proxy?.destroy();
    return 1;
  }
  const running = proxy;
  return new Promise<number>((resolve) => {
    let stopping: 'gracefully' | 'now' | undefined;
    const done = (code: number): void => {
      clearTimeout(timer);
      process.off('SIGHUP', onHup);
      unignore();
      resolve(code);
    };
    let timer: NodeJS.Timeout | undefined;
    // SIGTERM: stop accepting, let sessions finish up to shutdown_timeout. SIGINT, or SIGTERM again:
    // now. 'takeover': a new process took the listening sockets; sessions end by themselves.
    const stop = (signal: NodeJS.Signals | 'takeover'): void => {
      handover.then(
        (h) => h?.close(),
        () => undefined,
      );
      const now = signal === 'SIGINT' || stopping !== undefined;
      if (stopping === 'now' || (stopping === 'gracefully' && !now)) return;
      stopping = now ? 'now' : 'gracefully';
      log.info(
        { signal },
        now ? 'stopping now' : signal === 'takeover' ? 'handed over: stopping' : 'stopping gracefully',
      );
      if (timer === undefined) {
        timer = setTimeout(() => {
          log.error('shutdown timed out; exiting');
          done(1);
        }, config.proxy.shutdown_timeout + SHUTDOWN_MARGIN_MS);
        timer.unref();
      }
      (now ? running.destroy() : signal === 'takeover' ? running.handOver() : running.close()).then(
        () => done(0),
        (err: unknown) => {
          log.error({ err: errorMessage(err) }, 'shutdown failed');
          done(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    const handover = serveHandover(config, running, nativeAddonPath, log, () => stop('takeover'));
  });
}
