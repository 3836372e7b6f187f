import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseProxyConfig } from '../../../src/config/proxy-schema.js';
import { isPgfleetError } from '../../../src/errors.js';
import { DEFAULT_AUTH_QUERY } from '../../../src/proxy/auth/auth-query.js';

const withAuth = (auth: unknown): unknown => ({
  scope: 'batman',
  etcd3: { hosts: ['127.0.0.1:2379'] },
  proxy: { auth, listeners: [{ name: 'pooled', listen: '127.0.0.1:6434', role: 'primary' }] },
});

function problems(doc: unknown): string[] {
  try {
    parseProxyConfig(doc);
  } catch (err) {
    assert.ok(isPgfleetError(err, 'ERR_CONFIG_INVALID'));
    return (err.details?.problems as string[]) ?? [];
  }
  return [];
}

void describe('proxy.auth config', () => {
  void it('defaults to passthrough when absent', () => {
    const c = parseProxyConfig(withAuth(undefined));
    assert.equal(c.proxy.auth.type, 'passthrough');
    assert.equal(c.proxy.auth.query, undefined);
  });

  void it("takes the issue's shape, and auth.user alone gets pgbouncer's query", () => {
    const c = parseProxyConfig(
      withAuth({ type: 'scram-sha-256', file: 'userlist.txt', user: 'pgfleet_auth', cache_ttl: '2s' }),
    );
    assert.deepEqual(c.proxy.auth, {
      type: 'scram-sha-256',
      file: 'userlist.txt',
      user: 'pgfleet_auth',
      query: DEFAULT_AUTH_QUERY,
      database: 'postgres',
      cache_ttl: 2000,
    });
  });

  const bad: [string, unknown, RegExp][] = [
    ['an unknown type', { type: 'cert' }, /proxy\.auth\.type: .*scram-sha-256/],
    [
      'scram without a source',
      { type: 'scram-sha-256' },
      /proxy\.auth\.type: "scram-sha-256" needs auth\.file, or auth\.user/,
    ],
    ['md5 without a source', { type: 'md5' }, /proxy\.auth\.type: "md5" needs auth\.file/],
    [
      'trust with only a query user',
      { type: 'trust', user: 'a' },
      /proxy\.auth\.file: is required with type: trust/,
    ],
    [
      'a query without its user',
      { type: 'md5', file: 'f', query: 'SELECT $1' },
      /proxy\.auth\.query: needs auth\.user/,
    ],
    [
      'a query without $1',
      { type: 'md5', user: 'a', query: 'SELECT 1' },
      /proxy\.auth\.query: must take the user name as \$1/,
    ],
    [
      'passthrough with a file',
      { file: 'userlist.txt' },
      /proxy\.auth\.file: has no effect with type: passthrough/,
    ],
    ['an unknown key', { type: 'md5', file: 'f', auth_file: 'g' }, /proxy\.auth: .*auth_file/],
    [
      'a bad cache_ttl',
      { type: 'md5', file: 'f', cache_ttl: 'soon' },
      /proxy\.auth\.cache_ttl: must be a duration/,
    ],
  ];
  for (const [name, auth, pattern] of bad) {
    void it(`refuses ${name}, naming the key`, () => {
      const found = problems(withAuth(auth));
      assert.ok(
        found.some((p) => pattern.test(p)),
        `${pattern} not in ${JSON.stringify(found)}`,
      );
    });
  }
});
