/**
 * The installable package, as a user gets it: `npm pack`, then `npm install -g` of the tarball
 * into a temp prefix (no dev dependency comes along). The installed `pgfleet` prints its
 * version, validates configs, runs `ctl` against a real etcd, and its proxy survives SIGHUP
 * (systemd's ExecReload) with a valid and with an invalid file. The addon is built at install
 * when a C compiler is present, and without one the install says so in one line. The systemd
 * units (and the upgradable template) pass `systemd-analyze verify` and say what the operator's
 * page says they do.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  cleanupAll,
  freePorts,
  makeTempDir,
  runChecked,
  runCommand,
  spawnProcess,
  startEtcd,
  waitFor,
  type EtcdServer,
} from '../harness/index.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;

void describe('package: npm pack + npm install -g', { timeout: 300_000 }, () => {
  let prefix: string;
  let pgfleet: string;
  let installed: string;
  let installLog: string;
  let etcd: EtcdServer;
  let dir: string;

  before(async () => {
    dir = await makeTempDir('package');
    etcd = await startEtcd();
    const packed = await runChecked('npm', ['pack', '--pack-destination', dir, '--silent'], {
      cwd: ROOT,
      timeoutMs: 180_000,
    });
    const tgz = path.join(dir, packed.stdout.trim().split('\n').pop()!);
    prefix = path.join(dir, 'prefix');
    const install = await runChecked(
      'npm',
      ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--foreground-scripts', tgz],
      { cwd: dir, timeoutMs: 180_000 },
    );
    installLog = install.stdout + install.stderr;
    pgfleet = path.join(prefix, 'bin', 'pgfleet');
    installed = path.join(prefix, 'lib', 'node_modules', 'pgfleet');
  });
  after(cleanupAll);

  void it('ships dist/ and no sources, tests or dev dependencies', () => {
    assert.ok(existsSync(path.join(installed, 'dist', 'cli', 'main.js')));
    assert.equal(existsSync(path.join(installed, 'src')), false);
    assert.equal(existsSync(path.join(installed, 'test')), false);
    const deps = readdirSync(path.join(installed, 'node_modules'));
    const scoped = (scope: string) =>
      deps.includes(scope)
        ? readdirSync(path.join(installed, 'node_modules', scope)).map((n) => `${scope}/${n}`)
        : [];
    const all = [...deps, ...scoped('@eslint'), ...scoped('@types')];
    // The dev dependencies (@types/node comes along with protobufjs, a runtime dependency).
    for (const dev of [
      'tsx',
      'typescript',
      'eslint',
      'typescript-eslint',
      '@eslint/js',
      'fast-check',
      'prettier',
      'node-api-headers',
      '@types/pg',
    ])
      assert.ok(!all.includes(dev), dev);
    assert.ok(existsSync(path.join(installed, 'systemd', 'pgfleet-agent.service')));
    assert.ok(existsSync(path.join(installed, 'dashboards', 'pgfleet.json')));
  });

  void it('builds the native relay at install when a C compiler is present', () => {
    assert.match(installLog, /pgfleet: built build\/pgfleet_relay\.node/);
    assert.ok(existsSync(path.join(installed, 'build', 'pgfleet_relay.node')));
  });

  void it('without a C compiler the install says so in one line and succeeds', async () => {
    const res = await runCommand(process.execPath, [path.join(installed, 'scripts', 'install-addon.cjs')], {
      env: { CC: '/nonexistent/cc' },
    });
    assert.equal(res.code, 0);
    assert.match(
      res.stdout,
      /^pgfleet: no C compiler \(\/nonexistent\/cc\); the proxy will relay in JavaScript/,
    );
    assert.equal(res.stdout.trim().split('\n').length, 1);
  });

  void it('--version, and --check of the example configs', async () => {
    const v = await runChecked(pgfleet, ['--version']);
    assert.equal(v.stdout.trim(), `pgfleet ${VERSION}`);
    const p = await runChecked(pgfleet, [
      'proxy',
      '-c',
      path.join(installed, 'config', 'proxy.yaml'),
      '--check',
    ]);
    assert.match(p.stdout, /configuration is valid/);
    const a = await runChecked(pgfleet, [
      'agent',
      '-c',
      path.join(installed, 'config', 'agent-pg1.yaml'),
      '--check',
    ]);
    assert.match(a.stdout, /configuration is valid/);
    const bad = await runCommand(
      pgfleet,
      ['agent', '-c', path.join(installed, 'config', 'agent-pg1.yaml'), '--check'],
      {
        env: { PGFLEET__BOOTSTRAP__DCS__TTL: '5' },
      },
    );
    assert.equal(bad.code, 2, 'an environment override is validated like the file');
    assert.match(bad.stderr, /bootstrap\.dcs\.ttl/);
  });

  void it('ctl talks to etcd: version, and an empty cluster is reported plainly', async () => {
    const file = path.join(dir, 'ctl.yaml');
    writeFileSync(file, `scope: nosuch\netcd3: { hosts: [${etcd.endpoint}] }\n`);
    const v = await runChecked(pgfleet, ['ctl', '-c', file, 'version']);
    assert.match(v.stdout, new RegExp(`pgfleet ctl version ${VERSION.replaceAll('.', '\\.')}`));
    const list = await runCommand(pgfleet, ['ctl', '-c', file, 'list']);
    assert.equal(list.code, 1);
    assert.match(list.stderr, /no members in cluster 'nosuch'/);
  });

  void it('the installed proxy survives SIGHUP, with a valid and with an invalid file', async () => {
    const [admin, port] = await freePorts(2);
    const file = path.join(dir, 'proxy.yaml');
    const yaml = (level: string) =>
      `scope: nosuch\netcd3: { hosts: [${etcd.endpoint}] }\nproxy:\n  admin: { listen: 127.0.0.1:${admin} }\n` +
      `  listeners: [{ name: rw, listen: 127.0.0.1:${port}, role: primary }]\nlog: { level: ${level} }\n`;
    writeFileSync(file, yaml('info'));
    const proxy = await spawnProcess({
      name: 'installed-proxy',
      command: pgfleet,
      args: ['proxy', '-c', file],
      logFile: path.join(dir, 'proxy.log'),
      env: { NO_COLOR: '1' },
    });
    const log = () => readFileSync(proxy.logFile, 'utf8');
    await waitFor(
      'the admin endpoint',
      async () => (await fetch(`http://127.0.0.1:${admin}/health`)).status > 0,
      20_000,
      100,
    );
    writeFileSync(file, yaml('debug'));
    proxy.kill('SIGHUP');
    // The proxy applies its file live; `log` is one of the keys that wait for a restart.
    const applied = (line: string) =>
      line.includes('reload: configuration applied') && line.includes('"restartNeeded":["log"]');
    await waitFor('the reload line', () => log().split('\n').some(applied), 5_000, 50);
    writeFileSync(file, 'proxy: [not, a, mapping\n');
    proxy.kill('SIGHUP');
    await waitFor(
      'the invalid-file line',
      () => /reload: configuration invalid; keeping the running one/.test(log()),
      5_000,
      50,
    );
    assert.equal((await fetch(`http://127.0.0.1:${admin}/health`)).status > 0, true, 'still serving');
    proxy.kill('SIGTERM');
    const status = await proxy.exited;
    assert.equal(status.code, 0);
  });

  void it('systemd units verify, reload with SIGHUP, and leave PostgreSQL to the agent', async () => {
    const units = ['pgfleet-agent.service', 'pgfleet-proxy.service', 'pgfleet-proxy@.service'].map((u) =>
      path.join(installed, 'systemd', u),
    );
    const verify = await runCommand('systemd-analyze', ['verify', ...units]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(verify.stderr.trim(), '', 'no warning');
    const [agent, proxy, upgradable] = units.map((u) => readFileSync(u, 'utf8'));
    for (const unit of [agent!, proxy!, upgradable!]) {
      assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
      assert.match(unit, /^Restart=(on-failure|always)$/m);
    }
    assert.match(agent!, /^ExecStart=\/usr\/bin\/env pgfleet agent -c \/etc\/pgfleet\/agent\.yaml$/m);
    assert.match(agent!, /^KillMode=process$/m);
    assert.match(agent!, /^User=postgres$/m);
    assert.match(proxy!, /^ExecStart=\/usr\/bin\/env pgfleet proxy -c \/etc\/pgfleet\/proxy\.yaml$/m);
    // The template's instances take turns (operations.md): each takes over from the running one,
    // and one that handed over exits 0 and must stay stopped.
    assert.match(
      upgradable!,
      /^ExecStart=\/usr\/bin\/env pgfleet proxy -c \/etc\/pgfleet\/proxy\.yaml --takeover$/m,
    );
    assert.match(upgradable!, /^Restart=on-failure$/m);
    assert.match(upgradable!, /^RuntimeDirectoryPreserve=yes$/m);
  });
});
