/**
 * One configured listener: a TCP server whose connections become ClientSessions.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { PgfleetError } from '../errors.js';
import type { ListenerContext } from './listener-context.js';
import { ClientSession } from './session.js';
import { socketOptions } from './upstream.js';

export class Listener {
  readonly #ctx: ListenerContext<ClientSession>;
  readonly #admit: () => boolean;
  readonly #server: Server;
  #listening = false;
  /** Every open client socket, in any phase, so shutdown can end the ones no registry knows. */
  readonly #sockets = new Set<Socket>();

  constructor(ctx: ListenerContext<ClientSession>, admit: () => boolean) {
    this.#ctx = ctx;
    this.#admit = admit;
    this.#server = createServer(socketOptions(ctx.tuning), (socket) => this.#onConnection(socket));
  }

  get name(): string {
    return this.#ctx.listener.name;
  }

  get address(): { host: string; port: number } {
    const a = this.#server.address();
    return a !== null && typeof a === 'object'
      ? { host: a.address, port: a.port }
      : this.#ctx.listener.listen;
  }

  #onConnection(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const overLimit = !this.#admit();
    new ClientSession(socket, this.#ctx, overLimit).start();
  }

  async start(): Promise<void> {
    const { host, port } = this.#ctx.listener.listen;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(
          new PgfleetError(
            'ERR_CONFIG_INVALID',
            `listener "${this.name}" cannot listen on ${host}:${port}: ${err.message}`,
            { cause: err },
          ),
        );
      this.#server.once('error', onError);
      this.#server.listen({ host, port, backlog: 1024 }, () => {
        this.#server.off('error', onError);
        this.#listening = true;
        resolve();
      });
    });
  }

  /** Stops accepting, then waits up to `graceMs` for open sessions to end before destroying them. */
  async close(graceMs: number): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([closed, grace]);
    clearTimeout(timer);
    for (const s of this.#sockets) s.destroy();
    await closed;
  }
}
