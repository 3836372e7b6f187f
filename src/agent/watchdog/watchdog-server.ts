/**
 * The watchdog process: a Unix socket next to the data directory that one agent at a time holds
 * open. It runs watchdog-state.ts's decisions on its own event loop — a frozen, hung or dead agent
 * cannot delay them — and carries them out: fence the postmaster (fast shutdown, escalating),
 * then revoke the agent's etcd lease so the leader key goes at once, then exit if no agent is
 * left. A restarted agent that connects within the grace period adopts PostgreSQL instead.
 *
 * States: listening → (agent connected ⇄ gone) → closed. The CLI owns the process and exits on
 * `done`.
 */
import { EventEmitter } from 'node:events';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Etcd3Config } from '../../config/common.js';
import { EtcdCluster } from '../../dcs/etcd-cluster.js';
import { errorMessage } from '../../errors.js';
import { stopPostmaster } from '../../postgres/postmaster-process.js';
import { refOf, type ProcessRef } from '../../postgres/process-identity.js';
import { encode, LineBuffer, parseAgentMessage, type AgentMessage } from './protocol.js';
import {
  initialWatchdogState,
  nextDeadline,
  watchdogStep,
  type WatchdogAction,
  type WatchdogEvent,
  type WatchdogState,
} from './watchdog-state.js';

/** How long the postmaster gets for a fast shutdown before immediate, then SIGKILL. */
const FAST_SHUTDOWN_MS = 5_000;

export interface WatchdogServerOptions {
  readonly socketPath: string;
  readonly log: Logger;
}

export class WatchdogServer extends EventEmitter<{ done: [] }> {
  private state: WatchdogState = initialWatchdogState({ graceMs: 0, stopOnAgentDeath: true });
  private readonly server: net.Server;
  private agent: net.Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private postmaster: ProcessRef | undefined;
  private hello: Extract<AgentMessage, { op: 'hello' }> | undefined;
  /** Fencing is in progress: no second one, and no exit before it ends. */
  private fencing: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: WatchdogServerOptions) {
    super();
    this.server = net.createServer((sock) => this.onConnection(sock));
  }

  get pidFile(): string {
    return `${this.opts.socketPath}.pid`;
  }

  async start(): Promise<void> {
    rmSync(this.opts.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ path: this.opts.socketPath }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    chmodSync(this.opts.socketPath, 0o600); // only the agent's user may connect (and root)
    writeFileSync(this.pidFile, `${process.pid}\n`);
    this.opts.log.info({ socket: this.opts.socketPath }, 'watchdog listening');
  }

  private now(): number {
    return performance.now();
  }

  private onConnection(sock: net.Socket): void {
    sock.on('error', () => undefined);
    if (this.agent !== undefined || this.closed) {
      sock.end(encode({ op: 'busy' }));
      return;
    }
    this.agent = sock;
    const adopting = this.state.agent === 'gone' && this.state.goneAtMs !== undefined;
    const fireAt = this.state.fireAtMs;
    sock.write(
      encode({
        op: 'welcome',
        adopting,
        pid: this.state.pid,
        leaseId: this.state.leaseId,
        fireInMs: fireAt === undefined ? undefined : Math.max(0, fireAt - this.now()),
        fired: this.state.fired,
      }),
    );
    if (adopting) this.opts.log.info({ pid: this.state.pid }, 'an agent is back: it adopts PostgreSQL');
    this.apply({ type: 'connected', nowMs: this.now() });
    const lines = new LineBuffer();
    sock.on('data', (chunk: Buffer) => {
      for (const line of lines.push(chunk.toString('utf8'))) this.onMessage(parseAgentMessage(line));
    });
    sock.on('close', () => {
      if (this.agent !== sock) return;
      this.agent = undefined;
      if (this.closed) return;
      this.opts.log.warn(
        { graceMs: this.state.settings.graceMs, pid: this.state.pid },
        'the agent is gone: PostgreSQL keeps running for restart_grace unless an agent comes back',
      );
      this.apply({ type: 'gone', nowMs: this.now() });
    });
  }

  private onMessage(msg: AgentMessage | undefined): void {
    if (msg === undefined) return;
    switch (msg.op) {
      case 'hello':
        this.hello = msg;
        return;
      case 'report':
        if (msg.pid !== undefined && msg.pid !== this.postmaster?.pid) this.postmaster = refOf(msg.pid);
        if (msg.pid === undefined) this.postmaster = undefined;
        this.apply({ type: 'report', nowMs: this.now(), ...msg });
        return;
      case 'exit':
        this.apply({ type: 'exit' });
    }
  }

  private apply(event: WatchdogEvent): void {
    const step = watchdogStep(this.state, event);
    this.state = step.state;
    for (const a of step.actions) void this.act(a);
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const due = nextDeadline(this.state);
    if (due === undefined || this.closed) return;
    this.timer = setTimeout(
      () => this.apply({ type: 'tick', nowMs: this.now() }),
      Math.max(0, due - this.now()),
    );
  }

  private async act(action: WatchdogAction): Promise<void> {
    if (action.type === 'exit') {
      await this.fencing;
      this.close();
      return;
    }
    const ref = action.pid === this.postmaster?.pid ? this.postmaster : undefined;
    this.postmaster = undefined;
    this.fencing = this.fence(ref, action.leaseId, action.why);
    await this.fencing;
  }

  private async fence(ref: ProcessRef | undefined, leaseId: string | undefined, why: string): Promise<void> {
    const log = this.opts.log;
    if (ref) {
      log.error({ pid: ref.pid }, `watchdog: ${why}; stopping PostgreSQL (fast shutdown)`);
      await stopPostmaster(ref, 'fast', FAST_SHUTDOWN_MS);
      log.error({ pid: ref.pid }, 'watchdog: PostgreSQL stopped');
    }
    if (leaseId !== undefined) await this.revoke(leaseId);
    this.agent?.write(encode({ op: 'fired', why }));
  }

  /** Revokes the lease: the leader key (if held) and the member key go at once. */
  private async revoke(leaseId: string): Promise<void> {
    const hello = this.hello;
    if (!hello) return;
    let etcd: EtcdCluster | undefined;
    try {
      // The agent's own parsed etcd3 section, sent over the 0600 socket.
      etcd = new EtcdCluster(hello.etcd3 as Etcd3Config, { log: this.opts.log, budgetMs: hello.budgetMs });
      await etcd.run('lease revoke', (c) => c.leaseClient.leaseRevoke({ ID: leaseId }));
      this.opts.log.error({ leaseId }, 'watchdog: lease revoked: the leader key is free for a replica');
    } catch (err) {
      this.opts.log.warn(
        { err: errorMessage(err) },
        'watchdog: could not revoke the lease; it expires by itself',
      );
    } finally {
      etcd?.close();
    }
  }

  /**
   * Asked to stop (SIGTERM): with an agent connected, just go (it starts another watchdog);
   * with none, PostgreSQL would be left unguarded: fence it first, as at the end of the grace.
   */
  async terminate(): Promise<void> {
    if (this.agent === undefined && (this.postmaster !== undefined || this.state.leaseId !== undefined)) {
      await this.fence(this.postmaster, this.state.leaseId, 'the watchdog was asked to stop with no agent');
    }
    this.close();
  }

  /** Stops listening, removes the socket and pid file; emits `done`. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.agent?.destroy();
    this.server.close();
    rmSync(this.opts.socketPath, { force: true });
    rmSync(this.pidFile, { force: true });
    this.opts.log.info('watchdog exiting');
    this.emit('done');
  }
}
