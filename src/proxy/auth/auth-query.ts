/**
 * `proxy.auth.query`: a user's secret looked up on the primary through `proxy.auth.user`
 * (pgbouncer's auth_query), cached for `cacheTtlMs`. One connection, opened on first use, moved
 * when the primary moves (`target()` is asked on every lookup), dropped on any error.
 *
 * Errors: the primary unknown or unreachable → ERR_UPSTREAM naming the address and auth.user; the
 * query failing (e.g. no right to read pg_shadow) → ERR_POSTGRES with the server's message. The
 * caller refuses the client then (SQLSTATE 08006 / 28000), it does not fall back to "unknown user".
 *
 * @see https://www.pgbouncer.org/config.html#auth_query
 */
import pg from 'pg';
import { errorMessage, PgfleetError } from '../../errors.js';
import { SecretCache } from './secret-cache.js';
import { parseSecret, type StoredSecret } from '../../protocol/auth/secret.js';

/** pgbouncer's default auth_query. */
export const DEFAULT_AUTH_QUERY = 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1';

export interface AuthQueryTarget {
  readonly host: string;
  readonly port: number;
}

export interface AuthQueryOptions {
  /** Where the primary is now; undefined when there is none. */
  readonly target: () => AuthQueryTarget | undefined;
  /** proxy.auth.user and its plaintext password (from auth.file). */
  readonly user: string;
  readonly password: string | undefined;
  readonly database?: string;
  readonly query?: string;
  readonly cacheTtlMs?: number;
  readonly maxCachedUsers?: number;
  readonly timeoutMs?: number;
  readonly now?: () => number;
}

export class AuthQuery {
  readonly #options: AuthQueryOptions;
  readonly #cache: SecretCache;
  readonly #inFlight = new Map<string, Promise<StoredSecret | undefined>>();
  #client: { target: string; client: pg.Client; ready: Promise<void> } | undefined;
  #closed = false;

  constructor(options: AuthQueryOptions) {
    this.#options = options;
    this.#cache = new SecretCache(options.cacheTtlMs ?? 5_000, options.maxCachedUsers ?? 10_000);
  }

  /** The user's secret; undefined when the query returns no row, a NULL or an unreadable secret. */
  lookup(user: string): Promise<StoredSecret | undefined> {
    const now = this.#options.now ?? Date.now;
    const cached = this.#cache.get(user, now());
    if (cached.found) return Promise.resolve(cached.secret);
    let pending = this.#inFlight.get(user);
    if (pending === undefined) {
      pending = this.#query(user).then((secret) => {
        this.#cache.set(user, secret, now());
        return secret;
      });
      const settled = (): void => {
        this.#inFlight.delete(user);
      };
      pending.then(settled, settled);
      this.#inFlight.set(user, pending);
    }
    return pending;
  }

  /** Forget cached secrets (after a reload, or when a client's login failed upstream). */
  invalidate(user?: string): void {
    if (user === undefined) this.#cache.clear();
    else this.#cache.delete(user);
  }

  close(): void {
    this.#closed = true;
    this.#drop();
  }

  async #query(user: string): Promise<StoredSecret | undefined> {
    if (this.#closed) throw new PgfleetError('ERR_UPSTREAM', 'auth.query: the proxy is closing');
    const client = await this.#connect();
    let rows: unknown[][];
    try {
      const result = await client.query({
        text: this.#options.query ?? DEFAULT_AUTH_QUERY,
        values: [user],
        rowMode: 'array',
      });
      rows = result.rows as unknown[][];
    } catch (err) {
      this.#drop();
      throw queryError(err, user);
    }
    const passwd = rows[0]?.[1];
    if (typeof passwd !== 'string') return undefined;
    const secret = parseSecret(passwd);
    return typeof secret === 'string' ? undefined : secret;
  }

  async #connect(): Promise<pg.Client> {
    const target = this.#options.target();
    if (target === undefined)
      throw new PgfleetError('ERR_UPSTREAM', 'auth.query: no primary is known to run it on');
    const address = `${target.host}:${target.port}`;
    if (this.#client !== undefined && this.#client.target !== address) this.#drop();
    if (this.#client === undefined) {
      const client = new pg.Client({
        host: target.host,
        port: target.port,
        user: this.#options.user,
        password: this.#options.password,
        database: this.#options.database ?? 'postgres',
        connectionTimeoutMillis: this.#options.timeoutMs ?? 5_000,
        query_timeout: this.#options.timeoutMs ?? 5_000,
        application_name: 'pgfleet-auth-query',
      });
      client.on('error', () => {
        if (this.#client?.client === client) this.#drop();
      });
      this.#client = { target: address, client, ready: client.connect().then(() => undefined) };
    }
    const current = this.#client;
    if (current === undefined) throw new PgfleetError('ERR_UPSTREAM', 'auth.query: the proxy is closing');
    try {
      await current.ready;
    } catch (err) {
      if (this.#client === current) this.#drop();
      throw new PgfleetError(
        'ERR_UPSTREAM',
        `auth.query: cannot log in to the primary at ${address} as auth.user "${this.#options.user}": ${errorMessage(err)}`,
        { cause: err },
      );
    }
    return current.client;
  }

  #drop(): void {
    const current = this.#client;
    this.#client = undefined;
    if (current !== undefined) current.client.end().catch(() => undefined);
  }
}

/**
 * pg's errors at this boundary: a server's ErrorResponse (a DatabaseError: SQLSTATE and severity)
 * is ERR_POSTGRES; anything else (connection lost, query_timeout) is ERR_UPSTREAM.
 */
function queryError(err: unknown, user: string): PgfleetError {
  const { code, severity } = (err ?? {}) as { code?: unknown; severity?: unknown };
  const fromServer = typeof severity === 'string' && typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
  const message = `auth.query for user "${user}" failed: ${errorMessage(err)}`;
  return new PgfleetError(fromServer ? 'ERR_POSTGRES' : 'ERR_UPSTREAM', message, { cause: err });
}
