/**
 * Items 7 and 8 of issue 19 on one cluster start:
 * - etcd with client TLS (client certificates required) and authentication (`etcdctl user add`,
 *   `auth enable`): the agents, pgfleet ctl, patronictl and the proxy reach it with `cert`, `key`,
 *   `cacert`, `username` and `password`;
 * - the agents' REST APIs over HTTPS with `verify_client: required`: plain HTTP and HTTPS without
 *   a client certificate get nothing; patronictl (`ctl.certfile`) lists and restarts a member
 *   through them; pgfleet ctl restarts one; the proxy polls them (`proxy.agent_tls`) and routes;
 * - the agent's log written to `log.dir`, rotated at `log.file_size`, `log.file_num` old files kept.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import { stringify } from 'yaml';
import {
  cleanupAll,
  freePort,
  makeCertificates,
  makeTempDir,
  PATRONICTL_BIN,
  runCommand,
  startEtcd,
  startProxyProcess,
  waitFor,
  type EtcdServer,
  type ProxyProcess,
} from '../harness/index.js';
import { pgClient, sql, startAgent, type AgentNode } from './agent-helpers.js';

const SCOPE = 'tls';
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const ETCD_USER = { username: 'root', password: 'etcd-root-pw' } as const;

void describe('agent: TLS and authentication everywhere, Patroni config keys', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  let ca: string;
  let otherCa: string;
  let server: { cert: string; key: string };
  let client: { cert: string; key: string };
  let https: Agent;
  let ctlFile: string;
  let etcd3: Record<string, unknown>;
  const nodes: AgentNode[] = [];
  let proxy: ProxyProcess;
  const started = Date.now();

  const api = async (node: AgentNode, p: string, init: { method?: string; body?: string } = {}) => {
    const res = await fetch(`https://127.0.0.1:${node.apiPort}${p}`, {
      ...init,
      dispatcher: https,
      signal: AbortSignal.timeout(5_000),
    });
    return { status: res.status, text: await res.text() };
  };
  const postmasterStart = async (node: AgentNode) =>
    (await sql<{ t: string }>(node.pgPort, 'SELECT pg_postmaster_start_time()::text AS t'))[0]!.t;

  before(async () => {
    const certs = await makeCertificates();
    ca = certs.caCert;
    otherCa = certs.otherCaCert;
    server = await certs.server('pgfleet-server');
    client = await certs.client('pgfleet-client');
    https = new Agent({
      connect: { ca: readFileSync(ca), cert: readFileSync(client.cert), key: readFileSync(client.key) },
    });
    etcd = await startEtcd({ tls: { ...server, ca, client, plainPort: await freePort() } });
    const etcdctl = (...args: string[]) =>
      runCommand('/usr/bin/etcdctl', [
        `--endpoints=${etcd.clientUrl}`,
        `--cacert=${ca}`,
        `--cert=${client.cert}`,
        `--key=${client.key}`,
        ...args,
      ]);
    const added = await etcdctl('user', 'add', `${ETCD_USER.username}:${ETCD_USER.password}`);
    assert.equal(added.code, 0, added.stderr);
    const enabled = await etcdctl('auth', 'enable');
    assert.equal(enabled.code, 0, enabled.stderr);
    etcd3 = {
      protocol: 'https',
      cacert: ca,
      cert: client.cert,
      key: client.key,
      username: ETCD_USER.username,
      password: ETCD_USER.password,
    };
    const logs = await makeTempDir('agent-logs', 'postgres');
    for (const name of ['t1', 't2']) {
      const node = await startAgent(
        {
          etcd,
          scope: SCOPE,
          configOverlay: {
            etcd3,
            // t1 requires a client certificate for everything, t2 only for unsafe requests.
            restapi: {
              certfile: server.cert,
              keyfile: server.key,
              cafile: ca,
              verify_client: name === 't1' ? 'required' : 'optional',
            },
            ctl: { certfile: client.cert, keyfile: client.key },
            log: { level: 'debug', dir: path.join(logs, name), file_size: 1024, file_num: 2 },
          },
        },
        name,
      );
      nodes.push(node);
      await waitFor(
        `${name} running`,
        async () => {
          if (!node.process.isRunning) throw new Error(`agent ${name} exited: ${node.process.logTail()}`);
          const st = JSON.parse((await api(node, '/patroni')).text) as { state?: string; role?: string };
          return st.state === 'running' ? st : undefined;
        },
        40_000,
        250,
      );
    }
    ctlFile = path.join(logs, 'ctl.yaml');
    await writeFile(
      ctlFile,
      stringify({
        scope: SCOPE,
        namespace: '/service',
        // etcd's plain listener: Patroni's etcd3 client goes through etcd's gRPC gateway, which
        // refuses a client certificate while authentication is on (see harness/etcd.ts).
        // use_proxies: not etcd's member list, which names the TLS listener.
        etcd3: { hosts: [etcd.plainEndpoint], use_proxies: true, ...ETCD_USER },
        ctl: { cacert: ca, certfile: client.cert, keyfile: client.key },
      }),
    );
  });
  after(async () => {
    process.stdout.write(`# integration wall time: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    await https?.close();
    await cleanupAll();
  });

  void it('serves the REST API over HTTPS only, to clients with a certificate, and publishes https', async () => {
    const [t1] = nodes;
    await assert.rejects(
      fetch(`http://127.0.0.1:${t1!.apiPort}/patroni`, { signal: AbortSignal.timeout(3_000) }),
    );
    const noCert = new Agent({ connect: { ca: readFileSync(ca) } });
    const bare = (node: AgentNode, p: string, method = 'GET') =>
      fetch(`https://127.0.0.1:${node.apiPort}${p}`, {
        method,
        dispatcher: noCert,
        signal: AbortSignal.timeout(3_000),
      });
    await assert.rejects(bare(t1!, '/patroni'));
    // verify_client: optional — reads without a certificate, no unsafe request (Patroni's 403).
    const t2 = nodes[1]!;
    assert.equal((await bare(t2, '/patroni')).status, 200);
    const refused = await bare(t2, '/restart', 'POST');
    assert.deepEqual([refused.status, await refused.text()], [403, 'client certificate required']);
    await noCert.close();
    // /cluster answers from t1's last view: t2's member key may be one cycle away.
    const want = nodes.map((n) => `https://127.0.0.1:${n.apiPort}/patroni`).sort();
    let seen: string[] = [];
    await waitFor(
      'both api_urls in /cluster',
      async () => {
        const cluster = JSON.parse((await api(t1!, '/cluster')).text) as { members: { api_url: string }[] };
        seen = cluster.members.map((m) => m.api_url).sort();
        return JSON.stringify(seen) === JSON.stringify(want);
      },
      10_000,
      200,
    ).catch(() => undefined);
    assert.deepEqual(seen, want);
  });

  void it('patronictl lists the cluster through etcd with TLS and auth, and restarts a member over HTTPS', async () => {
    const list = await runCommand(PATRONICTL_BIN, ['-c', ctlFile, 'list', SCOPE]);
    assert.equal(list.code, 0, list.stderr);
    for (const n of nodes) assert.match(list.stdout, new RegExp(`\\| ${n.name} `));
    const t2 = nodes[1]!;
    const before = await postmasterStart(t2);
    const restart = await runCommand(PATRONICTL_BIN, ['-c', ctlFile, 'restart', SCOPE, t2.name, '--force']);
    assert.equal(restart.code, 0, `${restart.stdout}\n${restart.stderr}`);
    assert.match(restart.stdout, /Success: restart on member t2/);
    assert.notEqual(await postmasterStart(t2), before);
  });

  void it('pgfleet ctl restarts a member over HTTPS', async () => {
    const t2 = nodes[1]!;
    const before = await postmasterStart(t2);
    // pgfleet ctl through etcd's TLS listener, with the client certificate and the credentials.
    const ours = path.join(path.dirname(ctlFile), 'pgfleet-ctl.yaml');
    await writeFile(
      ours,
      stringify({
        scope: SCOPE,
        etcd3: { hosts: [etcd.endpoint], ...etcd3 },
        ctl: { cacert: ca, certfile: client.cert, keyfile: client.key },
      }),
    );
    const res = await runCommand(
      process.execPath,
      [path.join(ROOT, 'bin', 'pgfleet'), 'ctl', '-c', ours, 'restart', SCOPE, t2.name, '--force'],
      { env: { PGFLEET_FROM_SOURCE: '1' } },
    );
    assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
    assert.notEqual(await postmasterStart(t2), before);
  });

  void it('pgfleet ctl reaches etcd with a client certificate and no cacert (the system CAs)', async () => {
    const file = path.join(path.dirname(ctlFile), 'no-cacert.yaml');
    const { cacert: _omitted, ...withoutCa } = etcd3;
    await writeFile(file, stringify({ scope: SCOPE, etcd3: { hosts: [etcd.endpoint], ...withoutCa } }));
    const run = (env: Record<string, string>) =>
      runCommand(process.execPath, [path.join(ROOT, 'bin', 'pgfleet'), 'ctl', '-c', file, 'list'], {
        env: { PGFLEET_FROM_SOURCE: '1', ...env },
        timeoutMs: 20_000,
      });
    // The test CA is a system CA for this process only.
    const trusted = await run({ NODE_EXTRA_CA_CERTS: ca });
    assert.equal(trusted.code, 0, `${trusted.stdout}\n${trusted.stderr}`);
    assert.match(trusted.stdout, /t1/);
    // A CA that did not sign etcd's certificate: an error that says so, not a silent exit.
    await writeFile(
      file,
      stringify({ scope: SCOPE, etcd3: { hosts: [etcd.endpoint], ...etcd3, cacert: otherCa } }),
    );
    const wrong = await run({});
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /pgfleet ctl: etcd get \S+ failed on every member/);
  });

  void it('the proxy polls the agents over HTTPS (proxy.agent_tls) and routes to the primary', async () => {
    proxy = await startProxyProcess({
      scope: SCOPE,
      etcdEndpoint: etcd.endpoint,
      etcd3,
      proxy: { agent_tls: { ca_file: ca, cert_file: client.cert, key_file: client.key } },
      listeners: [{ name: 'rw', role: 'primary' }],
    });
    await waitFor(
      'a write through the proxy',
      async () => {
        const c = pgClient(proxy.ports.rw!);
        try {
          await c.connect();
          return (await c.query('SELECT NOT pg_is_in_recovery() AS w')).rows[0]?.w === true;
        } finally {
          await c.end().catch(() => undefined);
        }
      },
      20_000,
      250,
    );
  });

  void it('writes the agent log to log.dir, rotated by size, file_num old files kept', async () => {
    const dir = path.join(path.dirname(ctlFile), 't1');
    const files = await waitFor(
      'the agent log rotated',
      async () => {
        const f = readdirSync(dir).filter((n) => n.startsWith('pgfleet-agent'));
        return f.length >= 3 ? f : undefined;
      },
      20_000,
      250,
    );
    assert.ok(files.length <= 3, `at most file_num (2) old files and the current one: ${files.join(', ')}`);
    const first = readFileSync(path.join(dir, files.sort()[0]!), 'utf8').split('\n')[0]!;
    assert.equal((JSON.parse(first) as { name?: string }).name, 'agent t1');
    assert.equal(readFileSync(nodes[0]!.logFile, 'utf8').includes('"level"'), false, 'nothing on stdout');
  });
});
