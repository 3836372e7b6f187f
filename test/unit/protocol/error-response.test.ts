import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { BackendMessage, DatabaseError } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';

import {
  cancelRequest,
  errorResponse,
  noticeResponse,
  SQLSTATE,
  sslRefused,
} from '../../../src/protocol/error-response.js';
import { parseStartupPacket } from '../../../src/protocol/startup.js';

function parseWithPgProtocol(bytes: Buffer): BackendMessage[] {
  const messages: BackendMessage[] = [];
  new Parser().parse(bytes, (message) => messages.push(message));
  return messages;
}

void describe('errorResponse', () => {
  void it('FATAL 57P01 is exactly the bytes the spec describes', () => {
    const message = 'terminating connection due to administrator command';
    // Fields: type byte + NUL-terminated string each, then a final NUL.
    const body = `SFATAL\0VFATAL\0C57P01\0M${message}\0\0`;
    const expected = Buffer.concat([
      Buffer.from('E'),
      Buffer.from([0, 0, 0, 4 + body.length]),
      Buffer.from(body),
    ]);
    assert.deepEqual(errorResponse({ severity: 'FATAL', code: SQLSTATE.ADMIN_SHUTDOWN, message }), expected);
  });

  void it('pg-protocol decodes it back with the same fields, detail and hint included', () => {
    const bytes = errorResponse({
      severity: 'FATAL',
      code: SQLSTATE.ADMIN_SHUTDOWN,
      message: 'the primary is going away',
      detail: 'node pg-2 lost the leader lock',
      hint: 'reconnect — the new primary is élu',
    });
    const messages = parseWithPgProtocol(bytes);
    assert.equal(messages.length, 1);
    const error = messages[0] as DatabaseError;
    assert.equal(error.name, 'error');
    assert.equal(error.length, bytes.length - 1);
    assert.equal(error.severity, 'FATAL');
    assert.equal(error.code, '57P01');
    assert.equal(error.message, 'the primary is going away');
    assert.equal(error.detail, 'node pg-2 lost the leader lock');
    assert.equal(error.hint, 'reconnect — the new primary is élu');
  });

  void it('noticeResponse: the same fields under type N, which pg-protocol reads as a notice', () => {
    const bytes = noticeResponse({
      severity: 'WARNING',
      code: SQLSTATE.WARNING,
      message: 'kept until a restart',
    });
    assert.equal(bytes[0], 0x4e);
    const [notice] = parseWithPgProtocol(bytes) as DatabaseError[];
    assert.equal(notice!.name, 'notice');
    assert.equal(notice!.severity, 'WARNING');
    assert.equal(notice!.code, '01000');
    assert.equal(notice!.message, 'kept until a restart');
  });

  void it('drops NUL characters, which would end a field early', () => {
    const bytes = errorResponse({ severity: 'ERROR', code: SQLSTATE.PROTOCOL_VIOLATION, message: 'a\0b' });
    const error = parseWithPgProtocol(bytes)[0] as DatabaseError;
    assert.equal(error.message, 'ab');
    assert.equal(error.code, '08P01');
  });

  void it('refuses a malformed SQLSTATE', () => {
    assert.throws(() => errorResponse({ severity: 'ERROR', code: '5301', message: 'x' }), RangeError);
    assert.throws(() => errorResponse({ severity: 'ERROR', code: '57p01', message: 'x' }), RangeError);
  });

  void it('SQLSTATE holds the standard codes', () => {
    assert.deepEqual(SQLSTATE, {
      ADMIN_SHUTDOWN: '57P01',
      CANNOT_CONNECT_NOW: '57P03',
      CONNECTION_FAILURE: '08006',
      PROTOCOL_VIOLATION: '08P01',
      TOO_MANY_CONNECTIONS: '53300',
      QUERY_CANCELED: '57014',
      INVALID_AUTHORIZATION_SPECIFICATION: '28000',
      FEATURE_NOT_SUPPORTED: '0A000',
      SYNTAX_ERROR: '42601',
      UNDEFINED_OBJECT: '42704',
      OBJECT_NOT_IN_PREREQUISITE_STATE: '55000',
      CONFIG_FILE_ERROR: 'F0000',
      INTERNAL_ERROR: 'XX000',
      WARNING: '01000',
    });
  });
});

void describe('sslRefused', () => {
  void it('is the single byte N', () => {
    assert.deepEqual(sslRefused(), Buffer.from([0x4e]));
  });
});

void describe('cancelRequest', () => {
  for (const keyBytes of [4, 32, 256]) {
    void it(`with a ${keyBytes}-byte key round-trips through parseStartupPacket`, () => {
      const key = Buffer.alloc(keyBytes, 0x5c);
      const bytes = cancelRequest(123456, key);
      assert.equal(bytes.length, 12 + keyBytes);
      assert.equal(bytes.readUInt32BE(0), 12 + keyBytes);
      assert.equal(bytes.readUInt32BE(4), 80877102);
      const parsed = parseStartupPacket(bytes);
      assert.deepEqual(parsed, {
        ok: true,
        packet: { kind: 'cancel', processId: 123456, secretKey: key, raw: bytes },
        rest: Buffer.alloc(0),
      });
    });
  }

  void it('refuses keys outside 4..256 bytes', () => {
    assert.throws(() => cancelRequest(1, Buffer.alloc(3)), RangeError);
    assert.throws(() => cancelRequest(1, Buffer.alloc(257)), RangeError);
  });
});
