/**
 * failsafe_mode, the I/O around ha/failsafe.ts: the leader keeps the `failsafe` key; a primary
 * cut from etcd asks every member of the last known topology (`POST /failsafe`, 2 s each, in
 * parallel) and keeps running for another lease period when all accept; a member that accepts
 * treats the sender as the leader for `ttl`.
 * @see patroni/ha.py check_failsafe_topology, update_failsafe
 */
import type { Agent } from 'undici';
import { restDispatcher, restFetch, restTlsSettings } from '../api/rest-tls.js';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import type { AgentDcs } from '../dcs/agent-store.js';
import { errorMessage } from '../errors.js';
import {
  failsafeKeyDiffers,
  failsafeReply,
  failsafeTopology,
  parseFailsafeKey,
  withFailsafeLeader,
  type FailsafeLeader,
  type FailsafeTopology,
} from '../ha/failsafe.js';
import type { HaSettings } from '../ha/dynamic-config.js';
import { apiUrl, connUrl } from './member-status.js';

const REQUEST_TIMEOUT_MS = 2_000;

export class Failsafe {
  /** The topology last read from etcd (kept through an outage). */
  private topology: FailsafeTopology | undefined;
  /** The primary that last asked us (as a replica). */
  private leader: FailsafeLeader | undefined;
  /** When our own last check as primary succeeded (monotonic), for /patroni and metrics. */
  private activeSinceMs: number | undefined;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly dcs: AgentDcs,
    private readonly log: Logger,
  ) {}

  private restAgent: Agent | undefined | null = null;

  /** For https api_urls: ctl/restapi TLS settings (made on first use). */
  private dispatcher(): Agent | undefined {
    if (this.restAgent === null)
      this.restAgent = restDispatcher(restTlsSettings(this.cfg.ctl, this.cfg.restapi));
    return this.restAgent;
  }

  private get myApiUrl(): string {
    const a = this.cfg.restapi.connect_address ?? this.cfg.restapi.listen;
    return apiUrl(a.host, a.port, this.cfg.restapi.certfile !== undefined);
  }

  /** Remembers the topology of each successful read. */
  observe(values: ReadonlyMap<string, string>): void {
    this.topology = parseFailsafeKey(values.get('failsafe')) ?? this.topology;
    this.activeSinceMs = undefined;
  }

  /** The leader keeps the key current (members with a REST API, itself included). */
  async writeTopology(view: ClusterView, current: string | undefined): Promise<void> {
    const wanted = failsafeTopology(view, this.cfg.name, this.myApiUrl);
    if (!failsafeKeyDiffers(current, wanted)) return;
    await this.dcs
      .writeFailsafe(JSON.stringify(wanted))
      .catch((err: unknown) =>
        this.log.debug({ err: errorMessage(err) }, 'could not write the failsafe key'),
      );
  }

  /** A primary without etcd: true when every other member of the topology accepted us. */
  async checkAsPrimary(settings: HaSettings): Promise<boolean> {
    const topology = this.topology;
    if (!settings.failsafeMode || !topology || !(this.cfg.name in topology)) return false;
    const pg = this.cfg.postgresql.connect_address ?? this.cfg.postgresql.listen;
    const body = JSON.stringify({
      name: this.cfg.name,
      conn_url: connUrl(pg.host, pg.port),
      api_url: this.myApiUrl,
    });
    const others = Object.entries(topology).filter(([name]) => name !== this.cfg.name);
    // The members share restapi.authentication (Patroni sends its own credentials too).
    const auth = this.cfg.restapi.authentication;
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (auth)
      headers.Authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password ?? ''}`).toString('base64')}`;
    const answers = await Promise.all(
      others.map(async ([name, url]) => {
        try {
          const res = await restFetch(url.replace(/\/patroni$/, '') + '/failsafe', {
            dispatcher: this.dispatcher(),
            method: 'POST',
            body,
            headers,
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
          });
          return res.status === 200 && (await res.text()) === 'Accepted';
        } catch {
          this.log.warn({ member: name }, 'failsafe: member did not answer');
          return false;
        }
      }),
    );
    const ok = answers.every(Boolean);
    this.activeSinceMs = ok ? (this.activeSinceMs ?? performance.now()) : undefined;
    return ok;
  }

  /** POST /failsafe from a primary without etcd. */
  accept(
    settings: HaSettings,
    runningAsPrimary: boolean,
    body: Record<string, unknown> | undefined,
  ): { status: number; body: string } {
    const reply = failsafeReply(settings.failsafeMode, runningAsPrimary);
    if (reply.status === 200 && typeof body?.name === 'string') {
      this.leader = { name: body.name, atMs: performance.now() };
    } else if (reply.status === 200) return { status: 400, body: 'name is required' };
    return reply;
  }

  /** A member's view with the primary that pinged it within ttl as the leader. */
  viewFor(view: ClusterView, settings: HaSettings): ClusterView {
    if (!settings.failsafeMode) return view;
    return withFailsafeLeader(view, this.leader, performance.now(), settings.ttlMs);
  }

  /** For /patroni and metrics: running as a primary on failsafe, or pinged by one within ttl. */
  isActive(ttlMs: number): boolean {
    if (this.activeSinceMs !== undefined) return true;
    return this.leader !== undefined && performance.now() - this.leader.atMs < ttlMs;
  }

  get key(): FailsafeTopology | undefined {
    return this.topology;
  }
}
