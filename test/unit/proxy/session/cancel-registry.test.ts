/** Where a CancelRequest's key leads: keys learnt from servers, keys the proxy issued. Table. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  CancelRegistry,
  cancelKey,
  type CancelResolver,
  type CancelTarget,
} from '../../../../src/proxy/session/cancel-registry.js';

const node1: CancelTarget = { host: '127.0.0.1', port: 5432, name: 'n1' };
const node2: CancelTarget = { host: '127.0.0.1', port: 5433, name: 'n2' };
const serving: CancelTarget = { host: '127.0.0.1', port: 5434, name: 'n3', packet: Buffer.from('x') };
/** A pooled client holding a server now (or none), its key's secret `cancelSecret`. */
const client = (cancelSecret: number, target: CancelTarget | 'idle'): CancelResolver => ({
  cancelSecret,
  cancelTarget: () => target,
});
const secret = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

describe('cancel registry', () => {
  it('a key leads to the server that issued it, or to the server serving the pooled client now', () => {
    const r = new CancelRegistry();
    r.add(cancelKey(100, secret(7)), node1);
    r.add(cancelKey(100, Buffer.from('long secret of protocol 3.2')), node2);
    assert.equal(r.issue(100, client(-5, serving)), true, 'an issued processId may equal a server pid');
    assert.equal(r.issue(200, client(9, 'idle')), true);
    assert.equal(r.issue(200, client(10, serving)), false, 'one issued key per processId');
    const table: [string, number, Buffer, CancelTarget | 'idle' | undefined][] = [
      ['learnt', 100, secret(7), node1],
      ['learnt, a long secret', 100, Buffer.from('long secret of protocol 3.2'), node2],
      ['issued, negative secret', 100, secret(-5), serving],
      ['issued to a client holding no server', 200, secret(9), 'idle'],
      ['issued processId, wrong secret', 200, secret(10), undefined],
      ['issued processId, secret of another length', 200, Buffer.from([0, 0, 0, 9, 0]), undefined],
      ['unknown', 300, secret(7), undefined],
    ];
    for (const [name, pid, key, want] of table) assert.equal(r.lookup(pid, key), want, name);
    assert.equal(r.size, 4);
  });

  it('keys go when their session ends; another client cannot withdraw a key', () => {
    const r = new CancelRegistry();
    r.add(cancelKey(1, secret(2)), node1);
    const busy = client(4, serving);
    r.issue(3, busy);
    r.withdraw(3, client(4, 'idle'));
    assert.equal(r.lookup(3, secret(4)), serving, 'still the first client');
    r.withdraw(3, busy);
    r.remove(cancelKey(1, secret(2)));
    assert.equal(r.lookup(3, secret(4)), undefined);
    assert.equal(r.lookup(1, secret(2)), undefined);
    assert.equal(r.size, 0);
    assert.equal(r.issue(3, client(5, 'idle')), true, 'the processId is free again');
  });
});
