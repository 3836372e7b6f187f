/**
 * A DNS server for tests (dnsmasq, Debian's `dnsmasq-base`) on a free loopback port, answering
 * only the SRV records it is given, stopped at cleanup. Resolve against it with a `Resolver`
 * whose server is `address`.
 */
import path from 'node:path';
import { freePort } from './ports.js';
import { spawnProcess } from './processes.js';
import { makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';
import { Resolver } from 'node:dns/promises';

export const DNSMASQ_BIN = '/usr/sbin/dnsmasq';

export interface SrvRecord {
  /** `_etcd-client._tcp.example.test` */
  readonly name: string;
  readonly target: string;
  readonly port: number;
}

export interface DnsServer {
  /** `127.0.0.1:port`, for `Resolver.setServers`. */
  readonly address: string;
  resolver(): Resolver;
}

export async function startDnsServer(records: readonly SrvRecord[]): Promise<DnsServer> {
  const dir = await makeTempDir('dns');
  const port = await freePort();
  await spawnProcess({
    name: 'dnsmasq',
    command: DNSMASQ_BIN,
    args: [
      '--keep-in-foreground',
      '--log-facility=-',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--user=nobody',
      '--pid-file=',
      ...records.map((r) => `--srv-host=${r.name},${r.target},${r.port}`),
    ],
    logFile: path.join(dir, 'dnsmasq.log'),
    cwd: dir,
  });
  const address = `127.0.0.1:${port}`;
  const resolver = (): Resolver => {
    const r = new Resolver({ timeout: 1_000, tries: 1 });
    r.setServers([address]);
    return r;
  };
  const first = records[0];
  if (first)
    await waitFor(
      'dnsmasq to answer',
      async () => (await resolver().resolveSrv(first.name)).length > 0,
      10_000,
    );
  return { address, resolver };
}
