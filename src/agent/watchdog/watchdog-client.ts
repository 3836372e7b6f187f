/**
 * The agent's side of the watchdog: connects to the watchdog's socket next to the data directory,
 * starting the watchdog process (detached, so it outlives the agent) when none answers; sends
 * `hello` and a `report` after each renewal or change; on a clean shutdown sends `exit`.
 * A connection lost while the agent runs (the watchdog died) starts a new one.
 *
 * States: idle → connecting → connected (→ reconnecting) → closed.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { AgentConfig } from '../../config/agent-schema.js';
import { PgfleetError, errorMessage } from '../../errors.js';
import { encode, LineBuffer, parseWatchdogMessage, type AgentMessage, type Welcome } from './protocol.js';

type Hello = Extract<AgentMessage, { op: 'hello' }>;
type Report = Omit<Extract<AgentMessage, { op: 'report' }>, 'op'>;

export interface WatchdogClientOptions {
  readonly socketPath: string;
  /** The command that runs the watchdog: [program, ...args]; `--socket PATH` is appended. */
  readonly command: readonly string[];
  /** The watchdog's own log (stdout and stderr). */
  readonly logFile: string;
  readonly log: Logger;
  readonly hello: () => Hello;
}

/** How long connecting may take (a previous agent may still be letting go of the watchdog). */
const CONNECT_TIMEOUT_MS = 15_000;
const RETRY_MS = 100;

function connectOnce(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ path });
    sock.once('connect', () => {
      sock.off('error', reject);
      resolve(sock);
    });
    sock.once('error', reject);
  });
}

/** The first line the watchdog sends. */
function firstMessage(sock: net.Socket, lines: LineBuffer): Promise<ReturnType<typeof parseWatchdogMessage>> {
  return new Promise((resolve) => {
    const onData = (chunk: Buffer) => {
      const [line] = lines.push(chunk.toString('utf8'));
      if (line === undefined) return;
      sock.off('data', onData);
      resolve(parseWatchdogMessage(line));
    };
    sock.on('data', onData);
    sock.once('close', () => resolve(undefined));
  });
}

export class WatchdogClient {
  private sock: net.Socket | undefined;
  private lastReport: Report | undefined;
  private closed = false;
  private spawned = false;

  constructor(private readonly opts: WatchdogClientOptions) {}

  /** Connects (starting the watchdog if needed); resolves with what a previous agent left. */
  async connect(): Promise<Welcome> {
    const deadline = Date.now() + CONNECT_TIMEOUT_MS;
    for (;;) {
      if (this.closed) throw new PgfleetError('ERR_WATCHDOG', 'watchdog client closed');
      let sock: net.Socket;
      try {
        sock = await connectOnce(this.opts.socketPath);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code === 'ENOENT' || code === 'ECONNREFUSED') && !this.spawned) this.spawnWatchdog();
        if (Date.now() > deadline)
          throw new PgfleetError('ERR_WATCHDOG', `cannot reach the watchdog: ${errorMessage(err)}`);
        await sleep(RETRY_MS);
        continue;
      }
      sock.on('error', () => undefined);
      const lines = new LineBuffer();
      const first = await firstMessage(sock, lines);
      if (first?.op !== 'welcome') {
        sock.destroy();
        if (Date.now() > deadline)
          throw new PgfleetError('ERR_WATCHDOG', 'the watchdog is held by another agent of this node');
        await sleep(RETRY_MS * 2);
        continue;
      }
      this.attach(sock, lines);
      return first;
    }
  }

  private spawnWatchdog(): void {
    this.spawned = true;
    const [program, ...args] = [...this.opts.command, '--socket', this.opts.socketPath];
    const fd = openSync(this.opts.logFile, 'a', 0o600);
    try {
      // Detached: its own session, so it outlives this process and a signal to our group.
      const child = spawn(program, args, { detached: true, stdio: ['ignore', fd, fd] });
      child.on('error', (err) =>
        this.opts.log.error({ err: errorMessage(err) }, 'cannot start the watchdog'),
      );
      child.unref();
      this.opts.log.info({ socket: this.opts.socketPath }, 'started the watchdog');
    } finally {
      closeSync(fd);
    }
  }

  private attach(sock: net.Socket, lines: LineBuffer): void {
    this.sock = sock;
    this.send(this.opts.hello());
    if (this.lastReport) this.send({ op: 'report', ...this.lastReport });
    sock.on('data', (chunk: Buffer) => {
      for (const line of lines.push(chunk.toString('utf8'))) {
        const msg = parseWatchdogMessage(line);
        if (msg?.op === 'fired') this.opts.log.error(`watchdog fired: ${msg.why}; PostgreSQL was stopped`);
      }
    });
    sock.once('close', () => {
      if (this.sock !== sock) return;
      this.sock = undefined;
      if (this.closed) return;
      this.opts.log.error('lost the watchdog; starting a new one');
      this.spawned = false;
      void this.connect().catch((err: unknown) =>
        this.opts.log.error({ err: errorMessage(err) }, 'no watchdog: a frozen agent would not be fenced'),
      );
    });
  }

  private send(msg: AgentMessage): void {
    this.sock?.write(encode(msg));
  }

  /** The postmaster to guard, the lease, and (leading) the time left before the fire time. */
  report(r: Report): void {
    this.lastReport = r;
    this.send({ op: 'report', ...r });
  }

  /** Clean shutdown: PostgreSQL is stopped and the key released; the watchdog exits. */
  exit(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock?.end(encode({ op: 'exit' }));
  }

  /** Leaves without `exit`: the watchdog keeps PostgreSQL for restart_grace (an upgrade). */
  handover(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock?.destroy();
  }
}

/** The watchdog of an agent: its socket and log next to the data directory. */
export function agentWatchdogClient(
  cfg: AgentConfig,
  command: readonly string[],
  log: Logger,
  retryTimeoutMs: () => number,
): WatchdogClient {
  const dataDir = path.resolve(cfg.postgresql.data_dir);
  return new WatchdogClient({
    socketPath: `${dataDir}.watchdog.sock`,
    command,
    logFile: `${dataDir}.watchdog.log`,
    log,
    hello: () => ({
      op: 'hello',
      name: cfg.name,
      settings: {
        graceMs: cfg.agent.restart_grace,
        stopOnAgentDeath: cfg.agent.stop_postgres_on_agent_death,
      },
      etcd3: cfg.etcd3,
      budgetMs: retryTimeoutMs(),
    }),
  });
}
