import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startupAction, type StartupAction } from '../../../src/proxy/startup-action.js';

type Row = [
  packet: 'ssl' | 'gssenc' | 'cancel' | 'startup',
  tls: 'disable' | 'passthrough',
  overLimit: boolean,
  restBytes: number,
  expected: StartupAction['kind'] | `fail ${string}` | 'route passthrough' | 'route plain',
];

const CASES: Row[] = [
  ['ssl', 'disable', false, 0, 'refuse_encryption'],
  ['ssl', 'disable', true, 0, 'refuse_encryption'], // counted at its StartupMessage
  ['ssl', 'passthrough', true, 0, 'fail 53300'],
  ['ssl', 'passthrough', false, 3, 'fail 08P01'],
  ['ssl', 'passthrough', false, 0, 'route passthrough'],
  ['gssenc', 'disable', false, 0, 'refuse_encryption'],
  ['gssenc', 'passthrough', false, 0, 'refuse_encryption'],
  ['cancel', 'disable', true, 0, 'cancel'],
  ['startup', 'disable', true, 0, 'fail 53300'],
  ['startup', 'passthrough', false, 0, 'route plain'],
  ['startup', 'disable', false, 12, 'route plain'], // pipelined bytes are kept for the server
];

function label(a: StartupAction): string {
  switch (a.kind) {
    case 'fail':
      return `fail ${a.code}`;
    case 'route':
      return a.passthrough ? 'route passthrough' : 'route plain';
    default:
      return a.kind;
  }
}

describe('startupAction', () => {
  for (const [packet, tls, overLimit, rest, expected] of CASES) {
    it(`${packet}, tls ${tls}, over limit ${overLimit}, ${rest} bytes after → ${expected}`, () => {
      assert.equal(label(startupAction(packet, tls, overLimit, rest)), expected);
    });
  }

  it('the unencrypted-bytes refusal names the reason a client will see', () => {
    const a = startupAction('ssl', 'passthrough', false, 1);
    assert.ok(a.kind === 'fail' && a.reason === 'protocol_error');
    assert.equal(a.message, 'received unencrypted data after SSL request');
  });
});
