/** The TLS bridge's decisions and its lifecycle (tls-bridge.ts), and where TLS is served, as tables. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import type { ProxyConfig } from '../../../../src/config/proxy-schema.js';
import { nativeTlsFactory } from '../../../../src/proxy/relay/choose-relay.js';
import type {
  NativeRelay,
  NativeTlsContext,
  TlsBridgeListener,
} from '../../../../src/proxy/relay/native-relay.js';
import {
  TlsBridge,
  bridgeEndMode,
  nativeRelayAllowed,
  useTlsBridge,
} from '../../../../src/proxy/tls/tls-bridge.js';

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

describe('TlsBridge: what the session hears, and how the bridge is ended (once)', () => {
  /** A NativeRelay stand-in that records bridge() and end() (TlsBridge calls nothing else). */
  function fakeRelay(): { relay: NativeRelay; ends: string[]; listener: () => TlsBridgeListener } {
    const ends: string[] = [];
    let heard: TlsBridgeListener | undefined;
    const relay = {
      bridge: (_c: Socket, _ctx: NativeTlsContext, _r: Buffer, l: TlsBridgeListener) => {
        heard = l;
        return { id: 7, plain: {} as Socket };
      },
      end: (id: number, mode: string) => {
        ends.push(`${id} ${mode}`);
        return 'not told';
      },
    } as unknown as NativeRelay;
    return { relay, ends, listener: () => heard! };
  }
  const cases: Array<[string, (l: TlsBridgeListener, b: TlsBridge) => void, string[], string[]]> = [
    ['handshake done: the session starts, the bridge relays on', (l) => l.onTlsReady('postgresql', false), ['ready postgresql'], []],
    ['handshake failed: the session hears why, the bridge is cut', (l) => l.onTlsFailed('bad'), ['failed bad'], ['7 cut']],
    ['the client went: cut', (l) => { l.onTlsReady(false, false); l.onRelayReport({ side: 'client', error: false }); }, ['ready false'], ['7 cut']],
    ['the session ended its plain end: finish (the FATAL reaches the client)', (l) => { l.onTlsReady(false, false); l.onRelayReport({ side: 'server', error: false }); }, ['ready false'], ['7 finish']],
    ['the session ended before the handshake did: cut now', (_l, b) => b.sessionEnded(), [], ['7 cut']],
    ['the session ended after it: left to the plain end', (l, b) => { l.onTlsReady(false, false); b.sessionEnded(); }, ['ready false'], []],
    ['ended once only', (l, b) => { l.onTlsFailed('x'); b.sessionEnded(); l.onRelayReport({ side: 'client', error: true }); }, ['failed x'], ['7 cut']],
  ]; // prettier-ignore
  for (const [name, act, wantHeard, wantEnds] of cases)
    it(name, () => {
      const f = fakeRelay();
      const heard: string[] = [];
      const started = TlsBridge.start(f.relay, {} as NativeTlsContext, {} as Socket, Buffer.alloc(0), {
        ready: (alpn) => heard.push(`ready ${alpn}`),
        failed: (e) => heard.push(`failed ${e}`),
      });
      assert.ok(started !== undefined);
      assert.equal(started.bridge.id, 7);
      act(f.listener(), started.bridge);
      assert.deepEqual(heard, wantHeard);
      assert.deepEqual(f.ends, wantEnds);
    });
});

describe('where TLS-terminated sessions are served (proxy.relay)', () => {
  const relay = (r: 'auto' | 'native' | 'js') => ({ relay: r }) as unknown as ProxyConfig['proxy'];
  it("js: Node's TLSSocket (no native contexts)", () =>
    assert.equal(nativeTlsFactory(relay('js')), undefined));
  for (const r of ['auto', 'native'] as const)
    it(`${r}: the relay threads' contexts are made`, () =>
      assert.equal(typeof nativeTlsFactory(relay(r)), 'function'));
  it('without the addon the factory makes none (Node serves TLS)', () => {
    const make = nativeTlsFactory(relay('auto'), '/nonexistent/pgfleet_relay.node')!;
    assert.equal(make({ cert: '', key: '', ca: undefined }, 'TLSv1.2'), undefined);
  });
});
