/**
 * Which etcd member a daemon reads from and which it finds failing, read from its EtcdCluster at
 * scrape time: `pgfleet_<component>_etcd_member_in_use{member}` and `…_etcd_member_failing{member}`,
 * one series per known member (a handful: low cardinality).
 */
import { Gauge, type Registry } from 'prom-client';
import type { EtcdMemberStatus } from '../dcs/etcd-cluster.js';

export function registerEtcdMetrics(
  registry: Registry,
  component: 'agent' | 'proxy',
  read: () => readonly EtcdMemberStatus[],
): void {
  const gauge = (suffix: string, help: string, value: (m: EtcdMemberStatus) => boolean): void => {
    new Gauge({
      name: `pgfleet_${component}_etcd_member_${suffix}`,
      help,
      labelNames: ['member'],
      registers: [registry],
      collect() {
        this.reset();
        for (const m of read()) this.set({ member: m.url }, value(m) ? 1 : 0);
      },
    });
  };
  gauge(
    'in_use',
    '1 for the etcd member calls and the watch go to now, 0 for the other known members.',
    (m) => m.inUse,
  );
  gauge(
    'failing',
    '1 for an etcd member whose last call failed (tried last until it answers again).',
    (m) => m.failing,
  );
}
