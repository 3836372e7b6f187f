import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { parse } from 'pg-protocol';

import { verifierFromPassword } from '../../../src/protocol/auth/scram-keys.js';
import type { StoredSecret } from '../../../src/protocol/auth/secret.js';
import { createServerAuth, type ServerAuthMethod } from '../../../src/proxy/auth/server-auth.js';
import { authenticationBody, SqlLogin, type AuthMessage } from '../../../src/postgres/sql-login.js';
import { cstring, int32 } from '../protocol/buffers.js';
import { body } from '../proxy/auth/converse.js';

/** What pg-protocol's parser makes of `bytes` (the agent's client reads messages through it). */
async function parsed(bytes: Buffer): Promise<AuthMessage[]> {
  const stream = new PassThrough();
  const out: AuthMessage[] = [];
  const done = parse(stream, (m) => out.push(m));
  stream.end(bytes);
  await done;
  return out;
}

/**
 * A login of `password` (undefined: none) against this project's server side of `method` holding
 * `secret`, through pg-protocol's parser: 'in' once the server lets it in, else what stopped it.
 */
async function login(
  method: ServerAuthMethod,
  secret: StoredSecret,
  password: string | undefined,
): Promise<string> {
  const server = createServerAuth({ method, user: 'postgres', secret });
  const client = new SqlLogin('postgres', password);
  let step = server.start();
  for (let round = 0; round < 5; round++) {
    let reply: Buffer | undefined;
    for (const msg of await parsed(step.send)) {
      if (msg.name === 'error') return `server: ${(msg as { code?: string }).code}`;
      const answer = client.receive(msg);
      if (answer instanceof Error) return `client: ${answer.message}`;
      if (Buffer.isBuffer(answer)) reply = answer;
      if (answer === 'ok') return step.type === 'ok' ? 'in' : 'client ok, server not';
    }
    if (step.type !== 'continue') return `server ${step.type}`;
    assert.ok(reply, 'the client answered');
    step = server.receive(body(reply));
  }
  throw new Error('no end after 5 rounds');
}

const scram = (password: string): StoredSecret => ({
  kind: 'scram',
  ...verifierFromPassword(password, Buffer.from('0123456789abcdef'), 4096),
});

void describe("the agent's login to its own PostgreSQL (sql-login)", () => {
  const table: [string, ServerAuthMethod, StoredSecret, string | undefined, string | RegExp][] = [
    ['trust, no password', 'trust', scram('pw'), undefined, 'in'],
    ['trust, a password (unused)', 'trust', scram('pw'), 'pw', 'in'],
    ['cleartext', 'password', { kind: 'password', password: 'pw' }, 'pw', 'in'],
    ['md5', 'md5', { kind: 'password', password: 'pw' }, 'pw', 'in'],
    ['SCRAM-SHA-256', 'scram-sha-256', scram('pw'), 'pw', 'in'],
    ['md5 in pg_hba, a SCRAM secret (PostgreSQL runs SCRAM)', 'md5', scram('pw'), 'pw', 'in'],
    ['SCRAM, wrong password', 'scram-sha-256', scram('pw'), 'pX', 'server: 28P01'],
    ['md5, wrong password', 'md5', { kind: 'password', password: 'pw' }, 'pX', 'server: 28P01'],
    [
      'SCRAM, no password: the error says what to set',
      'scram-sha-256',
      scram('pw'),
      undefined,
      /^client: logging in as postgres: the server asks for SCRAM-SHA-256; we hold no credentials.*superuser\.password/,
    ],
    [
      'md5, no password',
      'md5',
      { kind: 'password', password: 'pw' },
      undefined,
      /^client: logging in as postgres: the server asks for a md5 password/,
    ],
  ];
  for (const [name, method, secret, password, expected] of table)
    void it(name, async () => {
      const got = await login(method, secret, password);
      if (typeof expected === 'string') assert.equal(got, expected);
      else assert.match(got, expected);
    });

  void it('a server that skips SASLFinal (never proves the verifier) is refused', async () => {
    const server = createServerAuth({ method: 'scram-sha-256', user: 'postgres', secret: scram('pw') });
    const client = new SqlLogin('postgres', 'pw');
    const [sasl] = await parsed(server.start().send);
    const first = client.receive(sasl!);
    assert.ok(Buffer.isBuffer(first));
    const [serverFirst] = await parsed(server.receive(body(first)).send);
    assert.ok(Buffer.isBuffer(client.receive(serverFirst!)));
    const skipped = client.receive({ name: 'authenticationOk' });
    assert.ok(skipped instanceof Error);
    assert.match(skipped.message, /unexpected authentication request 0/);
  });

  void it('rebuilds each Authentication body as the server sent it', async () => {
    const cases: [string, Buffer][] = [
      ['Ok', int32(0)],
      ['CleartextPassword', int32(3)],
      ['MD5Password', Buffer.concat([int32(5), Buffer.from([9, 8, 7, 6])])],
      [
        'SASL',
        Buffer.concat([int32(10), cstring('SCRAM-SHA-256-PLUS'), cstring('SCRAM-SHA-256'), Buffer.from([0])]),
      ],
      ['SASLContinue', Buffer.concat([int32(11), Buffer.from('r=abc,s=c2FsdA==,i=4096')])],
      ['SASLFinal', Buffer.concat([int32(12), Buffer.from('v=c2lnbmF0dXJl')])],
    ];
    for (const [name, sent] of cases) {
      const framed = Buffer.concat([Buffer.from('R'), int32(4 + sent.length), sent]);
      const [msg] = await parsed(framed);
      assert.deepEqual(authenticationBody(msg!), sent, name);
    }
    assert.equal(authenticationBody({ name: 'readyForQuery' }), undefined);
  });
});
