/**
 * Where a client's secret comes from, per `proxy.auth`: auth.file first, then auth.query (when
 * auth.user is set) for users the file does not list. `trust` reads the file only: it lets in the
 * users listed there. A reload swaps the file's map (`replaceFile`), keeping the query and its cache.
 *
 * Built from the parsed config by `createSecretSource`, which also checks what only the file can
 * tell: auth.user's own password must be plaintext there (pg logs in with a password).
 */
import type { ProxyAuthConfig } from '../../config/proxy-auth-schema.js';
import { PgfleetError } from '../../errors.js';
import type { AuthFile } from './auth-file.js';
import { AuthQuery, type AuthQueryTarget } from './auth-query.js';
import type { StoredSecret } from '../../protocol/auth/secret.js';

/** What auth.query looks like to the source; AuthQuery implements it (tests use fakes). */
export interface SecretLookup {
  lookup(user: string): Promise<StoredSecret | undefined>;
  close(): void;
}

/** SecretSource.known: auth.file does not list the user; auth.query may. */
export const ASK_QUERY = Symbol('ask auth.query');

export class SecretSource {
  #users: ReadonlyMap<string, StoredSecret>;
  readonly #query: SecretLookup | undefined;

  constructor(users: ReadonlyMap<string, StoredSecret>, query: SecretLookup | undefined) {
    this.#users = users;
    this.#query = query;
  }

  /**
   * What auth.file alone says: the user's secret, undefined when the user is unknown and there is
   * no auth.query, or ASK_QUERY when auth.query must be asked (lookup).
   */
  known(user: string): StoredSecret | undefined | typeof ASK_QUERY {
    const listed = this.#users.get(user);
    if (listed !== undefined || this.#query === undefined) return listed;
    return ASK_QUERY;
  }

  /**
   * The user's secret, or undefined when neither source knows the user. Rejects (ERR_UPSTREAM,
   * ERR_POSTGRES) when auth.query cannot answer: the caller refuses the client, it does not treat
   * the user as unknown.
   */
  async lookup(user: string): Promise<StoredSecret | undefined> {
    const known = this.known(user);
    return known === ASK_QUERY ? this.#query!.lookup(user) : known;
  }

  /** After a reload parsed the file without errors. */
  replaceFile(users: ReadonlyMap<string, StoredSecret>): void {
    this.#users = users;
  }

  close(): void {
    this.#query?.close();
  }
}

/** auth.user's password from the file: absent is allowed (the server may trust the proxy). */
function authUserPassword(config: ProxyAuthConfig, file: AuthFile | undefined): string | undefined {
  if (config.user === undefined) return undefined;
  const secret = file?.users.get(config.user);
  if (secret === undefined || secret.kind === 'password') return secret?.password;
  throw new PgfleetError(
    'ERR_CONFIG_INVALID',
    `proxy.auth.user: "${config.user}" is listed in auth.file with ${secret.kind === 'md5' ? 'an md5' : 'a SCRAM'} secret; auth.query logs in with a plaintext password, so list it as plaintext`,
  );
}

/**
 * The source for a parsed `proxy.auth` (not `passthrough`) and its parsed file. `target` says
 * where the primary is now (auth.query follows it). Throws ERR_CONFIG_INVALID naming the key.
 */
export function createSecretSource(
  config: ProxyAuthConfig,
  file: AuthFile | undefined,
  target: () => AuthQueryTarget | undefined,
  lookupFactory: (options: ConstructorParameters<typeof AuthQuery>[0]) => SecretLookup = (o) =>
    new AuthQuery(o),
): SecretSource {
  if (config.type === 'passthrough')
    throw new PgfleetError('ERR_CONFIG_INVALID', 'proxy.auth.type: passthrough has no secrets to look up');
  const users = file?.users ?? new Map<string, StoredSecret>();
  if (config.type === 'trust' || config.user === undefined) return new SecretSource(users, undefined);
  const password = authUserPassword(config, file);
  const query = lookupFactory({
    target,
    user: config.user,
    password,
    database: config.database,
    cacheTtlMs: config.cache_ttl,
    ...(config.query === undefined ? {} : { query: config.query }),
  });
  return new SecretSource(users, query);
}
