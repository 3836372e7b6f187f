/**
 * The agent's REST API (Patroni's endpoints and status codes) on `restapi.listen`.
 * GET, HEAD and OPTIONS answer health and status; POST/PATCH/PUT/DELETE require the configured
 * basic authentication (401 otherwise). POST /switchover and /failover, DELETE /switchover (see
 * switchover.ts), POST/DELETE /restart, PATCH/PUT /config, POST /reload (agent-operations.ts) and
 * POST /reinitialize work; other unsafe requests answer 501.
 */
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Agent } from '../agent/agent.js';
import type { AgentConfig } from '../config/agent-schema.js';
import { errorMessage } from '../errors.js';
import { registerAgentMetrics, registerCycleMetrics } from './agent-metrics.js';
import { clusterStatus, healthFacts, historyStatus, patroniStatus } from './agent-status.js';
import { healthStatus, isHealthPath } from './health-rules.js';
import { handleDeleteSwitchover, handleFailover, readJsonBody } from './switchover.js';
import type { ReloadPlan } from '../agent/config-reload.js';
import {
  deleteRestart,
  patchConfig,
  postReload,
  postRestart,
  putConfig,
  readBody,
  type HttpReply,
} from './agent-operations.js';

export interface AgentHttpOptions {
  readonly config: AgentConfig;
  readonly agent: Agent;
  readonly registry: Registry;
  readonly log: Logger;
  /** POST /reload: reads the configuration file again and applies it; throws when it is invalid (503). */
  readonly reload?: () => ReloadPlan;
  /**
   * The primary's WAL position read from PostgreSQL now (GET /patroni's `xlog.location` on a
   * primary, as Patroni reads it per request): the proxy's read-your-writes asks for it.
   */
  readonly walPosition?: () => Promise<number | undefined>;
}

const REQUEST_TIMEOUT_MS = 10_000;

function authorized(
  header: string | undefined,
  auth: { username: string; password?: string | undefined },
): boolean {
  if (!header?.startsWith('Basic ')) return false;
  const given = Buffer.from(header.slice(6), 'base64');
  const want = Buffer.from(`${auth.username}:${auth.password ?? ''}`);
  return given.length === want.length && timingSafeEqual(given, want);
}

export class AgentHttp {
  private readonly server: http.Server;
  private started = false;
  /** restapi.authentication in force (a reload may change it). */
  private auth: AgentConfig['restapi']['authentication'];

  constructor(private readonly opts: AgentHttpOptions) {
    this.auth = opts.config.restapi.authentication;
    registerAgentMetrics(opts.registry, opts.config.scope, () => opts.agent.snapshotForApi);
    registerCycleMetrics(opts.registry, opts.agent);
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        opts.log.warn({ err: String(err) }, 'REST request failed');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    this.server.requestTimeout = REQUEST_TIMEOUT_MS;
    this.server.headersTimeout = REQUEST_TIMEOUT_MS;
    this.server.keepAliveTimeout = 5_000;
  }

  /** A reloaded configuration: its restapi.authentication applies from the next request. */
  reconfigure(config: AgentConfig): void {
    this.auth = config.restapi.authentication;
  }

  get port(): number {
    const a = this.server.address();
    return a !== null && typeof a === 'object' ? a.port : 0;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const { host, port } = this.opts.config.restapi.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  private send(res: http.ServerResponse, method: string, code: number, body: string, type: string): void {
    res.writeHead(code, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(method === 'HEAD' ? undefined : body);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://agent');
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    if (!['GET', 'HEAD', 'OPTIONS'].includes(method)) {
      const auth = this.auth;
      if (auth && !authorized(req.headers.authorization, auth)) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="pgfleet"' });
        res.end('no auth header received\n');
        return;
      }
      if (method === 'POST' && (path === '/switchover' || path === '/failover')) {
        const action = path === '/switchover' ? 'switchover' : 'failover';
        const pollMs = Math.max(20_000, 2 * this.opts.agent.haSettings.loopWaitMs);
        const reply = await handleFailover(this.opts.agent, action, await readJsonBody(req), pollMs);
        this.send(res, method, reply.status, reply.body, 'text/plain');
        return;
      }
      if (method === 'DELETE' && path === '/switchover') {
        const reply = await handleDeleteSwitchover(this.opts.agent);
        this.send(res, method, reply.status, reply.body, 'text/plain');
        return;
      }
      if (method === 'POST' && path === '/failsafe') {
        const reply = this.opts.agent.acceptFailsafe(await readJsonBody(req));
        if (reply.lsn !== undefined) res.setHeader('lsn', String(reply.lsn));
        this.send(res, method, reply.status, reply.body, 'text/plain');
        return;
      }
      const operation = await this.operation(method, path, req);
      if (operation) {
        this.send(res, method, operation.status, operation.body, operation.type);
        return;
      }
      this.send(res, method, 501, `${method} ${path} is not implemented by pgfleet yet\n`, 'text/plain');
      return;
    }
    const snap = this.opts.agent.snapshotForApi;
    const scope = this.opts.config.scope;
    const json = (code: number, value: unknown) =>
      this.send(res, method, code, JSON.stringify(value), 'application/json');
    if (isHealthPath(path)) {
      const facts = healthFacts(snap, Date.now(), this.opts.agent.haSettings.ttlMs);
      json(healthStatus(path, url.searchParams, facts), patroniStatus(snap, scope));
      return;
    }
    switch (path) {
      case '/patroni': {
        const status = patroniStatus(snap, scope);
        if (status.role === 'primary' && this.opts.walPosition) {
          // Live, not the last probe's: a reader must find every commit acknowledged before it asked.
          const lsn = await this.opts.walPosition().catch(() => undefined);
          if (lsn !== undefined) status.xlog = { location: lsn };
          else delete status.xlog;
        }
        json(200, status);
        return;
      }
      case '/cluster':
        json(200, clusterStatus(snap, scope));
        return;
      case '/config':
        json(200, snap.view?.config ?? {});
        return;
      case '/history':
        json(200, historyStatus(snap));
        return;
      case '/failsafe': {
        // Patroni: the topology when failsafe_mode is on, 502 otherwise.
        const key = this.opts.agent.haSettings.failsafeMode ? this.opts.agent.failsafe.key : undefined;
        if (key) json(200, key);
        else this.send(res, method, 502, 'failsafe_mode is not enabled\n', 'text/plain');
        return;
      }
      case '/metrics':
        this.send(res, method, 200, await this.opts.registry.metrics(), this.opts.registry.contentType);
        return;
      default:
        this.send(res, method, 404, 'not found\n', 'text/plain');
    }
  }

  /** The operator endpoints of agent-operations.ts (and /reinitialize); undefined: not one of them. */
  private async operation(
    method: string,
    path: string,
    req: http.IncomingMessage,
  ): Promise<HttpReply | undefined> {
    const agent = this.opts.agent;
    const route = `${method} ${path}`;
    if (route === 'POST /restart') return await postRestart(agent, req, await readBody(req));
    if (route === 'DELETE /restart') return deleteRestart(agent);
    if (route === 'PATCH /config') return await patchConfig(agent, req, await readBody(req));
    if (route === 'PUT /config') return await putConfig(agent, req, await readBody(req));
    if (route === 'POST /reload' && this.opts.reload) {
      await readJsonBody(req);
      return postReload(this.opts.reload);
    }
    if (route === 'POST /reinitialize') {
      await readJsonBody(req);
      try {
        await agent.maintain('reinitialize');
        return { status: 200, body: 'reinitialize finished', type: 'text/plain' };
      } catch (err) {
        return { status: 503, body: `reinitialize failed: ${errorMessage(err)}`, type: 'text/plain' };
      }
    }
    return undefined;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeIdleConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  destroy(): void {
    this.server.closeAllConnections();
    this.server.close();
  }
}
