import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_HELD_BYTES,
  StartupGate,
  roleMatches,
  type GateVerdict,
} from '../../../../src/proxy/session/server-replies.js';
import { buffers, splits } from '../../protocol/buffers.js';

const V3_0 = 196608;
const V3_2 = 196610;

const after = (hotStandby: string | undefined, extra: Buffer = Buffer.alloc(0)): Buffer =>
  Buffer.concat([
    buffers.authenticationOk(),
    buffers.parameterStatus('server_version', '15.18'),
    ...(hotStandby === undefined ? [] : [buffers.parameterStatus('in_hot_standby', hotStandby)]),
    buffers.backendKeyData(4242, Buffer.from([1, 2, 3, 4])),
    buffers.readyForQuery('I'),
    extra,
  ]);

function feed(gate: StartupGate, ...chunks: Buffer[]): GateVerdict[] {
  return chunks.map((c) => gate.push(c));
}

describe('roleMatches', () => {
  const cases: [role: 'primary' | 'replica', hs: string | undefined, ok: boolean][] = [
    ['primary', 'off', true],
    ['primary', 'on', false],
    ['primary', undefined, false],
    ['replica', 'on', true],
    ['replica', undefined, true],
    ['replica', 'off', false],
  ];
  for (const [role, hs, ok] of cases)
    it(`${role} with in_hot_standby=${hs}: ${ok}`, () => assert.equal(roleMatches(role, hs), ok));
});

describe('StartupGate', () => {
  it('holds everything until ReadyForQuery, then is ready with the bytes after it', () => {
    const tail = buffers.commandComplete('SELECT 1');
    const bytes = after('off', tail);
    for (const [, a, b] of splits(bytes)) {
      const gate = new StartupGate('primary', V3_0);
      const verdicts = feed(gate, a, b).filter((v) => v.kind !== 'wait');
      assert.ok(verdicts.length > 0 && verdicts.every((v) => v.kind === 'ready'));
      // Held bytes, then every `rest` (what the session relays), give back the stream exactly.
      const rests = verdicts.map((v) => (v.kind === 'ready' ? v.rest : Buffer.alloc(0)));
      assert.deepEqual(Buffer.concat([...gate.drain(), ...rests]), bytes);
      assert.equal(gate.backendKey?.processId, 4242);
    }
  });

  it('says wrong_role for a hot standby on a primary listener, and for a silent server', () => {
    assert.deepEqual(new StartupGate('primary', V3_0).push(after('on')), {
      kind: 'wrong_role',
      inHotStandby: 'on',
    });
    assert.deepEqual(new StartupGate('primary', V3_0).push(after(undefined)), {
      kind: 'wrong_role',
      inHotStandby: undefined,
    });
    assert.deepEqual(new StartupGate('replica', V3_0).push(after('off')), {
      kind: 'wrong_role',
      inHotStandby: 'off',
    });
  });

  it('forwards an authentication request to the client at once', () => {
    const gate = new StartupGate('primary', V3_0);
    assert.equal(gate.push(buffers.authenticationSASL('SCRAM-SHA-256')).kind, 'forward');
    assert.equal(gate.drain().length, 1);
  });

  it('reports a refusal with its SQLSTATE', () => {
    const v = new StartupGate('replica', V3_0).push(
      buffers.errorResponse({ S: 'FATAL', C: '57P03', M: 'the database system is starting up' }),
    );
    assert.deepEqual(v, { kind: 'refused', code: '57P03', message: 'the database system is starting up' });
  });

  it('calls garbage invalid', () => {
    const junk = Buffer.concat([Buffer.from('R'), Buffer.from([0, 0, 0, 1])]);
    assert.equal(new StartupGate('primary', V3_0).push(junk).kind, 'invalid');
  });

  it('calls an ErrorResponse without a SQLSTATE invalid, not a refusal', () => {
    const v = new StartupGate('primary', V3_0).push(buffers.errorResponse({ S: 'FATAL', M: 'no code' }));
    assert.equal(v.kind, 'invalid');
  });

  it('holds at most MAX_HELD_BYTES before ReadyForQuery', () => {
    const gate = new StartupGate('primary', V3_0);
    const notice = buffers.notice('x'.repeat(60_000));
    let v: GateVerdict = { kind: 'wait' };
    for (let held = 0; held <= MAX_HELD_BYTES && v.kind === 'wait'; held += notice.length)
      v = gate.push(notice);
    assert.equal(v.kind, 'invalid');
  });

  it('accepts a NegotiateProtocolVersion down from what the client asked, not up', () => {
    const ok = new StartupGate('primary', V3_2).push(buffers.negotiateProtocolVersion(V3_0, ['_pq_.x']));
    assert.equal(ok.kind, 'wait');
    const up = new StartupGate('primary', V3_0).push(buffers.negotiateProtocolVersion(V3_2, []));
    assert.equal(up.kind, 'invalid');
    const v4 = new StartupGate('primary', V3_2).push(buffers.negotiateProtocolVersion(0x40000, []));
    assert.equal(v4.kind, 'invalid');
  });
});
