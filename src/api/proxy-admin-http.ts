/**
 * The proxy's admin HTTP: `/metrics` (Prometheus), `/status` (JSON), `/health`, `/` (a small HTML
 * status page), the pools' views (GET /pools, /servers, /clients, /stats), and the admin console's
 * commands (POST /reload, and per pooled listener /pause, /resume, /kill, /reconnect, /disable,
 * /enable with `?listener=NAME`). No authentication: listen on loopback or a management network.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { HostPort } from '../config/common.js';
import { PgfleetError, errorMessage } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Proxy } from '../proxy/proxy.js';
import { renderStatusPage } from './proxy-status-page.js';
import { fdOf } from '../proxy/relay/native-relay.js';
import type { Showable } from '../proxy/pool/admin-command.js';
import { poolView } from '../proxy/pool/admin-target.js';
import {
  commandTargets,
  isListenerCommand,
  type ListenerAdminState,
  type ListenerCommand,
} from '../proxy/pool/listener-commands.js';
import { parseDurationMs } from '../config/units.js';
import { setTimeout as delay } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';

/** How often a waiting PAUSE looks at the lent servers. */
const PAUSE_POLL_MS = 20;

/** Server connections of pooled listeners lent to clients now. */
function lentServers(p: Proxy, listeners: readonly string[]): number {
  const status = p.pools.status();
  return listeners.reduce((n, l) => n + (status[l] ?? []).reduce((m, pool) => m + pool.serversActive, 0), 0);
}

const json = (res: ServerResponse, status: number, body: object): void =>
  send(res, status, 'application/json', JSON.stringify(body) + '\n');

/** pgbouncer's SHOW POOLS, SERVERS, CLIENTS and STATS, as JSON by listener. */
const POOL_VIEWS: Record<string, Showable> = {
  '/pools': 'pools',
  '/servers': 'servers',
  '/clients': 'clients',
  '/stats': 'stats',
};

export class AdminHttp {
  readonly #listen: HostPort;
  readonly #proxy: Proxy;
  readonly #log: Logger;
  readonly #server: Server;

  constructor(listen: HostPort, proxy: Proxy, log: Logger) {
    this.#listen = listen;
    this.#proxy = proxy;
    this.#log = log;
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.requestTimeout = 10_000;
    this.#server.keepAliveTimeout = 5_000;
  }

  get address(): HostPort {
    const a = this.#server.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : this.#listen;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method === 'POST' && path === '/reload') {
        // As SIGHUP: read the file again and apply it; 200 with what changed, or 400 with every problem.
        const outcome = await this.#proxy.reload();
        send(res, outcome.ok ? 200 : 400, 'application/json', JSON.stringify(outcome, null, 2) + '\n');
      } else if (req.method === 'POST' && path !== undefined && isListenerCommand(path.slice(1))) {
        await this.#command(req, res, path.slice(1) as ListenerCommand);
      } else if (req.method === 'GET' && path !== undefined && path in POOL_VIEWS) {
        const view = poolView(this.#proxy.pools, POOL_VIEWS[path]!);
        send(res, 200, 'application/json', JSON.stringify(view, null, 2) + '\n');
      } else if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'text/plain', 'method not allowed\n');
      } else if (path === '/metrics') {
        const reg = this.#proxy.metrics.registry;
        send(res, 200, reg.contentType, await reg.metrics());
      } else if (path === '/status') {
        send(res, 200, 'application/json', JSON.stringify(this.#proxy.status(), null, 2) + '\n');
      } else if (path === '/health') {
        const s = this.#proxy.status();
        send(
          res,
          200,
          'application/json',
          JSON.stringify({ status: 'ok', dcs_connected: s.dcs.connected, generation: s.generation }) + '\n',
        );
      } else if (path === '/' || path === '/index.html') {
        send(res, 200, 'text/html; charset=utf-8', renderStatusPage(this.#proxy.status()));
      } else {
        send(res, 404, 'text/plain', 'not found\n');
      }
    } catch (err) {
      this.#log.error({ err: errorMessage(err), path }, 'admin request failed');
      send(res, 500, 'text/plain', 'internal error\n');
    }
  }

  /**
   * POST /pause, /resume, /kill, /reconnect, /disable, /enable `?listener=NAME` (the admin
   * console's commands, listener-commands.ts): on that pooled listener, or (none named) on every
   * one; /disable and /enable need the name (400). 200 with the listener's state after it
   * (`{listener, paused, disabled}`; every listener's by name when none was named), 404 for a
   * name that is no pooled listener.
   */
  async #command(req: IncomingMessage, res: ServerResponse, command: ListenerCommand): Promise<void> {
    const query = new URL(req.url ?? '/', 'http://admin').searchParams;
    const named = query.get('listener') ?? undefined;
    const waitText = query.get('wait');
    const waitMs = waitText === null ? undefined : parseDurationMs(waitText);
    if (waitText !== null && (waitMs === undefined || command !== 'pause')) {
      const error =
        command === 'pause'
          ? `wait: must be a duration like "30s" (got ${JSON.stringify(waitText)})`
          : 'wait: only with /pause';
      return json(res, 400, { error });
    }
    const target = this.#proxy.console;
    const targets = commandTargets(command, named, target.listeners());
    if (!targets.ok)
      return json(res, targets.problem === 'missing' ? 400 : 404, {
        error: targets.problem === 'missing' ? `listener: ${targets.message}` : targets.message,
      });
    for (const l of targets.listeners)
      if (!target.command(l, command)) return json(res, 404, { error: `no pooled listener "${l}"` });
    const state = (l: string): ListenerAdminState => target.state(l) ?? { paused: false, disabled: false };
    const body =
      named === undefined || named === ''
        ? { listeners: Object.fromEntries(targets.listeners.map((l) => [l, state(l)])) }
        : { listener: named, ...state(named) };
    if (waitMs === undefined) return json(res, 200, body);
    await this.#awaitIdle(res, targets.listeners, waitMs, waitText!, body);
  }

  /**
   * /pause `&wait=30s`: answers once no server of the listeners is lent (pgbouncer's PAUSE returns
   * then: transactions, or in session mode clients, done), 504 if some still are by then.
   */
  async #awaitIdle(
    res: ServerResponse,
    listeners: readonly string[],
    waitMs: number,
    waitText: string,
    body: object,
  ): Promise<void> {
    const paused = (): boolean => listeners.every((l) => this.#proxy.console.state(l)?.paused === true);
    const started = performance.now();
    let active = lentServers(this.#proxy, listeners);
    while (active > 0 && performance.now() - started < waitMs && paused()) {
      await delay(PAUSE_POLL_MS);
      active = lentServers(this.#proxy, listeners);
    }
    const waitedMs = Math.round(performance.now() - started);
    if (active === 0) return json(res, 200, { ...body, active, waitedMs });
    const error = paused()
      ? `${active} server connection(s) still lent after ${waitText} (the listener stays paused)`
      : 'resumed while waiting';
    json(res, 504, { ...body, active, waitedMs, error });
  }

  /** Listens on proxy.admin.listen, or on `fd`: that address's socket, handed over by a running proxy. */
  async start(fd?: number): Promise<void> {
    const { host, port } = this.#listen;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(
          new PgfleetError(
            'ERR_CONFIG_INVALID',
            `proxy.admin.listen: cannot listen on ${host}:${port}: ${err.message}`,
            { cause: err },
          ),
        );
      this.#server.once('error', onError);
      this.#server.listen(fd === undefined ? { host, port } : { fd }, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
  }

  /** The listening socket's descriptor (to hand over); undefined when not listening. */
  get fd(): number | undefined {
    return this.#server.listening ? fdOf(this.#server) : undefined;
  }

  async close(): Promise<void> {
    if (!this.#server.listening) return;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
