import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { firstPacketAction, type FirstPacketAction } from '../../../../src/proxy/session/first-packet.js';

type Row = [
  packet: 'ssl' | 'gssenc' | 'cancel' | 'startup',
  tls: 'disable' | 'terminate' | 'require' | 'passthrough',
  answered: 'none' | 'ssl' | 'gss' | 'tls',
  overLimit: boolean,
  restBytes: number,
  expected: FirstPacketAction['kind'] | `fail ${string}` | 'route passthrough' | 'route plain',
];

const CASES: Row[] = [
  ['ssl', 'disable', 'none', false, 0, 'refuse_encryption'],
  ['ssl', 'disable', 'none', true, 0, 'refuse_encryption'], // counted at its StartupMessage
  ['ssl', 'disable', 'gss', false, 0, 'refuse_encryption'],
  ['ssl', 'disable', 'ssl', false, 0, 'fail 08P01'], // PostgreSQL answers each request once
  ['ssl', 'passthrough', 'none', true, 0, 'fail 53300'],
  ['ssl', 'passthrough', 'none', false, 3, 'fail 08P01'],
  ['ssl', 'passthrough', 'none', false, 0, 'route passthrough'],
  ['gssenc', 'disable', 'none', false, 0, 'refuse_encryption'],
  ['gssenc', 'disable', 'ssl', false, 0, 'refuse_encryption'],
  ['gssenc', 'disable', 'gss', false, 0, 'fail 08P01'],
  ['gssenc', 'passthrough', 'none', false, 0, 'refuse_encryption'],
  ['cancel', 'disable', 'none', true, 0, 'cancel'],
  ['cancel', 'disable', 'ssl', false, 0, 'cancel'],
  ['startup', 'disable', 'none', true, 0, 'fail 53300'],
  ['startup', 'passthrough', 'none', false, 0, 'route plain'],
  ['startup', 'disable', 'gss', false, 12, 'route plain'], // pipelined bytes are kept for the server
  ['ssl', 'terminate', 'none', false, 0, 'start_tls'],
  ['ssl', 'require', 'none', true, 0, 'start_tls'], // counted at its StartupMessage
  ['ssl', 'terminate', 'gss', false, 0, 'start_tls'],
  ['ssl', 'terminate', 'none', false, 5, 'fail 08P01'], // CVE-2021-23214
  ['ssl', 'terminate', 'tls', false, 0, 'fail 08P01'], // no SSLRequest inside TLS
  ['gssenc', 'require', 'tls', false, 0, 'fail 08P01'],
  ['gssenc', 'terminate', 'none', false, 0, 'refuse_encryption'],
  ['startup', 'terminate', 'none', false, 0, 'route plain'], // plain clients served (as `host`)
  ['startup', 'terminate', 'tls', false, 0, 'route plain'],
  ['startup', 'require', 'none', false, 0, 'fail 28000'], // plain clients refused (as `hostssl`)
  ['startup', 'require', 'gss', false, 0, 'fail 28000'],
  ['startup', 'require', 'tls', false, 0, 'route plain'],
  ['startup', 'require', 'tls', true, 0, 'fail 53300'],
  ['cancel', 'require', 'none', false, 0, 'cancel'], // cancels come on a plain connection of their own
];

function label(a: FirstPacketAction): string {
  switch (a.kind) {
    case 'fail':
      return `fail ${a.code}`;
    case 'route':
      return a.passthrough ? 'route passthrough' : 'route plain';
    default:
      return a.kind;
  }
}

describe('firstPacketAction', () => {
  for (const [packet, tls, answered, overLimit, rest, expected] of CASES) {
    it(`${packet}, tls ${tls}, answered ${answered}, over limit ${overLimit}, ${rest} bytes after → ${expected}`, () => {
      const a = {
        ssl: answered === 'ssl' || answered === 'tls',
        gss: answered === 'gss' || answered === 'tls',
        encrypted: answered === 'tls',
      };
      assert.equal(label(firstPacketAction(packet, tls, a, overLimit, rest)), expected);
    });
  }

  it('the unencrypted-bytes refusal names the reason a client will see', () => {
    const a = firstPacketAction('ssl', 'passthrough', { ssl: false, gss: false, encrypted: false }, false, 1);
    assert.ok(a.kind === 'fail' && a.reason === 'protocol_error');
    assert.equal(a.message, 'received unencrypted data after SSL request');
  });
});
