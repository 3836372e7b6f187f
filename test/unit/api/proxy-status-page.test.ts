import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { renderStatusPage } from '../../../src/api/proxy-status-page.js';
import type { ProxyStatus } from '../../../src/proxy/proxy-status.js';

/** The fields the page reads; the rest of /status does not matter to it. */
function status(over: Partial<ProxyStatus> = {}): ProxyStatus {
  return {
    cluster: 'c',
    state: 'running',
    generation: 3,
    relay: 'js',
    dcs: { connected: true, member: 'http://127.0.0.1:2379' },
    leader: 'pg1',
    listeners: {},
    members: {},
    sessions: {},
    clientConnections: 0,
    switchoverHold: null,
    ...over,
  } as unknown as ProxyStatus;
}

describe('proxy status page', () => {
  it('says nothing of a switchover when none is pending', () => {
    assert.doesNotMatch(renderStatusPage(status()), /switchover/);
  });

  it('shows a pending switchover: the leader left and how long pooled clients have been held', () => {
    const page = renderStatusPage(status({ switchoverHold: { from: 'pg1', heldForMs: 420, capMs: 5_000 } }));
    assert.match(
      page,
      /switchover pending away from pg1<\/b>: transaction-pooled clients held for 420 ms \(cap 5000 ms\)/,
    );
  });
});
