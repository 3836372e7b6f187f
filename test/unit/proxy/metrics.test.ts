import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConnectionRegistry,
  termination,
  type Terminable,
} from '../../../src/proxy/routing/connection-registry.js';
import type { Termination } from '../../../src/proxy/session/session-types.js';
import { ProxyMetrics } from '../../../src/observability/proxy-metrics.js';

class FakeSession implements Terminable {
  ended: Termination | undefined;
  terminate(t: Termination): void {
    this.ended = t;
  }
}

/** The value of one sample of the text exposition, or undefined when the series is absent. */
async function sample(m: ProxyMetrics, series: string): Promise<number | undefined> {
  const text = await m.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('proxy metrics', () => {
  it("process metrics carry prom-client's standard names, with no prefix of ours", async () => {
    const text = await new ProxyMetrics().registry.metrics();
    assert.match(text, /^process_cpu_user_seconds_total /m);
    assert.match(text, /^nodejs_heap_size_used_bytes /m);
    assert.doesNotMatch(text, /pgfleet_proxy_process_/);
  });

  it('the sessions gauge reads the registry at scrape time; a node whose sessions ended reads 0', async () => {
    const m = new ProxyMetrics();
    const registry = new ConnectionRegistry<FakeSession>();
    m.countSessionsWith(() => registry.counts());
    const a = new FakeSession();
    const b = new FakeSession();
    registry.add('primary', 'n1@h:1', 'n1', a);
    registry.add('primary', 'n1@h:1', 'n1', b);
    assert.equal(await sample(m, 'pgfleet_proxy_sessions{listener="primary",node="n1"}'), 2);
    registry.remove('primary', 'n1@h:1', a);
    registry.remove('primary', 'n1@h:1', b);
    assert.equal(await sample(m, 'pgfleet_proxy_sessions{listener="primary",node="n1"}'), 0);
    assert.equal(await sample(m, 'pgfleet_proxy_sessions{listener="primary",node="n2"}'), undefined);
  });

  it('listener metrics count by listener, reason and node', async () => {
    const m = new ProxyMetrics();
    const l = m.forListener('replicas');
    l.opened();
    l.opened();
    l.closed('client_closed');
    l.closed('client_closed');
    l.closed('node_unroutable');
    l.connected('n2', 0.002);
    m.cancelRequests.inc({ result: 'broadcast' });
    assert.equal(await sample(m, 'pgfleet_proxy_sessions_opened_total{listener="replicas"}'), 2);
    assert.equal(
      await sample(m, 'pgfleet_proxy_sessions_closed_total{listener="replicas",reason="client_closed"}'),
      2,
    );
    assert.equal(
      await sample(m, 'pgfleet_proxy_sessions_closed_total{listener="replicas",reason="node_unroutable"}'),
      1,
    );
    assert.equal(
      await sample(m, 'pgfleet_proxy_server_connect_seconds_count{listener="replicas",node="n2"}'),
      1,
    );
    assert.equal(await sample(m, 'pgfleet_proxy_cancel_requests_total{result="broadcast"}'), 1);
  });

  it('counts between scrapes add up across scrapes; connect times go out at most 256 at a time', async () => {
    const m = new ProxyMetrics();
    const l = m.forListener('rw');
    const count = 'pgfleet_proxy_server_connect_seconds_count{listener="rw",node="n1"}';
    l.opened();
    l.closed('server_closed');
    assert.equal(await sample(m, 'pgfleet_proxy_sessions_opened_total{listener="rw"}'), 1);
    l.opened();
    l.closed('server_closed');
    assert.equal(await sample(m, 'pgfleet_proxy_sessions_opened_total{listener="rw"}'), 2);
    assert.equal(
      await sample(m, 'pgfleet_proxy_sessions_closed_total{listener="rw",reason="server_closed"}'),
      2,
    );
    for (let i = 0; i < 300; i++) l.connected('n1', 0.004);
    assert.equal(l.pendingObservations, 300 - 256, 'the first 256 went out when that many waited');
    assert.equal(await sample(m, count), 300);
    assert.equal(l.pendingObservations, 0);
    assert.equal(
      await sample(m, 'pgfleet_proxy_server_connect_seconds_bucket{le="0.005",listener="rw",node="n1"}'),
      300,
    );
  });

  it('terminateNode hands every session of the node the same prepared FATAL 57P01', () => {
    const registry = new ConnectionRegistry<FakeSession>();
    const sessions = [new FakeSession(), new FakeSession(), new FakeSession()];
    for (const s of sessions) registry.add('primary', 'n1@h:1', 'n1', s);
    const other = new FakeSession();
    registry.add('primary', 'n2@h:2', 'n2', other);
    const t = termination('node_unroutable', 'server n1 no longer qualifies');
    assert.equal(registry.terminateNode('primary', 'n1@h:1', t), 3);
    for (const s of sessions) assert.equal(s.ended?.fatal, t.fatal);
    assert.equal(other.ended, undefined);
    // 'E', length, then fields: severity S/V FATAL, code C57P01, message M…
    const body = t.fatal.toString('latin1');
    assert.equal(body[0], 'E');
    assert.ok(body.includes('C57P01\0'));
    assert.ok(body.includes('Mserver n1 no longer qualifies\0'));
  });

  it('pgfleet_proxy_native_relay says which relay runs: 1 native, 0 JavaScript', async () => {
    const m = new ProxyMetrics();
    assert.equal(await sample(m, 'pgfleet_proxy_native_relay'), 0);
    m.readNativeRelayWith(() => ({ pairs: 3, threads: 2, bytesToServer: 10, bytesToClient: 20 }));
    assert.equal(await sample(m, 'pgfleet_proxy_native_relay'), 1);
    assert.equal(await sample(m, 'pgfleet_proxy_native_relay_sessions'), 3);
  });
});
