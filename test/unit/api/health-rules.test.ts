import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  healthStatus,
  HEALTH_PATHS,
  type HealthFacts,
  type HealthPath,
} from '../../../src/api/health-rules.js';

const leader: HealthFacts = {
  running: true,
  role: 'primary',
  holdsLeaderKey: true,
  lagBytes: undefined,
  tags: {},
  loopAlive: true,
  syncRole: undefined,
  dcsKnown: true,
};
const replica: HealthFacts = {
  running: true,
  role: 'replica',
  holdsLeaderKey: false,
  lagBytes: 100,
  tags: { zone: 'a' },
  loopAlive: true,
  syncRole: undefined,
  dcsKnown: true,
};
const primaryNoKey: HealthFacts = { ...leader, holdsLeaderKey: false };
const noLb: HealthFacts = { ...replica, tags: { noloadbalance: true } };
const down: HealthFacts = {
  running: false,
  role: undefined,
  holdsLeaderKey: false,
  lagBytes: undefined,
  tags: {},
  loopAlive: true,
  syncRole: undefined,
  dcsKnown: true,
};
const hung: HealthFacts = { ...replica, loopAlive: false };

// [path(+query), leader, replica, primary without key, noloadbalance replica, postgres down, loop hung]
const table: [string, ...number[]][] = [
  ['/', 200, 503, 503, 503, 503, 503],
  ['/primary', 200, 503, 503, 503, 503, 503],
  ['/master', 200, 503, 503, 503, 503, 503],
  ['/leader', 200, 503, 503, 503, 503, 503],
  ['/read-write', 200, 503, 503, 503, 503, 503],
  ['/replica', 503, 200, 503, 503, 503, 200],
  ['/replica?lag=100B', 503, 200, 503, 503, 503, 200],
  ['/replica?lag=99', 503, 503, 503, 503, 503, 503],
  ['/replica?tag_zone=a', 503, 200, 503, 503, 503, 200],
  ['/replica?tag_zone=b', 503, 503, 503, 503, 503, 503],
  ['/read-only', 200, 200, 503, 503, 503, 200],
  ['/health', 200, 200, 200, 200, 503, 200],
  ['/liveness', 200, 200, 200, 200, 200, 503],
  ['/readiness', 200, 200, 503, 200, 503, 200],
];
const columns = [leader, replica, primaryNoKey, noLb, down, hung];
const names = [
  'leader',
  'replica',
  'primary without key',
  'noloadbalance replica',
  'postgres down',
  'loop hung',
];

void describe('REST health rules (Patroni status codes)', () => {
  for (const [target, ...codes] of table) {
    void it(target, () => {
      const url = new URL(target, 'http://x');
      const p = url.pathname as HealthPath;
      assert.ok(HEALTH_PATHS.includes(p));
      columns.forEach((facts, i) => {
        assert.equal(healthStatus(p, url.searchParams, facts), codes[i], `${target} for ${names[i]}`);
      });
    });
  }
});

const syncStandby: HealthFacts = { ...replica, syncRole: 'sync' };
const quorumStandby: HealthFacts = { ...replica, syncRole: 'quorum' };
const syncNoDcs: HealthFacts = { ...syncStandby, dcsKnown: false };
const syncLagging: HealthFacts = { ...syncStandby, lagBytes: 5_000_000 };

// Patroni 4's do_GET: [path, leader, async replica, sync standby, quorum standby, sync without DCS, sync lagging]
const syncTable: [string, ...number[]][] = [
  ['/sync', 503, 503, 200, 503, 503, 200],
  ['/synchronous', 503, 503, 200, 503, 503, 200],
  ['/sync?lag=1MB', 503, 503, 200, 503, 503, 503],
  ['/sync?tag_zone=b', 503, 503, 503, 503, 503, 503],
  ['/quorum', 503, 503, 503, 200, 503, 503],
  ['/async', 503, 200, 503, 503, 503, 503],
  ['/asynchronous', 503, 200, 503, 503, 503, 503],
  ['/read-only-sync', 200, 503, 200, 503, 503, 200],
  ['/read-only-synchronous', 200, 503, 200, 503, 503, 200],
  ['/read-only-quorum', 200, 503, 503, 200, 503, 503],
  ['/standby-leader', 503, 503, 503, 503, 503, 503],
  ['/standby_leader', 503, 503, 503, 503, 503, 503],
];
const syncColumns = [leader, replica, syncStandby, quorumStandby, syncNoDcs, syncLagging];

void describe('REST sync endpoints (Patroni status codes)', () => {
  for (const [target, ...codes] of syncTable) {
    void it(target, () => {
      const url = new URL(target, 'http://x');
      const p = url.pathname as HealthPath;
      assert.ok(HEALTH_PATHS.includes(p));
      syncColumns.forEach((facts, i) => {
        assert.equal(healthStatus(p, url.searchParams, facts), codes[i], `${target} column ${i}`);
      });
    });
  }
});
