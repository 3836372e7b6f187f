import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Admission, type AdmissionLimits } from '../../../src/proxy/admission.js';

const limits = (maxClients: number, byListener: Record<string, number> = {}): AdmissionLimits => ({
  maxClients,
  maxStarting: 10,
  maxStartingPerSource: 10,
  maxClientsByListener: new Map(Object.entries(byListener)),
});

describe('admission', () => {
  it("a listener's max_client_connections caps that listener only; the total still caps all", () => {
    const a = new Admission(limits(3, { ro: 1 }));
    assert.equal(a.hasClientRoom('ro'), true);
    a.admit('ro');
    assert.equal(a.hasClientRoom('ro'), false, 'ro is full');
    assert.equal(a.hasClientRoom('rw'), true, 'rw has no cap of its own');
    a.admit('rw');
    a.admit('rw');
    assert.equal(a.hasClientRoom('rw'), false, 'the total (3) is reached');
    a.release('ro');
    assert.equal(a.hasClientRoom('ro'), true);
    assert.equal(a.admittedOn('ro'), 0);
    assert.equal(a.admitted, 2);
  });

  it('new limits apply to the next client; clients already admitted stay counted', () => {
    const a = new Admission(limits(10, { rw: 2 }));
    a.admit('rw');
    a.admit('rw');
    assert.equal(a.hasClientRoom('rw'), false);
    a.setLimits(limits(10, { rw: 3 }));
    assert.equal(a.hasClientRoom('rw'), true);
    a.setLimits(limits(1));
    assert.equal(a.hasClientRoom('rw'), false);
    assert.equal(a.admittedOn('rw'), 2);
  });

  it('per source: the limit counts clients in their startup; an address back at 0 is kept, the zeros dropped past 1024 spare', () => {
    const a = new Admission({ ...limits(100), maxStartingPerSource: 2 });
    assert.equal(a.enterStartup('10.0.0.1'), true);
    assert.equal(a.enterStartup('10.0.0.1'), true);
    assert.equal(a.enterStartup('10.0.0.1'), false, 'a third from one address');
    a.leaveStartup('10.0.0.1');
    assert.equal(a.enterStartup('10.0.0.1'), true, 'room again after one left');
    a.leaveStartup('10.0.0.1');
    a.leaveStartup('10.0.0.1');
    assert.equal(a.starting, 0);
    assert.equal(a.sourcesTracked, 1, 'kept at 0');
    for (let i = 0; i < 1023; i++) {
      assert.equal(a.enterStartup(`10.1.${i >> 8}.${i & 255}`), true);
      a.leaveStartup(`10.1.${i >> 8}.${i & 255}`);
    }
    assert.equal(a.sourcesTracked, 1024, '1024 spare: kept');
    assert.equal(a.enterStartup('10.2.0.1'), true);
    a.leaveStartup('10.2.0.1');
    assert.equal(a.sourcesTracked, 0, 'the zeros dropped');
    assert.equal(a.enterStartup('10.0.0.1'), true);
    assert.equal(a.enterStartup('10.0.0.1'), true);
    assert.equal(a.enterStartup('10.0.0.1'), false, 'the limit still holds after the drop');
  });
});
