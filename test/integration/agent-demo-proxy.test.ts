/**
 * The demo (3 etcd members + 3 agents + the proxy) on `--port-base N`: the write port is N and
 * the read port N+1; the proxy routes a pgfleet cluster — writes reach the leader, reads the
 * replicas; the printed `pgfleet ctl -c …` line works as printed; SIGINT stops everything, leaving
 * no process or temp dir.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  cleanupAll,
  isPortOpen,
  makeTempDir,
  runCommand,
  spawnProcess,
  waitFor,
  type ManagedProcess,
} from '../harness/index.js';

/**
 * A base port whose 40 ports are all free (the demo uses base .. base+32), below the kernel's
 * ephemeral range: a port checked free there can be taken by any outgoing connection before the
 * demo binds it (this test once failed so: "ports in use").
 */
async function freeBase(): Promise<number> {
  const ephemeralFrom = Number(
    readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
  );
  const top = Math.min(Number.isFinite(ephemeralFrom) ? ephemeralFrom : 32_768, 50_000) - 40;
  for (let tries = 0; tries < 50; tries++) {
    const base = 10_000 + Math.floor(Math.random() * (top - 10_000));
    let free = true;
    for (let p = base; p < base + 40 && free; p++) free = !(await isPortOpen(p, '127.0.0.1', 200));
    if (free) return base;
  }
  throw new Error('no free range of 40 ports');
}

const ROOT = path.resolve(import.meta.dirname, '..', '..');

async function query(url: string, text: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000, query_timeout: 5_000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return (await c.query(text)).rows as Record<string, unknown>[];
  } finally {
    await c.end().catch(() => undefined);
  }
}

void describe('demo: proxy in front of pgfleet agents', { timeout: 150_000 }, () => {
  let demo: ManagedProcess;
  let writeUrl: string;
  let readUrl: string;
  let demoDir: string;
  let base: number;
  let ctlLine: string;

  before(async () => {
    const dir = await makeTempDir('demo-test');
    base = await freeBase();
    demo = await spawnProcess({
      name: 'demo',
      command: process.execPath,
      args: ['--import', 'tsx', path.join(ROOT, 'src/cli/demo.ts'), '--port-base', String(base)],
      logFile: path.join(dir, 'demo.log'),
      cwd: ROOT,
    });
    const out = await waitFor(
      'the demo banner',
      () => {
        const text = readFileSync(demo.logFile, 'utf8');
        if (/pgfleet demo: (?!bootstrapping|stopping|stopped)/.test(text)) throw new Error(text);
        return text.includes('Stop: press Ctrl-C') ? text : false;
      },
      120_000,
      250,
    );
    const urls = [...out.matchAll(/psql "([^"]+)"/g)].map((m) => m[1]!);
    [writeUrl, readUrl] = [urls[0]!, urls[1]!];
    demoDir = /files and logs:\s+(\S+)/.exec(out)![1]!;
    assert.match(
      out,
      new RegExp(
        `etcd members:\\s+127\\.0\\.0\\.1:${base + 10}, 127\\.0\\.0\\.1:${base + 12}, 127\\.0\\.0\\.1:${base + 14} `,
      ),
      'three etcd members',
    );
    ctlLine = /ctl:\s+(.+ ctl -c .+)$/m.exec(out)![1]!;
  });

  void it('every agent runs with its watchdog (its files beside a data directory made at start)', () => {
    for (const name of ['pg1', 'pg2', 'pg3']) {
      const text = readFileSync(path.join(demoDir, `agent-${name}.log`), 'utf8');
      assert.doesNotMatch(text, /no watchdog/, `agent ${name}`);
    }
  });

  void it('listens on the ports from --port-base', () => {
    assert.equal(new URL(writeUrl).port, String(base));
    assert.equal(new URL(readUrl).port, String(base + 1));
  });

  void it('the printed ctl line lists the three members', async () => {
    const [command, ...args] = ctlLine.split(' ');
    const res = await runCommand(command!, args);
    assert.equal(res.code, 0, res.stderr);
    for (const name of ['pg1', 'pg2', 'pg3'])
      assert.match(res.stdout, new RegExp(`\\| ${name} +\\| 127\\.0\\.0\\.1:`));
    assert.match(res.stdout, /\| Leader /);
  });
  after(cleanupAll);

  void it('routes writes to the leader and reads to the replicas', async () => {
    const [w] = await query(
      writeUrl,
      "SELECT pg_is_in_recovery() AS r, inet_server_port() AS port, current_setting('server_encoding') AS enc",
    );
    assert.equal(w?.r, false);
    assert.equal(w?.enc, 'UTF8', 'the demo cluster is made with bootstrap.initdb [{encoding: UTF8}]');
    await query(writeUrl, 'CREATE TABLE demo_t(x int); INSERT INTO demo_t VALUES (7)');
    const ports = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const [r] = await waitFor(
        'the row on a replica',
        async () => {
          const rows = await query(
            readUrl,
            'SELECT pg_is_in_recovery() AS r, inet_server_port() AS port, (SELECT count(*) FROM demo_t)::int AS n',
          );
          return rows[0]?.n === 1 ? rows : false;
        },
        10_000,
        200,
      );
      assert.equal(r?.r, true);
      ports.add(r?.port as number);
    }
    assert.ok(!ports.has(w?.port as number), 'reads never land on the primary');
  });

  void it('SIGINT stops everything and removes the temp dir', async () => {
    demo.kill('SIGINT');
    const status = await Promise.race([
      demo.exited,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000)),
    ]);
    assert.ok(status, 'demo exited within 60 s');
    assert.equal(status.code, 0);
    assert.equal(existsSync(demoDir), false);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    assert.equal(
      ps.split('\n').filter((l) => l.includes(demoDir)).length,
      0,
      'no process refers to the demo dir',
    );
  });
});
