import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';

import {
  StartupReplyReader,
  type StartupReplyEvent,
  type StartupReplyPush,
} from '../../../src/protocol/startup-replies.js';
import { buffers, bytewise, int32, message, splits, version } from './buffers.js';

const key32 = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7));
/** What PostgreSQL 18 sends to a 3.2 client after authentication. */
const replies = [
  buffers.authenticationOk(),
  buffers.parameterStatus('application_name', 'psql'),
  buffers.parameterStatus('client_encoding', 'UTF8'),
  buffers.parameterStatus('in_hot_standby', 'on'),
  buffers.parameterStatus('server_version', '18.1'),
  buffers.parameterStatus('TimeZone', 'Europe/Paris'),
  buffers.backendKeyData(31337, key32),
  buffers.readyForQuery('I'),
];
const startupReplies = Buffer.concat(replies);
/** The first bytes of the raw pipe: a whole message and part of the next. */
const after = Buffer.concat([buffers.commandComplete('SET'), buffers.readyForQuery('I').subarray(0, 3)]);
const stream = Buffer.concat([startupReplies, after]);

const expectedEvents: StartupReplyEvent[] = [
  { type: 'authentication', code: 0 },
  { type: 'parameterStatus', name: 'application_name', value: 'psql' },
  { type: 'parameterStatus', name: 'client_encoding', value: 'UTF8' },
  { type: 'parameterStatus', name: 'in_hot_standby', value: 'on' },
  { type: 'parameterStatus', name: 'server_version', value: '18.1' },
  { type: 'parameterStatus', name: 'TimeZone', value: 'Europe/Paris' },
  { type: 'backendKeyData', processId: 31337, secretKey: key32 },
  { type: 'readyForQuery', status: 'I' },
];

interface Totals {
  events: StartupReplyEvent[];
  consumed: number;
  done: boolean;
  violation: string | undefined;
  pushes: StartupReplyPush[];
}

function readAll(chunks: Buffer[], reader = new StartupReplyReader()): Totals {
  const pushes = chunks.map((chunk) => reader.push(chunk));
  return {
    events: pushes.flatMap((p) => p.events),
    consumed: pushes.reduce((sum, p) => sum + p.consumed, 0),
    done: reader.done,
    violation: pushes.find((p) => p.violation !== undefined)?.violation,
    pushes,
  };
}

void describe('StartupReplyReader over a realistic reply sequence', () => {
  void it('whole: the events, and the raw pipe starts right after ReadyForQuery', () => {
    const reader = new StartupReplyReader();
    const result = reader.push(stream);
    assert.deepEqual(result, { events: expectedEvents, consumed: startupReplies.length, done: true });
    assert.deepEqual(stream.subarray(result.consumed), after);
  });

  void it('split at every offset: same events, same boundary, done only once ReadyForQuery is complete', () => {
    for (const [at, head, tail] of splits(stream)) {
      const { events, consumed, done, pushes } = readAll([head, tail]);
      assert.deepEqual(events, expectedEvents, `split at ${at}`);
      assert.equal(consumed, startupReplies.length, `split at ${at}`);
      assert.equal(done, true);
      const first = pushes[0];
      assert.ok(first);
      assert.equal(first.done, at >= startupReplies.length, `split at ${at}`);
      assert.equal(first.consumed, Math.min(at, startupReplies.length), `split at ${at}`);
    }
  });

  void it('one byte at a time: same events and boundary', () => {
    const { events, consumed, pushes } = readAll(bytewise(stream));
    assert.deepEqual(events, expectedEvents);
    assert.equal(consumed, startupReplies.length);
    assert.equal(
      pushes.findIndex((p) => p.done),
      startupReplies.length - 1,
    );
  });

  void it('once done, later chunks are left alone', () => {
    const reader = new StartupReplyReader();
    reader.push(startupReplies);
    assert.deepEqual(reader.push(after), { events: [], consumed: 0, done: true });
  });

  void it('agrees with pg-protocol on a protocol 3.0 sequence (4-byte key)', () => {
    const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
    const bytes = Buffer.concat([
      buffers.authenticationOk(),
      buffers.parameterStatus('in_hot_standby', 'off'),
      buffers.backendKeyData(99, key),
      buffers.readyForQuery('I'),
    ]);
    const theirs: BackendMessage[] = [];
    new Parser().parse(bytes, (m) => theirs.push(m));
    assert.deepEqual(
      theirs.map((m) => m.name),
      ['authenticationOk', 'parameterStatus', 'backendKeyData', 'readyForQuery'],
    );
    const ours = new StartupReplyReader().push(bytes).events;
    const [, status, keyData] = theirs as [
      unknown,
      { parameterName: string; parameterValue: string },
      { processID: number; secretKey: number },
    ];
    assert.deepEqual(ours[1], {
      type: 'parameterStatus',
      name: status.parameterName,
      value: status.parameterValue,
    });
    assert.deepEqual(ours[2], {
      type: 'backendKeyData',
      processId: keyData.processID,
      secretKey: int32(keyData.secretKey),
    });
  });
});

void describe('StartupReplyReader: the other startup messages', () => {
  void it('SASL authentication codes, NegotiateProtocolVersion, notices and a FATAL error', () => {
    const bytes = Buffer.concat([
      buffers.negotiateProtocolVersion(version(3, 0), ['_pq_.unknown']),
      buffers.authenticationSASL('SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'),
      buffers.authenticationSASLFinal('v=abc'),
      buffers.notice('hello'),
      buffers.errorResponse({ S: 'FATAL', V: 'FATAL', C: '57P03', M: 'the database system is starting up' }),
    ]);
    for (const [at, head, tail] of splits(bytes)) {
      const { events, consumed, done, violation } = readAll([head, tail]);
      assert.deepEqual(
        events,
        [
          {
            type: 'negotiateProtocolVersion',
            protocolVersion: version(3, 0),
            unrecognizedOptions: ['_pq_.unknown'],
          },
          { type: 'authentication', code: 10 },
          { type: 'authentication', code: 12 },
          { type: 'other', code: 0x4e },
          { type: 'error', severity: 'FATAL', code: '57P03', message: 'the database system is starting up' },
        ],
        `split at ${at}`,
      );
      assert.equal(consumed, bytes.length);
      assert.equal(done, false);
      assert.equal(violation, undefined);
    }
  });

  void it('prefers the non-localized severity V over S', () => {
    const bytes = buffers.errorResponse({ S: 'FATAL-localisé', V: 'FATAL', C: '28P01', M: 'password' });
    assert.deepEqual(new StartupReplyReader().push(bytes).events, [
      { type: 'error', severity: 'FATAL', code: '28P01', message: 'password' },
    ]);
  });
});

void describe('StartupReplyReader: protocol violations stop the reader', () => {
  const cases: { name: string; bytes: Buffer; violation: RegExp; options?: { maxMessageBytes: number } }[] = [
    {
      name: 'a length below 4',
      bytes: Buffer.from([0x52, 0, 0, 0, 3]),
      violation: /'R' has length 3 below 4/,
    },
    {
      name: 'a message over the size limit',
      bytes: buffers.parameterStatus('x', 'y'.repeat(100)),
      violation: /'S' of 107 bytes exceeds 64/,
      options: { maxMessageBytes: 64 },
    },
    { name: 'ReadyForQuery without status', bytes: message('Z'), violation: /ReadyForQuery body of 0 bytes/ },
    {
      name: 'a 3-byte cancel key',
      bytes: buffers.backendKeyData(1, Buffer.alloc(3)),
      violation: /key of 3 bytes is outside 4\.\.256/,
    },
    {
      name: 'a 257-byte cancel key',
      bytes: buffers.backendKeyData(1, Buffer.alloc(257)),
      violation: /key of 257 bytes is outside 4\.\.256/,
    },
    {
      name: 'an unterminated ParameterStatus',
      bytes: message('S', Buffer.from('in_hot_standby\0on')),
      violation: /ParameterStatus strings are not terminated/,
    },
    { name: 'a short Authentication', bytes: message('R', Buffer.from([0])), violation: /too short/ },
    {
      name: 'an ErrorResponse without its final NUL',
      bytes: message('E', Buffer.from('SFATAL\0')),
      violation: /ErrorResponse is not terminated/,
    },
  ];
  for (const { name, bytes, violation, options } of cases) {
    void it(name, () => {
      for (const [at, head, tail] of splits(Buffer.concat([bytes, buffers.readyForQuery('I')]))) {
        const result = readAll([head, tail], new StartupReplyReader(options));
        assert.match(result.violation ?? '', violation, `split at ${at}`);
        assert.equal(result.done, false, `split at ${at}`);
        assert.deepEqual(result.events, [], `split at ${at}`);
      }
    });
  }
});
