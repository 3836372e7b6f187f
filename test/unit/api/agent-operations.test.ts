import assert from 'node:assert/strict';
import type http from 'node:http';
import { describe, it } from 'node:test';
import { checkJsonBody, type JsonBody } from '../../../src/api/agent-operations.js';

const req = (length?: string) =>
  ({ headers: length === undefined ? {} : { 'content-length': length } }) as http.IncomingMessage;
const ok = (value: Record<string, unknown>): JsonBody => ({ kind: 'ok', value });

void describe("request bodies as Patroni's _read_json_content takes them", () => {
  const table: [string, http.IncomingMessage, JsonBody, boolean, number | Record<string, unknown>][] = [
    ['no Content-Length, body optional: {}', req(), { kind: 'bad' }, true, {}],
    ['no Content-Length, body required: 411', req(), { kind: 'bad' }, false, 411],
    ['empty body, optional: {}', req('0'), { kind: 'bad' }, true, {}],
    ['empty body, required: 400', req('0'), { kind: 'bad' }, false, 400],
    ['an object', req('9'), ok({ a: 1 }), false, { a: 1 }],
    ['an empty object, required: 400', req('2'), ok({}), false, 400],
    ['an empty object, optional', req('2'), ok({}), true, {}],
    ['not an object: 400', req('5'), { kind: 'bad' }, true, 400],
    [
      'an object shaped like a reply is still a body',
      req('40'),
      ok({ status: 200, type: 'x', body: 'y' }),
      false,
      { status: 200, type: 'x', body: 'y' },
    ],
  ];
  for (const [name, r, body, optional, want] of table) {
    void it(name, () => {
      const got = checkJsonBody(r, body, optional);
      if (typeof want === 'number') assert.equal('reply' in got && got.reply.status, want);
      else assert.deepEqual('value' in got && got.value, want);
    });
  }
});
