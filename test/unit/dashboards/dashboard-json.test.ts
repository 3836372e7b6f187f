/**
 * dashboards/pgfleet.json as Grafana loads it: unique panel ids, panels on the 24-column grid
 * without overlaps, every query with a refId and the `${datasource}` variable, the variables it
 * uses defined, and the panels the issue asks for present. (Whether every query returns data is
 * checked against a live compose cluster by test/docker/compose-cluster.test.ts.)
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { dashboardQueries } from '../../docker/dashboard-queries.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..', '..');

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { uid: string };
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
}

const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'dashboards', 'pgfleet.json'), 'utf8')) as {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string }[] };
};

void describe('Grafana dashboard', () => {
  void it('has unique ids and panels that do not overlap on the grid', () => {
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      const g = p.gridPos;
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24, `${p.title}: inside 24 columns`);
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps another panel at ${x},${y}`);
          cells.add(`${x},${y}`);
        }
    }
  });

  void it('queries the data source variable, with refIds, using only defined variables', () => {
    const vars = new Set(dashboard.templating.list.map((v) => v.name));
    for (const p of dashboard.panels.filter((x) => x.type !== 'row')) {
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      for (const t of p.targets ?? []) {
        assert.match(t.refId, /^[A-Z]$/);
        for (const m of t.expr.matchAll(/\$(\w+)/g)) {
          if (!m[1]!.startsWith('__')) assert.ok(vars.has(m[1]!), `${p.title}: $${m[1]} is defined`);
        }
      }
    }
  });

  void it('has the panels of the issue: proxy sessions, connect time, routes, DCS, health; agent role, timeline, lag, leader changes', () => {
    const exprs = dashboardQueries(dashboard)
      .map((q) => q.expr)
      .join('\n');
    for (const metric of [
      'pgfleet_proxy_sessions',
      'pgfleet_proxy_server_connect_seconds_bucket',
      'pgfleet_proxy_route_changes_total',
      'pgfleet_proxy_route_nodes',
      'pgfleet_proxy_dcs_up',
      'pgfleet_proxy_dcs_staleness_seconds',
      'pgfleet_proxy_health_check_up',
      'patroni_primary',
      'patroni_postgres_timeline',
      'patroni_xlog_replayed_location',
      'patroni_dcs_last_seen',
      'etcd_member_in_use',
    ])
      assert.ok(exprs.includes(metric), metric);
    assert.match(exprs, /changes\(patroni_primary/);
  });
});
