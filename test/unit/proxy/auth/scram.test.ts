import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';

import { ClientLogin } from '../../../../src/protocol/auth/client-login.js';
import {
  clientKeysFromPassword,
  clientProof,
  recoverClientKey,
  saslPrep,
  serverSignature,
  verifierFromPassword,
} from '../../../../src/protocol/auth/scram-keys.js';
import { parseSecret, formatScramSecret } from '../../../../src/protocol/auth/secret.js';
import { createServerAuth } from '../../../../src/proxy/auth/server-auth.js';
import { cstring, int32 } from '../../protocol/buffers.js';
import { body, converse, countingRandom, errorFields, frames } from './converse.js';

/** RFC 7677 §3: user "user", password "pencil". */
const RFC = {
  password: 'pencil',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  iterations: 4096,
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  clientFirstBare: 'n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const RFC_AUTH_MESSAGE = `${RFC.clientFirstBare},${RFC.serverFirst},c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0`;

/** Authentication ('R') bodies, built from the spec. */
const R = {
  ok: () => int32(0),
  sasl: (...mechanisms: string[]) => Buffer.concat([int32(10), ...mechanisms.map(cstring), Buffer.from([0])]),
  continue: (data: string) => Buffer.concat([int32(11), Buffer.from(data)]),
  final: (data: string) => Buffer.concat([int32(12), Buffer.from(data)]),
  md5: (salt: Buffer) => Buffer.concat([int32(5), salt]),
};
const saslInitialBody = (mechanism: string, data: string): Buffer =>
  Buffer.concat([cstring(mechanism), int32(Buffer.byteLength(data)), Buffer.from(data)]);

function rfcVerifier() {
  return verifierFromPassword(RFC.password, RFC.salt, RFC.iterations);
}

void describe('SCRAM-SHA-256 keys against RFC 7677', () => {
  void it('the proof recovers the ClientKey, and the server signature is the published one', () => {
    const verifier = rfcVerifier();
    const proof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
    const clientKey = recoverClientKey(verifier, RFC_AUTH_MESSAGE, proof);
    assert.deepEqual(clientKey, clientKeysFromPassword(RFC.password, RFC.salt, RFC.iterations).clientKey);
    assert.equal(
      `v=${serverSignature(verifier.serverKey, RFC_AUTH_MESSAGE).toString('base64')}`,
      RFC.serverFinal,
    );
  });

  void it('a proof with one bit flipped recovers nothing', () => {
    const proof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
    proof[0]! ^= 1;
    assert.equal(recoverClientKey(rfcVerifier(), RFC_AUTH_MESSAGE, proof), undefined);
  });

  void it('the verifier round-trips through its pg_authid text', () => {
    const text = formatScramSecret(rfcVerifier());
    assert.match(text, /^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$/);
    assert.deepEqual(parseSecret(text), { kind: 'scram', ...rfcVerifier() });
  });

  void it('SASLprep maps non-ASCII spaces and soft hyphens, then NFKC; ASCII is untouched', () => {
    assert.equal(saslPrep('I\u00ADX'), 'IX');
    assert.equal(saslPrep('a\u00A0b'), 'a b');
    assert.equal(saslPrep('\u2168'), 'IX');
    assert.equal(saslPrep('pen cil,=!'), 'pen cil,=!');
  });
});

void describe('ClientLogin (proxy → PostgreSQL) with the RFC 7677 conversation', () => {
  const login = (credentials: ConstructorParameters<typeof ClientLogin>[0]['credentials']) =>
    new ClientLogin({ user: 'user', credentials, randomBytes: () => Buffer.from(RFC.clientNonce, 'base64') });

  for (const [name, credentials] of [
    ['a password', { kind: 'password', password: RFC.password }],
    [
      'SCRAM keys',
      { kind: 'scram-keys', keys: clientKeysFromPassword(RFC.password, RFC.salt, RFC.iterations) },
    ],
  ] as const) {
    void it(`sends exactly the RFC's messages from ${name} and checks the server's signature`, () => {
      const c = login(credentials);
      const first = c.receive(R.sasl('SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'));
      assert.equal(first.type, 'send');
      assert.deepEqual(body(first.send), saslInitialBody('SCRAM-SHA-256', `n,,${RFC.clientFirstBare}`));
      const second = c.receive(R.continue(RFC.serverFirst));
      assert.equal(second.type, 'send');
      assert.equal(body(second.send).toString(), RFC.clientFinal);
      assert.deepEqual(c.receive(R.final(RFC.serverFinal)), { type: 'wait' });
      assert.deepEqual(c.receive(R.ok()), { type: 'ok' });
    });
  }

  const failures: [string, (c: ClientLogin) => ReturnType<ClientLogin['receive']>, string][] = [
    [
      'a wrong server signature',
      (c) => (
        c.receive(R.continue(RFC.serverFirst)),
        c.receive(R.final('v=' + Buffer.alloc(32).toString('base64')))
      ),
      'server_signature_mismatch',
    ],
    [
      'a server error (e=)',
      (c) => (c.receive(R.continue(RFC.serverFirst)), c.receive(R.final('e=invalid-proof'))),
      'protocol',
    ],
    [
      'a server nonce not extending ours',
      (c) => c.receive(R.continue(RFC.serverFirst.replace('rOpr', 'XOpr'))),
      'protocol',
    ],
    [
      'a server nonce equal to ours',
      (c) => c.receive(R.continue(`r=${RFC.clientNonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`)),
      'protocol',
    ],
    [
      'iterations beyond the bound',
      (c) => c.receive(R.continue(RFC.serverFirst.replace('i=4096', 'i=99999999'))),
      'protocol',
    ],
    ['a garbled server-first', (c) => c.receive(R.continue('s=abc')), 'protocol'],
    [
      'Ok before the signature',
      (c) => (c.receive(R.continue(RFC.serverFirst)), c.receive(R.ok())),
      'protocol',
    ],
    ['SASLFinal out of order', (c) => c.receive(R.final(RFC.serverFinal)), 'protocol'],
    ['a short Authentication body', (c) => c.receive(Buffer.from([0, 0])), 'protocol'],
  ];
  for (const [name, run, code] of failures) {
    void it(`fails with ${code} on ${name}`, () => {
      const c = login({ kind: 'password', password: RFC.password });
      c.receive(R.sasl('SCRAM-SHA-256'));
      const step = run(c);
      assert.equal(step.type, 'failed');
      assert.equal(step.type === 'failed' && step.code, code);
    });
  }

  void it('reports a server with another verifier than the keys were derived for', () => {
    const keys = clientKeysFromPassword(RFC.password, Buffer.from('other salt'), RFC.iterations);
    const c = login({ kind: 'scram-keys', keys });
    c.receive(R.sasl('SCRAM-SHA-256'));
    const step = c.receive(R.continue(RFC.serverFirst));
    assert.equal(step.type === 'failed' && step.code, 'verifier_mismatch');
  });

  void it('refuses SASL without SCRAM-SHA-256, and SCRAM with only an md5 secret', () => {
    const a = login({ kind: 'password', password: 'x' }).receive(R.sasl('SCRAM-SHA-512'));
    assert.equal(a.type === 'failed' && a.code, 'unsupported_method');
    const b = login({ kind: 'md5', hash: 'md5' + '0'.repeat(32) }).receive(R.sasl('SCRAM-SHA-256'));
    assert.equal(b.type === 'failed' && b.code, 'credentials_unusable');
  });
});

void describe('createServerAuth scram-sha-256 (client → proxy)', () => {
  const scramSecret = { kind: 'scram' as const, ...rfcVerifier() };
  const server = (overrides: Partial<Parameters<typeof createServerAuth>[0]> = {}) =>
    createServerAuth({
      method: 'scram-sha-256',
      user: 'user',
      secret: scramSecret,
      randomBytes: countingRandom(),
      ...overrides,
    });
  const client = (password: string) =>
    new ClientLogin({ user: 'user', credentials: { kind: 'password', password } });

  void it('lets the right password in and yields the ClientKey recovered from the proof', () => {
    const { server: step, client: last } = converse(server(), client(RFC.password));
    assert.equal(step.type, 'ok');
    assert.deepEqual(last, { type: 'ok' });
    const expected = clientKeysFromPassword(RFC.password, RFC.salt, RFC.iterations);
    assert.deepEqual(step.type === 'ok' && step.credentials, { kind: 'scram-keys', keys: { ...expected } });
  });

  void it('refuses a wrong password with 28P01 in PostgreSQL words', () => {
    const { server: step } = converse(server(), client('pencil2'));
    assert.equal(step.type, 'failed');
    assert.deepEqual(errorFields(step.send), {
      S: 'FATAL',
      V: 'FATAL',
      C: '28P01',
      M: 'password authentication failed for user "user"',
    });
  });

  void it('an unknown user and an md5 secret run the exchange to the end, then 28P01', () => {
    for (const secret of [undefined, { kind: 'md5' as const, hash: 'md5' + 'a'.repeat(32) }]) {
      const { server: step, client: last } = converse(server({ secret }), client(RFC.password));
      assert.equal(last?.type, 'send', 'the client got as far as its proof');
      assert.equal(step.type === 'failed' && errorFields(step.send).C, '28P01');
    }
  });

  void it('the doomed salt is stable per user, so probing twice cannot tell unknown users', () => {
    const salts = [0, 1].map(() => {
      const s = server({ secret: undefined, mockSaltKey: Buffer.from('k') });
      s.start();
      const step = s.receive(saslInitialBody('SCRAM-SHA-256', 'n,,n=,r=abc'));
      return frames(step.send)[0]!.body.toString().split(',')[1];
    });
    assert.equal(salts[0], salts[1]);
  });

  void it('a plaintext secret is served as SCRAM and hands the password on', () => {
    const { server: step } = converse(server({ secret: { kind: 'password', password: 'pw' } }), client('pw'));
    assert.deepEqual(step.type === 'ok' && step.credentials, { kind: 'password', password: 'pw' });
  });

  /** Runs the first half honestly, then feeds `final(nonce)` as the client-final. */
  function withFinal(final: (nonce: string, proof: string) => string, first = 'n,,n=,r=abc') {
    const s = server();
    s.start();
    const cont = s.receive(saslInitialBody('SCRAM-SHA-256', first));
    assert.equal(cont.type, 'continue');
    const serverFirst = frames(cont.send)[0]!.body.subarray(4).toString();
    const nonce = serverFirst.split(',')[0]!.slice(2);
    const gs2 = Buffer.from(first.slice(0, 3)).toString('base64');
    const withoutProof = `c=${gs2},r=${nonce}`;
    const keys = clientKeysFromPassword(RFC.password, RFC.salt, RFC.iterations);
    const authMessage = `${first.slice(3)},${serverFirst},${withoutProof}`;
    const proof = clientProof(keys.clientKey, authMessage).toString('base64');
    return s.receive(Buffer.from(final(nonce, proof)));
  }

  void it('accepts "y,," (client could bind, server cannot) like "n,,"', () => {
    assert.equal(withFinal((n, p) => `c=eSws,r=${n},p=${p}`, 'y,,n=,r=abc').type, 'ok');
    assert.equal(withFinal((n, p) => `c=biws,r=${n},p=${p}`).type, 'ok');
  });

  const malformed = 'malformed SCRAM message';
  const wrongPassword = 'password authentication failed for user "user"';
  /** name, client-final, then SQLSTATE, message and detail (PostgreSQL 15's words). */
  const tampered: [string, (nonce: string, proof: string) => string, string, string, string?][] = [
    [
      'a nonce cut short',
      (n, p) => `c=biws,r=${n.slice(0, -1)},p=${p}`,
      '08P01',
      'invalid SCRAM response',
      'Nonce does not match.',
    ],
    [
      'the channel-binding header changed',
      (n, p) => `c=eSws,r=${n},p=${p}`,
      '08P01',
      'unexpected SCRAM channel-binding attribute in client-final-message',
    ],
    ['a proof with a flipped bit', (n, p) => `c=biws,r=${n},p=${flip(p)}`, '28P01', wrongPassword],
    [
      'a proof of the wrong length',
      (n) => `c=biws,r=${n},p=AAAA`,
      '08P01',
      malformed,
      'Malformed proof in client-final-message.',
    ],
    ['no proof', (n) => `c=biws,r=${n}`, '08P01', malformed, 'Could not find proof in client-final-message.'],
    [
      'a proof that is not base64',
      (n) => `c=biws,r=${n},p=***`,
      '08P01',
      malformed,
      'Malformed proof in client-final-message.',
    ],
    ['no c=', (n, p) => `r=${n},p=${p}`, '08P01', malformed, 'Expected attribute "c".'],
  ];
  for (const [name, final, code, message, detail] of tampered) {
    void it(`refuses a client-final with ${name}: ${code} "${message}"`, () => {
      const step = withFinal(final);
      assert.equal(step.type, 'failed');
      const fields = errorFields(step.send);
      assert.deepEqual([fields.C, fields.M, fields.D], [code, message, detail]);
    });
  }

  const badFirst: [string, Buffer, string, string][] = [
    [
      'channel binding (p=)',
      saslInitialBody('SCRAM-SHA-256', 'p=tls-server-end-point,,n=,r=abc'),
      '08P01',
      'malformed SCRAM message',
    ],
    [
      'SCRAM-SHA-256-PLUS',
      saslInitialBody('SCRAM-SHA-256-PLUS', 'p=tls-server-end-point,,n=,r=abc'),
      '08P01',
      'client selected an invalid SASL authentication mechanism',
    ],
    [
      'an authzid',
      saslInitialBody('SCRAM-SHA-256', 'n,a=admin,n=,r=abc'),
      '0A000',
      'client uses authorization identity, but it is not supported',
    ],
    [
      'a mandatory extension',
      saslInitialBody('SCRAM-SHA-256', 'n,,m=ext,n=,r=abc'),
      '0A000',
      'client requires an unsupported SCRAM extension',
    ],
    ['no nonce', saslInitialBody('SCRAM-SHA-256', 'n,,n='), '08P01', 'malformed SCRAM message'],
    [
      'a nonce with a comma-free but non-printable byte',
      saslInitialBody('SCRAM-SHA-256', 'n,,n=,r=a\u0001'),
      '08P01',
      'non-printable characters in SCRAM nonce',
    ],
    ['a bad flag', saslInitialBody('SCRAM-SHA-256', 'x,,n=,r=abc'), '08P01', 'malformed SCRAM message'],
    ['a truncated message', Buffer.from('SCRAM-SHA-256'), '08P01', 'SASLInitialResponse is truncated'],
    [
      'a data length that lies',
      Buffer.concat([cstring('SCRAM-SHA-256'), int32(99), Buffer.from('n,,n=,r=a')]),
      '08P01',
      'SASLInitialResponse data length does not match its message',
    ],
    [
      'more than 1024 bytes (PostgreSQL: PG_MAX_SASL_MESSAGE_LENGTH)',
      saslInitialBody('SCRAM-SHA-256', `n,,n=,r=${'a'.repeat(1024)}`),
      '08P01',
      'SASL message too long',
    ],
    [
      'no data (-1)',
      Buffer.concat([cstring('SCRAM-SHA-256'), int32(-1)]),
      '08P01',
      'SASLInitialResponse data length does not match its message',
    ],
  ];
  for (const [name, first, code, message] of badFirst) {
    void it(`refuses a client-first with ${name}: ${code} "${message}"`, () => {
      const s = server();
      s.start();
      const step = s.receive(first);
      assert.equal(step.type, 'failed');
      const fields = errorFields(step.send);
      assert.deepEqual([fields.C, fields.M], [code, message]);
      const after = s.receive(first);
      assert.equal(after.type, 'failed', 'a finished exchange refuses more messages');
    });
  }

  void it('starts with AuthenticationSASL offering SCRAM-SHA-256 only', () => {
    const step = server().start();
    assert.equal(step.type, 'continue');
    assert.deepEqual(frames(step.send), [{ type: 'R', body: R.sasl('SCRAM-SHA-256') }]);
  });
});

function flip(b64: string): string {
  const bytes = Buffer.from(b64, 'base64');
  bytes[0]! ^= 1;
  return bytes.toString('base64');
}

void describe('property: the server built from a password accepts exactly that password', () => {
  void it('any password (and any other) through SCRAM, md5 and cleartext', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 1, maxLength: 24 }),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 24 }),
        fc.constantFrom('scram-sha-256' as const, 'md5' as const, 'password' as const),
        (password, other, method) => {
          fc.pre(!password.includes('\0') && !other.includes('\0'));
          const secret = { kind: 'password' as const, password };
          const run = (attempt: string) =>
            converse(
              createServerAuth({ method, user: 'u', secret, scramIterations: 64 }),
              new ClientLogin({ user: 'u', credentials: { kind: 'password', password: attempt } }),
            ).server.type;
          assert.equal(run(password), 'ok');
          if (saslPrep(other) !== saslPrep(password)) assert.equal(run(other), 'failed');
        },
      ),
      { numRuns: 150 },
    );
  });
});
