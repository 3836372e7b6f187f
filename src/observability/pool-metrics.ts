/**
 * The pooled listeners' pools, read at scrape time (nothing on the per-transaction path):
 * - `pgfleet_proxy_pool_clients{listener, database, user, state}`: logged-in clients holding a
 *   server (`active`), waiting for one (`waiting`), or between transactions (`idle`);
 * - `pgfleet_proxy_pool_servers{listener, node, state}`: server connections lent (`active`),
 *   free (`idle`), or logging in (`login`, node "");
 * - `pgfleet_proxy_pool_clients_held{listener, database, user}`: of the waiting clients, those held
 *   by a pending switchover (they wait for the new primary);
 * - `pgfleet_proxy_pool_max_wait_seconds{listener, database, user}`: the longest current wait;
 * - `pgfleet_proxy_pool_waits_total`, `pgfleet_proxy_pool_wait_seconds_total`,
 *   `pgfleet_proxy_pool_transactions_total{listener, database, user}`: servers lent, the time
 *   clients waited for them, servers given back.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { PoolStatus } from '../proxy/pool/pool-manager.js';

type Read = () => Record<string, readonly PoolStatus[]>;

export function registerPoolMetrics(registry: Registry, read: Read): void {
  const registers = [registry];
  new Gauge({
    name: 'pgfleet_proxy_pool_clients',
    help: 'Pooled clients by state: holding a server (active), waiting for one, between transactions (idle)',
    labelNames: ['listener', 'database', 'user', 'state'],
    registers,
    collect() {
      this.reset();
      for (const [listener, pools] of Object.entries(read()))
        for (const p of pools) {
          const labels = { listener, database: p.database, user: p.user };
          this.set({ ...labels, state: 'active' }, p.clientsActive);
          this.set({ ...labels, state: 'waiting' }, p.clientsWaiting);
          this.set({ ...labels, state: 'idle' }, Math.max(0, p.clients - p.clientsActive - p.clientsWaiting));
        }
    },
  });
  new Gauge({
    name: 'pgfleet_proxy_pool_clients_held',
    help: 'Pooled clients waiting because a switchover is pending away from the primary',
    labelNames: ['listener', 'database', 'user'],
    registers,
    collect() {
      this.reset();
      for (const [listener, pools] of Object.entries(read()))
        for (const p of pools) this.set({ listener, database: p.database, user: p.user }, p.clientsHeld);
    },
  });
  new Gauge({
    name: 'pgfleet_proxy_pool_servers',
    help: 'Pooled server connections by node and state (active, idle, login)',
    labelNames: ['listener', 'node', 'state'],
    registers,
    collect() {
      this.reset();
      for (const [listener, pools] of Object.entries(read())) {
        let login = 0;
        const rows = new Map<string, { active: number; idle: number }>();
        for (const p of pools) {
          login += p.serversLogin;
          for (const [node, n] of Object.entries(p.nodes)) {
            const r = rows.get(node) ?? { active: 0, idle: 0 };
            r.active += n.active;
            r.idle += n.idle;
            rows.set(node, r);
          }
        }
        for (const [node, r] of rows) {
          this.set({ listener, node, state: 'active' }, r.active);
          this.set({ listener, node, state: 'idle' }, r.idle);
        }
        this.set({ listener, node: '', state: 'login' }, login);
      }
    },
  });
  new Gauge({
    name: 'pgfleet_proxy_pool_max_wait_seconds',
    help: 'The longest wait of a pooled client for a server connection now',
    labelNames: ['listener', 'database', 'user'],
    registers,
    collect() {
      this.reset();
      for (const [listener, pools] of Object.entries(read()))
        for (const p of pools) this.set({ listener, database: p.database, user: p.user }, p.maxWaitMs / 1000);
    },
  });
  const total = (name: string, help: string, value: (p: PoolStatus) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ['listener', 'database', 'user'],
      registers,
      collect() {
        this.reset();
        for (const [listener, pools] of Object.entries(read()))
          for (const p of pools) this.inc({ listener, database: p.database, user: p.user }, value(p));
      },
    });
  };
  total('pgfleet_proxy_pool_waits_total', 'Server connections lent to pooled clients', (p) => p.totals.waits);
  total(
    'pgfleet_proxy_pool_wait_seconds_total',
    'Time pooled clients waited for a server connection',
    (p) => p.totals.waitMs / 1000,
  );
  total(
    'pgfleet_proxy_pool_transactions_total',
    'Server connections given back to their pool (transactions in transaction mode)',
    (p) => p.totals.transactions,
  );
}
