/**
 * One configured listener: a Node `net` server whose every client becomes a ClientSession (the one
 * session engine), and the context those sessions share.
 */
import { createServer, type Server } from 'node:net';
import { PgfleetError, errorMessage } from '../errors.js';
import { ClientSession } from './session/client-session.js';
import type { SessionContext } from './session/session-context.js';
import { socketOptions } from './session/server-connect.js';

export class Listener {
  readonly #ctx: SessionContext;
  readonly #listen: { host: string; port: number };
  readonly #server: Server;
  #listening = false;
  /** Every open session, in any phase, so that shutdown can end those no registry knows. */
  readonly #sessions = new Set<ClientSession>();
  #onEmpty: (() => void) | undefined;

  constructor(ctx: SessionContext, listen: { host: string; port: number }) {
    this.#ctx = ctx;
    this.#listen = listen;
    this.#server = createServer(socketOptions(ctx.tuning), (socket) => {
      const session = new ClientSession(socket, this.#ctx, this.#closed);
      this.#sessions.add(session);
      session.start();
    });
  }

  get name(): string {
    return this.#ctx.settings.listener;
  }

  get address(): { host: string; port: number } {
    const a = this.#server.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : this.#listen;
  }

  readonly #closed = (s: ClientSession): void => {
    this.#sessions.delete(s);
    if (this.#sessions.size === 0) this.#onEmpty?.();
  };

  async start(): Promise<void> {
    const { host, port } = this.#listen;
    const server = this.#server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(
          new PgfleetError(
            'ERR_CONFIG_INVALID',
            `listener "${this.name}" cannot listen on ${host}:${port}: ${errorMessage(err)}`,
            { cause: err },
          ),
        );
      server.once('error', onError);
      server.listen({ host, port, backlog: 1024 }, () => {
        server.off('error', onError);
        this.#listening = true;
        resolve();
      });
    });
  }

  /** Stops accepting, then waits up to `graceMs` for open sessions to end before destroying them. */
  async close(graceMs: number): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    const serverClosed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    const drained = new Promise<void>((resolve) => {
      this.#onEmpty = resolve;
      if (this.#sessions.size === 0) resolve();
    });
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([drained, grace]);
    clearTimeout(timer);
    for (const s of [...this.#sessions]) s.destroy();
    await serverClosed;
  }
}
