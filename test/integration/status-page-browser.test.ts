/**
 * The proxy's HTML status page in headless Chromium (Debian's `chromium`), in front of two
 * pgfleet agents: the rendered page names both listeners with their nodes, both members with
 * role, timeline, lag and passing health checks, the session a client holds, the DCS state, and
 * asks the browser to reload it every 2 s; a screenshot is taken (PGFLEET_SCREENSHOT_DIR=dir keeps
 * a copy).
 * Skipped outside CI when Chromium is not installed (`scripts/install-deps.sh --browser` installs
 * it; .ci/run does, and there a missing Chromium fails the test).
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { cleanupAll, makeTempDir, runCommand, startEtcd, type EtcdServer } from '../harness/index.js';
import { pgClient, startAgent, waitForHealthyCluster, type AgentNode } from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const SCOPE = 'statuspage';

/** Chromium as the machine allows it here: headless, no sandbox as root, no background traffic. */
async function chromium(dir: string, ...args: string[]): Promise<string> {
  const res = await runCommand(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
      `--user-data-dir=${path.join(dir, `profile-${Date.now()}`)}`,
      ...args,
    ],
    { timeoutMs: 60_000 },
  );
  assert.equal(res.code, 0, res.stderr);
  return res.stdout;
}

void describe(
  'proxy status page in headless Chromium',
  { skip: !existsSync(CHROMIUM) && process.env.CI !== 'true', timeout: 180_000 },
  () => {
    let etcd: EtcdServer;
    const nodes: AgentNode[] = [];
    let adminPort: number;
    let held: pg.Client;
    let dir: string;
    let leader: string;

    before(async () => {
      dir = await makeTempDir('status-page');
      etcd = await startEtcd();
      for (const name of ['s1', 's2']) nodes.push(await startAgent({ etcd, scope: SCOPE }, name));
      const cluster = await waitForHealthyCluster(nodes, 60_000);
      leader = cluster.members.find((m) => m.role === 'leader')!.name;
      const started = await startProxy(
        etcd,
        [
          { name: 'rw', role: 'primary' },
          { name: 'ro', role: 'replica', max_lag: '16MB' },
        ],
        { health_check: { interval: '500ms', timeout: '1s', fall: 2, rise: 1 } },
        SCOPE,
      );
      adminPort = started.adminPort;
      held = pgClient(started.ports.rw!);
      await held.connect();
      await held.query('SELECT 1');
    });
    after(async () => {
      await held?.end().catch(() => undefined);
      await cleanupAll();
    });

    void it('shows listeners, members, role, lag, health, sessions and the DCS, and refreshes itself', async () => {
      const url = `http://127.0.0.1:${adminPort}/`;
      let dom = '';
      const deadline = Date.now() + 20_000;
      // Health checks pass within a second or two of the proxy's start.
      while (Date.now() < deadline) {
        dom = await chromium(dir, '--dump-dom', url);
        if ((dom.match(/: up/g) ?? []).length >= 2) break;
      }
      const text = dom.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
      assert.match(dom, /<meta http-equiv="refresh" content="2">/);
      assert.match(text, new RegExp(`cluster ${SCOPE}`));
      assert.match(text, /DCS connected/);
      const other = nodes.find((n) => n.name !== leader)!;
      const me = nodes.find((n) => n.name === leader)!;
      const lagCheck = '/replica\\?lag=16777216';
      // Listeners: name, address, role, TLS, nodes, why the others are excluded, sessions.
      const rw = `rw 127\\.0\\.0\\.1:\\d+ primary disable ${leader} ${other.name}: is a replica 1 ro `;
      assert.match(text, new RegExp(rw), 'rw: the leader, one session');
      const ro = `ro 127\\.0\\.0\\.1:\\d+ replica disable ${other.name} ${leader}: is the primary 0 Members`;
      assert.match(text, new RegExp(ro));
      // Members: name (★ the leader), address, role, state, timeline, lag, health checks, sessions.
      const leaderRow = `${leader} ★ 127\\.0\\.0\\.1:${me.pgPort} primary running 1 0 /primary: up ${lagCheck}: down 1 `;
      assert.match(text, new RegExp(leaderRow));
      const replicaRow = `${other.name} 127\\.0\\.0\\.1:${other.pgPort} replica running 1 \\d+ /primary: down ${lagCheck}: up 0 `;
      assert.match(text, new RegExp(replicaRow));
      const shot = path.join(dir, 'status-page.png');
      await chromium(dir, `--screenshot=${shot}`, '--window-size=1200,700', '--hide-scrollbars', url);
      assert.ok(statSync(shot).size > 10_000, 'a screenshot with content');
      // PGFLEET_SCREENSHOT_DIR=dir keeps a copy to look at (the temp dir goes with the test).
      const keep = process.env.PGFLEET_SCREENSHOT_DIR;
      if (keep) copyFileSync(shot, path.join(keep, 'status-page.png'));
    });
  },
);
