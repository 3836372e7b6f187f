/**
 * src/proxy/auth against a real PostgreSQL 15 (password_encryption = scram-sha-256): the proxy
 * logging in to PostgreSQL (ClientLogin), real clients (pg, psql) logging in to a small server
 * built on createServerAuth that then logs in to PostgreSQL with the keys recovered from the
 * client's proof, and auth.query. One server start for the whole file.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';

import { isPgfleetError } from '../../src/errors.js';
import {
  AuthQuery,
  clientKeysFromPassword,
  parseSecret,
  type LoginCredentials,
  type StoredSecret,
} from '../../src/proxy/auth/index.js';
import {
  cleanupAll,
  freePort,
  PG_BIN_DIR,
  runCommand,
  startPrimary,
  waitFor,
  type PgNode,
} from '../harness/index.js';
import { loginUpstream, startAuthFrontServer, type FrontServer } from './proxy-auth-helpers.js';

const PASSWORDS = { alice: 'alice sécret', bob: 'bob-md5-pw', carol: 'carol-clear', pgfleet_auth: 'auth-pw' };

/** postgres (the harness's superuser) keeps trust; carol gets cleartext; md5 = SCRAM or md5 by secret. */
const PG_HBA = [
  'local all all trust',
  'host all postgres 127.0.0.1/32 trust',
  'host all carol 127.0.0.1/32 password',
  'host all all 127.0.0.1/32 md5',
  '',
].join('\n');

let node: PgNode;
const authid = new Map<string, StoredSecret>();

async function secretOf(role: string): Promise<StoredSecret> {
  const [row] = await node.query<{ rolpassword: string }>(
    'SELECT rolpassword FROM pg_authid WHERE rolname = $1',
    [role],
  );
  const secret = parseSecret(row!.rolpassword);
  if (typeof secret === 'string') throw new Error(`pg_authid secret of ${role}: ${secret}`);
  return secret;
}

before(async () => {
  node = await startPrimary('auth', { parameters: { password_encryption: 'scram-sha-256' } });
  await node.query(`CREATE ROLE alice LOGIN PASSWORD '${PASSWORDS.alice}'`);
  await node.query(`CREATE ROLE carol LOGIN PASSWORD '${PASSWORDS.carol}'`);
  await node.query(`CREATE ROLE pgfleet_auth LOGIN PASSWORD '${PASSWORDS.pgfleet_auth}'`);
  // md5 only for bob: SET in the same session as CREATE ROLE.
  const client = new pg.Client({
    host: '127.0.0.1',
    port: node.port,
    user: 'postgres',
    database: 'postgres',
  });
  await client.connect();
  await client.query("SET password_encryption = 'md5'");
  await client.query(`CREATE ROLE bob LOGIN PASSWORD '${PASSWORDS.bob}'`);
  await client.end();
  // pgbouncer's recommended lookup: a SECURITY DEFINER function, so auth.user needs no superuser.
  await node.query(`CREATE FUNCTION public.pgfleet_lookup(name text, OUT usename name, OUT passwd text)
    RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
    $$ SELECT usename, passwd FROM pg_shadow WHERE usename = name $$`);
  await node.query('REVOKE ALL ON FUNCTION public.pgfleet_lookup(text) FROM public');
  await node.query('GRANT EXECUTE ON FUNCTION public.pgfleet_lookup(text) TO pgfleet_auth');
  await writeFile(path.join(node.dataDir, 'pg_hba.conf'), PG_HBA);
  await node.query('SELECT pg_reload_conf()');
  for (const role of ['alice', 'bob', 'carol']) authid.set(role, await secretOf(role));
  assert.equal(authid.get('alice')?.kind, 'scram');
  assert.equal(authid.get('bob')?.kind, 'md5');
});
after(cleanupAll);

async function loginResult(user: string, credentials: LoginCredentials): Promise<string> {
  const result = await loginUpstream(node.port, user, credentials);
  if (!result.ok)
    return result.serverError
      ? `${result.serverError.code} ${result.serverError.message}`
      : `failed ${result.failure}`;
  result.socket.destroy();
  return 'ok';
}

void describe('ClientLogin: the proxy logs in to PostgreSQL 15', () => {
  void it('with plaintext passwords over SCRAM, md5 and cleartext', async () => {
    assert.equal(await loginResult('alice', { kind: 'password', password: PASSWORDS.alice }), 'ok');
    assert.equal(await loginResult('bob', { kind: 'password', password: PASSWORDS.bob }), 'ok');
    assert.equal(await loginResult('carol', { kind: 'password', password: PASSWORDS.carol }), 'ok');
  });

  void it("with SCRAM keys: pg_authid's ServerKey and a ClientKey, never the password", async () => {
    const verifier = authid.get('alice');
    assert.ok(verifier?.kind === 'scram');
    const { clientKey } = clientKeysFromPassword(PASSWORDS.alice, verifier.salt, verifier.iterations);
    const keys = {
      clientKey,
      serverKey: verifier.serverKey,
      salt: verifier.salt,
      iterations: verifier.iterations,
    };
    assert.equal(await loginResult('alice', { kind: 'scram-keys', keys }), 'ok');
  });

  void it("with bob's md5 secret from pg_authid", async () => {
    const secret = authid.get('bob');
    assert.ok(secret?.kind === 'md5');
    assert.equal(await loginResult('bob', { kind: 'md5', hash: secret.hash }), 'ok');
  });

  void it('a wrong password is refused by the server with 28P01', async () => {
    for (const user of ['alice', 'bob', 'carol'])
      assert.equal(
        await loginResult(user, { kind: 'password', password: 'wrong' }),
        `28P01 password authentication failed for user "${user}"`,
      );
  });

  void it('a server whose signature does not match our ServerKey is caught after it accepted the proof', async () => {
    const verifier = authid.get('alice');
    assert.ok(verifier?.kind === 'scram');
    const { clientKey } = clientKeysFromPassword(PASSWORDS.alice, verifier.salt, verifier.iterations);
    const keys = { clientKey, serverKey: Buffer.alloc(32, 7) };
    assert.match(
      await loginResult('alice', { kind: 'scram-keys', keys }),
      /^failed server_signature_mismatch/,
    );
  });
});

void describe('createServerAuth: pg and psql log in through a front server that then logs in with their keys', () => {
  let front: FrontServer;
  let frontMd5: FrontServer;
  before(async () => {
    const secrets = new Map<string, StoredSecret>([
      ['alice', authid.get('alice')!],
      ['bob', authid.get('bob')!],
      ['carol', { kind: 'password', password: PASSWORDS.carol }],
    ]);
    front = await startAuthFrontServer({ method: 'scram-sha-256', secrets, upstreamPort: node.port });
    frontMd5 = await startAuthFrontServer({ method: 'md5', secrets, upstreamPort: node.port });
  });
  after(async () => {
    await front.close();
    await frontMd5.close();
  });

  async function pgCurrentUser(port: number, user: string, password: string): Promise<string> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user,
      password,
      database: 'postgres',
      connectionTimeoutMillis: 5_000,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const { rows } = await client.query<{ u: string }>('SELECT current_user AS u');
      return rows[0]!.u;
    } catch (err) {
      const e = err as { code?: string; message: string };
      return `${e.code ?? ''} ${e.message}`.trim();
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  void it('node-postgres: SCRAM with the right password reaches PostgreSQL as the user, via the ClientKey', async () => {
    assert.equal(await pgCurrentUser(front.port, 'alice', PASSWORDS.alice), 'alice');
    assert.equal(await pgCurrentUser(front.port, 'carol', PASSWORDS.carol), 'carol');
    assert.deepEqual(front.outcomes.splice(0), ['ok alice (scram-keys)', 'ok carol (password)']);
  });

  void it('node-postgres: wrong passwords, unknown users and md5 secrets under scram-sha-256 get 28P01', async () => {
    for (const [user, password] of [
      ['alice', 'wrong'],
      ['nobody', 'x'],
      ['bob', PASSWORDS.bob],
    ] as const)
      assert.equal(
        await pgCurrentUser(front.port, user, password),
        `28P01 password authentication failed for user "${user}"`,
      );
    front.outcomes.splice(0);
  });

  void it('node-postgres: md5 type serves bob by md5 and alice (SCRAM secret) by SCRAM', async () => {
    assert.equal(await pgCurrentUser(frontMd5.port, 'bob', PASSWORDS.bob), 'bob');
    assert.equal(await pgCurrentUser(frontMd5.port, 'alice', PASSWORDS.alice), 'alice');
    assert.equal(
      await pgCurrentUser(frontMd5.port, 'bob', 'wrong'),
      '28P01 password authentication failed for user "bob"',
    );
    assert.deepEqual(frontMd5.outcomes.splice(0), [
      'ok bob (md5)',
      'ok alice (scram-keys)',
      'refused bob: wrong md5 password',
    ]);
  });

  async function psql(user: string, password: string) {
    return runCommand(
      path.join(PG_BIN_DIR, 'psql'),
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(front.port),
        '-U',
        user,
        '-d',
        'postgres',
        '-XAtc',
        'SELECT current_user',
      ],
      { env: { PGPASSWORD: password, PGCONNECT_TIMEOUT: '5' }, timeoutMs: 10_000 },
    );
  }

  void it('psql (libpq): right password in, wrong one refused in PostgreSQL words', async () => {
    const ok = await psql('alice', PASSWORDS.alice);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'alice');
    const wrong = await psql('alice', 'nope');
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /password authentication failed for user "alice"/);
  });
});

void describe('AuthQuery against the primary', () => {
  const query = (overrides: Partial<ConstructorParameters<typeof AuthQuery>[0]> = {}) =>
    new AuthQuery({
      target: () => ({ host: '127.0.0.1', port: node.port }),
      user: 'pgfleet_auth',
      password: PASSWORDS.pgfleet_auth,
      query: 'SELECT usename, passwd FROM public.pgfleet_lookup($1)',
      ...overrides,
    });

  void it("returns pg_authid's secrets through a SECURITY DEFINER function, undefined for unknown users", async () => {
    const q = query();
    try {
      assert.deepEqual(await q.lookup('alice'), authid.get('alice'));
      assert.deepEqual(await q.lookup('bob'), authid.get('bob'));
      assert.equal(await q.lookup('nobody'), undefined);
    } finally {
      q.close();
    }
  });

  void it('caches for cache_ttl: a changed password shows after expiry, not before', async () => {
    let now = 0;
    const q = query({ cacheTtlMs: 1_000, now: () => now });
    try {
      const before = await q.lookup('carol');
      await node.query("ALTER ROLE carol PASSWORD 'carol-changed'");
      assert.deepEqual(await q.lookup('carol'), before, 'served from the cache');
      now = 1_000;
      const changed = await q.lookup('carol');
      assert.ok(changed?.kind === 'scram' && before?.kind === 'scram');
      assert.notDeepEqual(changed.storedKey, before.storedKey);
    } finally {
      q.close();
      await node.query(`ALTER ROLE carol PASSWORD '${PASSWORDS.carol}'`);
    }
  });

  void it('a terminated auth connection is replaced at the next lookup (at most one lookup fails, with ERR_UPSTREAM)', async () => {
    const q = query({ cacheTtlMs: 0 });
    try {
      assert.equal((await q.lookup('alice'))?.kind, 'scram');
      await node.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgfleet-auth-query'",
      );
      const failures: unknown[] = [];
      const secret = await waitFor('a lookup on a new connection', async () => {
        try {
          return await q.lookup('alice');
        } catch (err) {
          failures.push(err);
          return undefined;
        }
      });
      assert.equal(secret.kind, 'scram');
      assert.ok(failures.length <= 1, `${failures.length} lookups failed`);
      assert.ok(
        failures.every((e) => isPgfleetError(e, 'ERR_UPSTREAM')),
        String(failures[0]),
      );
    } finally {
      q.close();
    }
  });

  void it("pgbouncer's default query without the right to read pg_shadow is ERR_POSTGRES with the server's reason", async () => {
    const q = query({ query: undefined });
    try {
      await assert.rejects(
        q.lookup('alice'),
        (err) => isPgfleetError(err, 'ERR_POSTGRES') && /permission denied/.test(err.message),
      );
    } finally {
      q.close();
    }
  });

  void it('an unreachable primary, a wrong auth.user password and no primary are ERR_UPSTREAM naming the address', async () => {
    const closedPort = await freePort();
    const cases: [Partial<ConstructorParameters<typeof AuthQuery>[0]>, RegExp][] = [
      [
        { target: () => ({ host: '127.0.0.1', port: closedPort }) },
        new RegExp(`primary at 127\\.0\\.0\\.1:${closedPort} as auth\\.user "pgfleet_auth": .*ECONNREFUSED`),
      ],
      [{ password: 'wrong' }, /as auth\.user "pgfleet_auth": password authentication failed/],
      [{ target: () => undefined }, /no primary is known/],
    ];
    for (const [overrides, pattern] of cases) {
      const q = query(overrides);
      try {
        await assert.rejects(
          q.lookup('alice'),
          (err) => isPgfleetError(err, 'ERR_UPSTREAM') && pattern.test(err.message),
        );
      } finally {
        q.close();
      }
    }
  });
});
