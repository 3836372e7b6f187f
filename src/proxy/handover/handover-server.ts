/**
 * The running proxy's side of the upgrade hand-over (handover-protocol.ts): a Unix socket at
 * `proxy.handover_socket` (mode 0600) where a new process gets the listening sockets; once it says
 * it listens, this server closes (which unlinks the path), answers `released` and reports the
 * take-over. One new process at a time; one that goes away before it listens changes nothing.
 */
import { chmodSync, closeSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { PgfleetError, errorMessage } from '../../errors.js';
import { fdOf } from '../relay/native-relay.js';
import type { FdPassing } from './fd-passing.js';
import { RELEASED, offerMessage, parseListening } from './handover-protocol.js';

/** How long a new process may take between receiving the sockets and listening on them. */
const LISTEN_TIMEOUT_MS = 60_000;
/** The new process's one line is short; more without a newline is something else. */
const MAX_LINE = 1_024;

export interface HandoverServerOptions {
  readonly path: string;
  readonly fdPassing: FdPassing;
  /** The listening sockets to offer, now. */
  readonly sockets: () => readonly { address: string; fd: number }[];
  /** A new process listens on the sockets: stop accepting and drain. Called once. */
  readonly onTakenOver: (newPid: number | undefined) => void;
  readonly log: Logger;
}

export class HandoverServer {
  readonly #o: HandoverServerOptions;
  readonly #server: Server;
  /** The connection of the new process being served, if any. */
  #pending: Socket | undefined;
  #state: 'new' | 'serving' | 'closed' = 'new';

  constructor(o: HandoverServerOptions) {
    this.#o = o;
    this.#server = createServer((socket) => this.#serve(socket));
  }

  /**
   * Listens on the path. A socket file left there by a process that is gone is removed; one that
   * a live process answers on is an error (start the new process with --takeover instead).
   */
  async start(): Promise<void> {
    const { path } = this.#o;
    this.#removeStale();
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(
          new PgfleetError(
            'ERR_CONFIG_INVALID',
            `proxy.handover_socket: cannot listen on ${path}: ${errorMessage(err)}`,
            {
              cause: err,
            },
          ),
        );
      this.#server.once('error', onError);
      this.#server.listen({ path, backlog: 4 }, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
    // Whoever connects gets the listening sockets and can make this proxy stop accepting.
    chmodSync(path, 0o600);
    this.#state = 'serving';
  }

  #removeStale(): void {
    const { path, fdPassing } = this.#o;
    try {
      if (!lstatSync(path).isSocket())
        throw new PgfleetError(
          'ERR_CONFIG_INVALID',
          `proxy.handover_socket: ${path} exists and is not a socket`,
        );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    let fd: number;
    try {
      fd = fdPassing.connect(path);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ECONNREFUSED') throw err;
      unlinkSync(path); // nobody answers: left by a process that is gone
      return;
    }
    closeFd(fd);
    throw new PgfleetError(
      'ERR_CONFIG_INVALID',
      `proxy.handover_socket: a running proxy serves ${path}; start with --takeover to take its sockets over`,
    );
  }

  #serve(socket: Socket): void {
    const log = this.#o.log;
    if (this.#state !== 'serving' || this.#pending !== undefined) {
      socket.destroy();
      return;
    }
    this.#pending = socket;
    const sockets = this.#o.sockets();
    const fd = fdOf(socket);
    try {
      if (fd === undefined) throw new Error('the hand-over connection has no descriptor');
      this.#o.fdPassing.send(
        fd,
        offerMessage(
          process.pid,
          sockets.map((s) => s.address),
        ),
        sockets.map((s) => s.fd),
      );
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'hand-over: cannot send the listening sockets');
      socket.destroy();
      this.#pending = undefined;
      return;
    }
    log.info(
      { sockets: sockets.map((s) => s.address) },
      'hand-over: listening sockets sent to a new process',
    );
    let text = '';
    let listening = false;
    socket.setTimeout(LISTEN_TIMEOUT_MS, () => socket.destroy());
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (listening) return;
      if (!text.includes('\n')) {
        if (text.length > MAX_LINE) socket.destroy(); // not a new proxy
        return;
      }
      const pid = parseListening(text.slice(0, text.indexOf('\n')));
      if (pid === null) {
        socket.destroy();
        return;
      }
      listening = true;
      this.#released(socket, pid);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.#pending === socket) this.#pending = undefined;
      if (!listening) log.warn('hand-over: the new process went away before listening; still serving');
    });
  }

  #released(socket: Socket, pid: number | undefined): void {
    this.#state = 'closed';
    this.#server.close(); // unlinks the path now: the new process binds it next
    socket.end(RELEASED);
    this.#o.log.info({ newPid: pid }, 'hand-over: the new process listens; this one stops accepting');
    this.#o.onTakenOver(pid);
  }

  /** Stops serving the path (it is unlinked). Idempotent. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#pending?.destroy();
    if (this.#server.listening) this.#server.close();
  }
}

function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
