import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { proxyAuthSchema } from '../../../../src/config/proxy-auth-schema.js';
import { isPgfleetError } from '../../../../src/errors.js';
import { parseAuthFile } from '../../../../src/proxy/auth/auth-file.js';
import type { AuthQueryOptions } from '../../../../src/proxy/auth/auth-query.js';
import type { StoredSecret } from '../../../../src/protocol/auth/secret.js';
import {
  ASK_QUERY,
  createSecretSource,
  type SecretLookup,
} from '../../../../src/proxy/auth/secret-source.js';

const file = parseAuthFile(
  ['"alice" "alice-pw"', '"pgfleet_auth" "auth-pw"', '"md5user" "md5' + 'a'.repeat(32) + '"'].join('\n'),
  'f',
);
const target = () => ({ host: '127.0.0.1', port: 5432 });

/** A fake auth.query: answers from a map and records what it was built with and asked. */
function fakeQuery(answers: Record<string, StoredSecret>) {
  const built: AuthQueryOptions[] = [];
  const asked: string[] = [];
  const factory = (options: AuthQueryOptions): SecretLookup => {
    built.push(options);
    return {
      lookup: (user) => {
        asked.push(user);
        return Promise.resolve(answers[user]);
      },
      close: () => undefined,
    };
  };
  return { built, asked, factory };
}

void describe('createSecretSource', () => {
  void it('reads the file first, then asks auth.query for the others, with auth.user from the file', async () => {
    const fake = fakeQuery({ bob: { kind: 'password', password: 'from-query' } });
    const config = proxyAuthSchema.parse({
      type: 'scram-sha-256',
      file: 'f',
      user: 'pgfleet_auth',
      cache_ttl: '2s',
    });
    const source = createSecretSource(config, file, target, fake.factory);
    assert.deepEqual(await source.lookup('alice'), { kind: 'password', password: 'alice-pw' });
    assert.deepEqual(await source.lookup('bob'), { kind: 'password', password: 'from-query' });
    assert.equal(await source.lookup('nobody'), undefined);
    assert.deepEqual(fake.asked, ['bob', 'nobody']);
    // What the file alone tells, without a promise: a listed user's secret; the others are auth.query's.
    assert.deepEqual(source.known('alice'), { kind: 'password', password: 'alice-pw' });
    assert.equal(source.known('bob'), ASK_QUERY);
    assert.deepEqual(fake.asked, ['bob', 'nobody'], 'known() asks nobody');
    const [options] = fake.built;
    assert.deepEqual(
      [options?.user, options?.password, options?.cacheTtlMs, options?.database],
      ['pgfleet_auth', 'auth-pw', 2000, 'postgres'],
    );
    assert.match(options?.query ?? '', /pg_shadow/);
  });

  void it('trust reads the file only, even with auth.user', async () => {
    const fake = fakeQuery({ bob: { kind: 'password', password: 'x' } });
    const source = createSecretSource(
      proxyAuthSchema.parse({ type: 'trust', file: 'f', user: 'pgfleet_auth' }),
      file,
      target,
      fake.factory,
    );
    assert.equal(await source.lookup('bob'), undefined);
    assert.equal(source.known('bob'), undefined, 'unknown now: there is no auth.query to ask');
    assert.equal(fake.built.length, 0);
  });

  void it('a reload swaps the file map', async () => {
    const source = createSecretSource(proxyAuthSchema.parse({ type: 'md5', file: 'f' }), file, target);
    source.replaceFile(parseAuthFile('"carol" "c"', 'f').users);
    assert.equal(await source.lookup('alice'), undefined);
    assert.deepEqual(await source.lookup('carol'), { kind: 'password', password: 'c' });
  });

  void it('refuses an auth.user whose file entry is not plaintext, naming the key', () => {
    const config = proxyAuthSchema.parse({ type: 'md5', file: 'f', user: 'md5user' });
    assert.throws(
      () => createSecretSource(config, file, target, fakeQuery({}).factory),
      (err) =>
        isPgfleetError(err, 'ERR_CONFIG_INVALID') &&
        /^proxy\.auth\.user: "md5user" is listed in auth\.file with an md5 secret/.test(err.message),
    );
  });
});
