import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';

import { ClientLogin } from '../../../../src/protocol/auth/client-login.js';
import type { LoginCredentials } from '../../../../src/protocol/auth/auth-types.js';
import { verifierFromPassword } from '../../../../src/protocol/auth/scram-keys.js';
import type { StoredSecret } from '../../../../src/protocol/auth/secret.js';
import { createServerAuth, type ServerAuthMethod } from '../../../../src/proxy/auth/server-auth.js';
import { cstring, int32 } from '../../protocol/buffers.js';
import { converse, errorFields, frames } from './converse.js';

/** md5 written from PostgreSQL's documentation, independently of src/. */
const md5 = (s: string | Buffer): string => createHash('md5').update(s).digest('hex');
const md5SecretOf = (password: string, user: string): string => `md5${md5(password + user)}`;
const md5Answer = (password: string, user: string, salt: Buffer): string =>
  `md5${md5(Buffer.concat([Buffer.from(md5(password + user)), salt]))}`;

const salt = Buffer.from([1, 2, 3, 4]);
const fixedSalt = (): Buffer => Buffer.from(salt);
const scramOf = (password: string): StoredSecret => ({
  kind: 'scram',
  ...verifierFromPassword(password, Buffer.from('0123456789abcdef'), 64),
});

void describe('server-side md5, cleartext and trust', () => {
  const serve = (method: ServerAuthMethod, secret: StoredSecret | undefined) =>
    createServerAuth({ method, user: 'bob', secret, randomBytes: fixedSalt });
  const answer = (method: ServerAuthMethod, secret: StoredSecret | undefined, text: string) => {
    const s = serve(method, secret);
    s.start();
    return s.receive(cstring(text));
  };

  void it('md5 sends AuthenticationMD5Password with a 4-byte salt', () => {
    const step = serve('md5', { kind: 'password', password: 'pw' }).start();
    assert.deepEqual(frames(step.send), [{ type: 'R', body: Buffer.concat([int32(5), salt]) }]);
  });

  const table: [string, ServerAuthMethod, StoredSecret | undefined, string, LoginCredentials | string][] = [
    [
      'md5 against a plaintext secret',
      'md5',
      { kind: 'password', password: 'pw' },
      md5Answer('pw', 'bob', salt),
      { kind: 'password', password: 'pw' },
    ],
    [
      'md5 against an md5 secret',
      'md5',
      { kind: 'md5', hash: md5SecretOf('pw', 'bob') },
      md5Answer('pw', 'bob', salt),
      { kind: 'md5', hash: md5SecretOf('pw', 'bob') },
    ],
    [
      'md5, wrong password',
      'md5',
      { kind: 'md5', hash: md5SecretOf('pw', 'bob') },
      md5Answer('pX', 'bob', salt),
      '28P01',
    ],
    [
      'md5, another user name salted in',
      'md5',
      { kind: 'password', password: 'pw' },
      md5Answer('pw', 'alice', salt),
      '28P01',
    ],
    ['md5, unknown user', 'md5', undefined, md5Answer('pw', 'bob', salt), '28P01'],
    ['md5, empty answer', 'md5', { kind: 'password', password: 'pw' }, '', '28P01'],
    [
      'cleartext against a plaintext secret',
      'password',
      { kind: 'password', password: 'pw' },
      'pw',
      { kind: 'password', password: 'pw' },
    ],
    [
      'cleartext against an md5 secret',
      'password',
      { kind: 'md5', hash: md5SecretOf('pw', 'bob') },
      'pw',
      { kind: 'password', password: 'pw' },
    ],
    [
      'cleartext against a SCRAM secret',
      'password',
      scramOf('pw'),
      'pw',
      { kind: 'password', password: 'pw' },
    ],
    ['cleartext, wrong password vs SCRAM', 'password', scramOf('pw'), 'px', '28P01'],
    ['cleartext, a prefix of the password', 'password', { kind: 'password', password: 'pw' }, 'p', '28P01'],
  ];
  for (const [name, method, secret, text, expected] of table) {
    void it(name, () => {
      const step = answer(method, secret, text);
      if (typeof expected === 'string') {
        assert.equal(step.type, 'failed');
        assert.deepEqual(errorFields(step.send).M, 'password authentication failed for user "bob"');
        assert.equal(errorFields(step.send).C, expected);
      } else {
        assert.equal(step.type, 'ok');
        assert.deepEqual(step.type === 'ok' && step.credentials, expected);
        assert.deepEqual(frames(step.send), [{ type: 'R', body: int32(0) }]);
      }
    });
  }

  void it('md5 with a SCRAM secret upgrades to SCRAM, as PostgreSQL does', () => {
    const step = serve('md5', scramOf('pw')).start();
    assert.equal(frames(step.send)[0]!.body.readInt32BE(0), 10);
  });

  void it('a malformed PasswordMessage is 08P01, and nothing is accepted after the end', () => {
    const s = serve('md5', { kind: 'password', password: 'pw' });
    s.start();
    const step = s.receive(Buffer.from('no terminator'));
    assert.equal(step.type === 'failed' && errorFields(step.send).C, '08P01');
    assert.equal(s.receive(cstring(md5Answer('pw', 'bob', salt))).type, 'failed');
  });

  void it('a PasswordMessage beyond 65,535 bytes is 08P01 before it is read', () => {
    const step = answer('password', { kind: 'password', password: 'pw' }, 'x'.repeat(65535));
    assert.deepEqual(
      [step.type, errorFields(step.send).C, errorFields(step.send).M],
      ['failed', '08P01', 'password packet too long'],
    );
  });

  void it('trust lets listed users in at once and hands on what their secret can answer with', () => {
    const cases: [StoredSecret, LoginCredentials][] = [
      [
        { kind: 'password', password: 'pw' },
        { kind: 'password', password: 'pw' },
      ],
      [
        { kind: 'md5', hash: md5SecretOf('pw', 'bob') },
        { kind: 'md5', hash: md5SecretOf('pw', 'bob') },
      ],
      [scramOf('pw'), { kind: 'none' }],
    ];
    for (const [secret, credentials] of cases) {
      const step = serve('trust', secret).start();
      assert.deepEqual(step.type === 'ok' && step.credentials, credentials);
    }
  });

  void it('trust refuses unlisted users with 28000 "role … does not exist"', () => {
    const step = serve('trust', undefined).start();
    assert.deepEqual(
      [step.type, errorFields(step.send).C, errorFields(step.send).M],
      ['failed', '28000', 'role "bob" does not exist'],
    );
  });
});

void describe('ClientLogin against md5 and cleartext requests', () => {
  const R = { md5: Buffer.concat([int32(5), salt]), cleartext: int32(3), ok: int32(0), gss: int32(7) };
  const login = (credentials: LoginCredentials) => new ClientLogin({ user: 'bob', credentials });
  const sent = (step: ReturnType<ClientLogin['receive']>): string =>
    step.type === 'send' ? frames(step.send)[0]!.body.toString('utf8').replace(/\0$/, '') : `(${step.type})`;

  void it('answers md5 from a password and from an md5 secret alike', () => {
    assert.equal(
      sent(login({ kind: 'password', password: 'pw' }).receive(R.md5)),
      md5Answer('pw', 'bob', salt),
    );
    assert.equal(
      sent(login({ kind: 'md5', hash: md5SecretOf('pw', 'bob') }).receive(R.md5)),
      md5Answer('pw', 'bob', salt),
    );
  });

  void it('answers cleartext from a password, then takes Ok', () => {
    const c = login({ kind: 'password', password: 'pw' });
    assert.equal(sent(c.receive(R.cleartext)), 'pw');
    assert.deepEqual(c.receive(R.ok), { type: 'ok' });
  });

  void it('says clearly when what it holds cannot answer', () => {
    const keys = { clientKey: Buffer.alloc(32), serverKey: Buffer.alloc(32) };
    for (const [credentials, request] of [
      [{ kind: 'scram-keys', keys }, R.md5],
      [{ kind: 'scram-keys', keys }, R.cleartext],
      [{ kind: 'md5', hash: md5SecretOf('pw', 'bob') }, R.cleartext],
      [{ kind: 'none' }, R.md5],
    ] as const) {
      const step = login(credentials).receive(request);
      assert.equal(step.type === 'failed' && step.code, 'credentials_unusable');
      assert.match(
        step.type === 'failed' ? step.reason : '',
        /the server asks for a (md5|cleartext) password; we hold/,
      );
    }
  });

  void it('refuses GSS and a trust server needs nothing', () => {
    const step = login({ kind: 'none' }).receive(R.gss);
    assert.equal(step.type === 'failed' && step.code, 'unsupported_method');
    assert.deepEqual(login({ kind: 'none' }).receive(R.ok), { type: 'ok' });
  });

  void it('an md5 request with a salt of the wrong size is a protocol failure', () => {
    const step = login({ kind: 'password', password: 'pw' }).receive(
      Buffer.concat([int32(5), Buffer.from([1])]),
    );
    assert.equal(step.type === 'failed' && step.code, 'protocol');
  });

  void it('in memory, every method × secret kind pairs up', () => {
    for (const method of ['md5', 'password', 'scram-sha-256'] as const) {
      const { server } = converse(
        createServerAuth({ method, user: 'bob', secret: { kind: 'password', password: 'pw' } }),
        login({ kind: 'password', password: 'pw' }),
      );
      assert.equal(server.type, 'ok', method);
    }
  });
});
