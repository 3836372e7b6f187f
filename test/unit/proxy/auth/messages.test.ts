import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';

import { ClientLogin } from '../../../../src/protocol/auth/client-login.js';
import {
  authenticationMD5Password,
  authenticationOk,
  authenticationSASL,
  authenticationSASLContinue,
  authenticationSASLFinal,
  readMechanisms,
  readPasswordMessage,
  readSaslInitialResponse,
} from '../../../../src/protocol/auth/messages.js';
import { SecretCache } from '../../../../src/proxy/auth/secret-cache.js';
import { createServerAuth, SERVER_AUTH_METHODS } from '../../../../src/proxy/auth/server-auth.js';
import { cstring, int32 } from '../../protocol/buffers.js';

function parseWithPgProtocol(bytes: Buffer): BackendMessage[] {
  const out: BackendMessage[] = [];
  new Parser().parse(bytes, (m) => out.push(m));
  return out;
}

void describe('authentication messages, as node-postgres reads them', () => {
  void it('Ok, MD5Password, SASL, SASLContinue and SASLFinal decode to what they carry', () => {
    const bytes = Buffer.concat([
      authenticationSASL(['SCRAM-SHA-256']),
      authenticationSASLContinue('r=abc,s=c2FsdA==,i=4096'),
      authenticationSASLFinal('v=c2ln'),
      authenticationMD5Password(Buffer.from([9, 8, 7, 6])),
      authenticationOk(),
    ]);
    const got = parseWithPgProtocol(bytes).map((m) => {
      const { name, length: _length, ...rest } = m as BackendMessage & Record<string, unknown>;
      return { name, ...rest };
    });
    assert.deepEqual(got, [
      { name: 'authenticationSASL', mechanisms: ['SCRAM-SHA-256'] },
      { name: 'authenticationSASLContinue', data: 'r=abc,s=c2FsdA==,i=4096' },
      { name: 'authenticationSASLFinal', data: 'v=c2ln' },
      { name: 'authenticationMD5Password', salt: Buffer.from([9, 8, 7, 6]) },
      { name: 'authenticationOk' },
    ]);
  });

  void it('frontend readers: PasswordMessage, SASLInitialResponse, mechanism lists', () => {
    assert.equal(readPasswordMessage(cstring('pw')), 'pw');
    assert.deepEqual(readPasswordMessage(Buffer.from('pw\0extra')), {
      error: 'password packet has invalid length',
    });
    assert.deepEqual(readSaslInitialResponse(Buffer.concat([cstring('M'), int32(3), Buffer.from('abc')])), {
      mechanism: 'M',
      data: 'abc',
    });
    assert.deepEqual(readMechanisms(Buffer.from('A\0B\0\0')), ['A', 'B']);
    assert.deepEqual(readMechanisms(Buffer.from('A\0B')), {
      error: 'AuthenticationSASL mechanism list is not terminated',
    });
  });
});

void describe('malformed input never throws', () => {
  void it('server-side exchanges, at any step, answer any bytes with a step', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...SERVER_AUTH_METHODS),
        fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 4 }),
        (method, bodies) => {
          const auth = createServerAuth({
            method,
            user: 'u',
            secret: { kind: 'password', password: 'pw' },
            scramIterations: 16,
          });
          const steps = [auth.start(), ...bodies.map((b) => auth.receive(Buffer.from(b)))];
          for (const step of steps) assert.ok(step.send.length > 0);
          if (bodies.length > 0) assert.notEqual(steps.at(-1)?.type, 'ok', 'random bytes never log in');
        },
      ),
      { numRuns: 300 },
    );
  });

  void it('the client side answers any Authentication bodies with a step', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 4 }), (bodies) => {
        const login = new ClientLogin({ user: 'u', credentials: { kind: 'password', password: 'pw' } });
        for (const b of bodies)
          assert.ok(['send', 'wait', 'ok', 'failed'].includes(login.receive(Buffer.from(b)).type));
      }),
      { numRuns: 300 },
    );
  });
});

void describe('SecretCache', () => {
  const secret = { kind: 'password' as const, password: 'pw' };

  void it('serves an entry until it expires, absent users included', () => {
    const cache = new SecretCache(1_000, 10);
    cache.set('a', secret, 0);
    cache.set('nobody', undefined, 0);
    assert.deepEqual(cache.get('a', 999), { found: true, secret });
    assert.deepEqual(cache.get('nobody', 999), { found: true, secret: undefined });
    assert.deepEqual(cache.get('a', 1_000), { found: false });
    assert.deepEqual(cache.get('b', 0), { found: false });
  });

  void it('drops the oldest entry at its bound', () => {
    const cache = new SecretCache(1_000, 2);
    cache.set('a', secret, 0);
    cache.set('b', secret, 0);
    cache.set('c', secret, 0);
    assert.equal(cache.size, 2);
    assert.deepEqual(cache.get('a', 0), { found: false });
    assert.equal(cache.get('c', 0).found, true);
  });
});
