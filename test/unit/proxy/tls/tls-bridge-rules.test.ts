/** The TLS bridge's decisions (tls-bridge.ts), as tables. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bridgeEndMode, nativeRelayAllowed, useTlsBridge } from '../../../../src/proxy/tls/tls-bridge.js';

describe('TLS bridge: which client TLS goes to a relay thread', () => {
  const cases: Array<[string, boolean, boolean, number, boolean]> = [
    ['native relay, native context, nothing queued', true, true, 0, true],
    ['no native relay (proxy.relay: js, or no addon)', false, true, 0, false],
    ['no native context for the listener', true, false, 0, false],
    ["the 'S' still queued in Node, or bytes unread", true, true, 1, false],
  ];
  for (const [name, relay, context, queued, want] of cases)
    it(name, () => assert.equal(useTlsBridge(relay, context, queued), want));
});

describe('TLS bridge: how it ends after one of its sides did', () => {
  const cases: Array<[string, Parameters<typeof bridgeEndMode>[0], string]> = [
    ['the client ended: closed at once', { side: 'client', error: false }, 'cut'],
    ['the client failed: closed at once', { side: 'client', error: true }, 'cut'],
    [
      'the session ended its plain end: the client gets what it is owed',
      { side: 'server', error: false },
      'finish',
    ],
    ['the plain end failed: the same', { side: 'server', error: true }, 'finish'],
  ];
  for (const [name, report, want] of cases) it(name, () => assert.equal(bridgeEndMode(report), want));
});

describe('which sessions may go to the native relay at ReadyForQuery', () => {
  const cases: Array<[string, Parameters<typeof nativeRelayAllowed>, boolean]> = [
    ['plain client, plain server', ['off', false, 'off'], true],
    ['TLS client on a relay thread (bridged)', ['on', true, 'off'], true],
    ["TLS client on Node's TLSSocket", ['on', false, 'off'], false],
    ['server_tls on (the server leg stays in Node)', ['off', false, 'on'], false],
    ['bridged client, server_tls on', ['on', true, 'on'], false],
  ];
  for (const [name, args, want] of cases) it(name, () => assert.equal(nativeRelayAllowed(...args), want));
});
