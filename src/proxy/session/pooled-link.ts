/**
 * A pooled listener's client session as its pool sees it (PoolClient): the I/O between the
 * session engine's pooled phases and the listener's pools. It asks for servers and gives them
 * back as the engine decides, passes a lent server's bytes and end to the engine, looks up
 * proxy.auth secrets, and issues the client's backend key, whose CancelRequest goes to the server
 * serving the client at that moment. It decides nothing about the protocol.
 */
import { randomFillSync } from 'node:crypto';
import { errorMessage } from '../../errors.js';
import { cancelRequest } from '../../protocol/index.js';
import { ASK_QUERY, type LoginCredentials } from '../auth/index.js';
import type { PoolClient, PoolIdentity } from '../pool/pool-manager.js';
import type { PooledServer } from '../pool/pooled-server.js';
import type { CancelResolver, CancelTarget } from './cancel-registry.js';
import type { SessionContext } from './session-context.js';
import type { Phase } from './session-machine.js';
import type { PooledServerRef, SessionEvent, Termination } from './session-types.js';
import { reportedValues } from './tracked-parameters.js';

/** Random bytes for the backend keys pooled listeners issue, drawn 4 KiB at a time (one syscall per 512 keys). */
const keyBytes = Buffer.alloc(4096);
let keyBytesAt = keyBytes.length;

/** 8 random bytes, at the returned offset of keyBytes (valid until the next call). */
function randomKeyAt(): number {
  if (keyBytesAt + 8 > keyBytes.length) {
    randomFillSync(keyBytes);
    keyBytesAt = 0;
  }
  keyBytesAt += 8;
  return keyBytesAt - 8;
}

/**
 * A transaction-mode login answered from a pool's cached ParameterStatus: the server it is told
 * about, one per messages array, shared by every client greeted from it. Read-only by contract: a
 * cached login is never attached (pooled-phase.ts), so nothing notes reports into it.
 */
const CACHED_LOGINS = new WeakMap<readonly Buffer[], PooledServerRef>();
function cachedLogin(parameters: readonly Buffer[]): PooledServerRef {
  let server = CACHED_LOGINS.get(parameters);
  if (server === undefined) {
    server = Object.freeze({
      statements: new Map(),
      parameters,
      reported: reportedValues(parameters),
      cached: true,
    });
    CACHED_LOGINS.set(parameters, server);
  }
  return server;
}

/**
 * The client session around the link (client-session.ts). The session itself, not an object of
 * closures: per idle client, every object counts. The link calls feed while the session is
 * still performing the action that asked (a secret auth.file knows, a login from the pool's cached
 * parameters): the session takes such an event once its current actions are done.
 */
export interface PooledLinkOwner {
  feed(e: SessionEvent): void;
  readonly phase: Phase;
  terminate(t: Termination): void;
  pauseClient(): void;
  resumeClient(): void;
}

export class PooledLink implements PoolClient, CancelResolver {
  /** Its place in its pool's clients (PoolClient). */
  poolSlot = -1;
  readonly #ctx: SessionContext;
  readonly #owner: PooledLinkOwner;
  /** The server lent to the session now. */
  #server: PooledServer | undefined;
  #id: PoolIdentity | undefined;
  /** The server's write buffer was full: the client is paused until it drains. */
  #full = false;
  /** The processId of the key issued to the client (its cancels' registration). */
  #processId: number | undefined;
  /** That key's secret (CancelResolver). */
  cancelSecret = 0;

  constructor(ctx: SessionContext, owner: PooledLinkOwner) {
    this.#ctx = ctx;
    this.#owner = owner;
  }

  get holdsServer(): boolean {
    return this.#server !== undefined;
  }

  /** pool_acquire: a server, or at a transaction-mode login the pool's cached ParameterStatus. */
  acquire(a: {
    database: string;
    user: string;
    encoding: string;
    credentials: LoginCredentials | undefined;
  }): void {
    this.#id ??= { database: a.database, user: a.user, encoding: a.encoding };
    const pool = this.#ctx.pool!;
    const cached = this.#owner.phase === 'pool_login' ? pool.loginParameters(this.#id) : undefined;
    // (At once: the session takes the event when its current actions are done.)
    if (cached !== undefined) this.#loginFromCache(cached);
    else pool.acquire(this.#id, this, a.credentials);
  }

  /** pool_release (`reusable`: in a clean state). */
  release(reusable: boolean): void {
    const s = this.#server;
    this.#server = undefined;
    if (s !== undefined) this.#ctx.pool?.release(s, reusable);
    // Paused for a full server buffer: that server is gone, its drain will not come here.
    this.onServerDrain();
  }

  write(bytes: Buffer): void {
    if (this.#server?.write(bytes) === false) {
      this.#full = true;
      this.#owner.pauseClient();
    }
  }

  /** proxy.auth: the user's secret from auth.file or auth.query, for the engine's exchange. */
  lookupSecret(user: string): void {
    const source = this.#ctx.secrets;
    if (source === undefined) {
      this.#owner.feed({
        type: 'auth_secret',
        secret: undefined,
        error: 'proxy.auth is not configured',
      });
      return;
    }
    // A user auth.file lists (or, without auth.query, does not): known now, no promise.
    const known = source.known(user);
    if (known !== ASK_QUERY) {
      this.#owner.feed({ type: 'auth_secret', secret: known, error: undefined });
      return;
    }
    source.lookup(user).then(
      (secret) => this.#owner.feed({ type: 'auth_secret', secret, error: undefined }),
      (err: unknown) =>
        this.#owner.feed({ type: 'auth_secret', secret: undefined, error: errorMessage(err) }),
    );
  }

  /** The session ended: its server goes back dirty, it leaves its pool, its key is forgotten. */
  close(): void {
    this.release(false);
    if (this.#id !== undefined) this.#ctx.pool?.leave(this.#id, this);
    if (this.#processId !== undefined) this.#ctx.cancels.withdraw(this.#processId, this);
    this.#processId = undefined;
  }

  /** The pool lends a server. At login, the client's key is issued. */
  onPoolServer(server: PooledServer): void {
    if (this.#owner.phase === 'closed') {
      this.#ctx.pool!.release(server, true);
      return;
    }
    this.#server = server;
    const key = this.#owner.phase === 'pool_login' ? this.#issueKey() : undefined;
    this.#owner.feed(
      key === undefined ? { type: 'pool_server', server } : { type: 'pool_server', server, key },
    );
  }

  /**
   * Transaction mode: a login answered from the ParameterStatus of the pool's servers, without
   * lending one (a new client does not wait behind busy transactions to be told hello).
   */
  #loginFromCache(parameters: readonly Buffer[]): void {
    if (this.#owner.phase !== 'pool_login') return;
    const key = this.#issueKey();
    this.#owner.feed({ type: 'pool_server', server: cachedLogin(parameters), key });
  }

  /**
   * The backend key the proxy gives a pooled client (random; its processId unique among the keys
   * the proxy has out), registered for its cancels.
   */
  #issueKey(): { processId: number; secretKey: Buffer } {
    const cancels = this.#ctx.cancels;
    if (this.#processId !== undefined) cancels.withdraw(this.#processId, this);
    let at: number, processId: number;
    do {
      at = randomKeyAt();
      processId = keyBytes.readInt32BE(at) & 0x7fffffff;
      this.cancelSecret = keyBytes.readInt32BE(at + 4);
    } while (!cancels.issue(processId, this));
    this.#processId = processId;
    const secretKey = Buffer.allocUnsafe(4);
    keyBytes.copy(secretKey, 0, at + 4, at + 8);
    this.#ctx.pool!.join(this.#id!, this);
    this.#ctx.metrics.opened();
    return { processId, secretKey };
  }

  /** Where this client's CancelRequest goes now: the server serving it, with that server's key. */
  cancelTarget(): CancelTarget | 'idle' {
    const s = this.#server;
    if (s === undefined || s.backendKey === undefined) return 'idle';
    const { host, port, name } = s.node;
    return { host, port, name, packet: cancelRequest(s.backendKey.processId, s.backendKey.secretKey) };
  }

  onPoolFailed(fatal: Buffer): void {
    this.#owner.feed({ type: 'pool_failed', fatal });
  }

  onServerData(bytes: Buffer): void {
    this.#owner.feed({ type: 'server_data', bytes });
  }

  onServerClosed(error: string | undefined): void {
    this.#server = undefined;
    this.#owner.feed({ type: 'server_closed', error });
  }

  onServerDrain(): void {
    if (!this.#full) return;
    this.#full = false;
    this.#owner.resumeClient();
  }

  /**
   * A write to the client returned false (its socket's buffer is full): the lent server is not
   * read until the client drains, so a slow client's replies wait in the kernel and the backend,
   * not in the proxy's memory (a server given back meanwhile reads on: pooled-server.ts).
   */
  clientFull(): void {
    this.#server?.holdBack();
  }

  onClientDrain(): void {
    this.#server?.readOn();
  }

  /** Session mode: the lent server's node left the listener. */
  terminate(t: Termination): void {
    this.#owner.terminate(t);
  }
}
