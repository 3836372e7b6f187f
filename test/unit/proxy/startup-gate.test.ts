import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { StartupGate, roleMatches, type GateVerdict } from '../../../src/proxy/startup-gate.js';
import { buffers, splits } from '../protocol/buffers.js';

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
      const gate = new StartupGate('primary');
      const verdicts = feed(gate, a, b).filter((v) => v.kind !== 'wait');
      assert.ok(verdicts.length > 0 && verdicts.every((v) => v.kind === 'ready'));
      // Held bytes, then every `rest` (what the session relays), give back the stream exactly.
      const rests = verdicts.map((v) => (v.kind === 'ready' ? v.rest : Buffer.alloc(0)));
      assert.deepEqual(Buffer.concat([...gate.drain(), ...rests]), bytes);
      assert.equal(gate.backendKey?.processId, 4242);
    }
  });

  it('says wrong_role for a hot standby on a primary listener, and for a silent server', () => {
    assert.deepEqual(new StartupGate('primary').push(after('on')), {
      kind: 'wrong_role',
      inHotStandby: 'on',
    });
    assert.deepEqual(new StartupGate('primary').push(after(undefined)), {
      kind: 'wrong_role',
      inHotStandby: undefined,
    });
    assert.deepEqual(new StartupGate('replica').push(after('off')), {
      kind: 'wrong_role',
      inHotStandby: 'off',
    });
  });

  it('forwards an authentication request to the client at once', () => {
    const gate = new StartupGate('primary');
    assert.equal(gate.push(buffers.authenticationSASL('SCRAM-SHA-256')).kind, 'forward');
    assert.equal(gate.drain().length, 1);
  });

  it('reports a refusal with its SQLSTATE', () => {
    const v = new StartupGate('replica').push(
      buffers.errorResponse({ S: 'FATAL', C: '57P03', M: 'the database system is starting up' }),
    );
    assert.deepEqual(v, { kind: 'refused', code: '57P03', message: 'the database system is starting up' });
  });

  it('calls garbage invalid', () => {
    const junk = Buffer.concat([Buffer.from('R'), Buffer.from([0, 0, 0, 1])]);
    assert.equal(new StartupGate('primary').push(junk).kind, 'invalid');
  });
});
