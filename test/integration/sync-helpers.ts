/**
 * Helpers for synchronous-replication tests: read the `sync` key and `synchronous_standby_names`,
 * run patronictl against any scope, wait until a cluster has settled on its sync standby.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  PATRONICTL_BIN,
  runCommand,
  waitFor,
  type CommandResult,
  type EtcdServer,
} from '../harness/index.js';
import { getJson, sql } from './agent-helpers.js';

export interface SyncKeyJson {
  leader?: string;
  sync_standby?: string | null;
  quorum?: number;
}

/** The `sync` key of `scope` (parsed), or undefined when absent. */
export async function readSyncKey(etcd: EtcdServer, scope: string): Promise<SyncKeyJson | undefined> {
  const res = await runCommand(
    'etcdctl',
    ['--endpoints', etcd.endpoint, 'get', '--print-value-only', `/service/${scope}/sync`],
    { env: { ETCDCTL_API: '3' }, timeoutMs: 5_000 },
  );
  const text = res.stdout.trim();
  return text === '' ? undefined : (JSON.parse(text) as SyncKeyJson);
}

/** The raw text of a key under `/service/<scope>/`, or undefined. */
export async function readKey(etcd: EtcdServer, scope: string, key: string): Promise<string | undefined> {
  const res = await runCommand(
    'etcdctl',
    ['--endpoints', etcd.endpoint, 'get', '--print-value-only', `/service/${scope}/${key}`],
    { env: { ETCDCTL_API: '3' }, timeoutMs: 5_000 },
  );
  const text = res.stdout.trim();
  return text === '' ? undefined : text;
}

export async function syncStandbyNames(pgPort: number): Promise<string> {
  const [row] = await sql<{ s: string }>(pgPort, `SELECT current_setting('synchronous_standby_names') AS s`);
  return row?.s ?? '';
}

/** A patronictl config for any scope on this etcd (written once into `dir`). */
export async function patronictlFor(
  dir: string,
  etcd: EtcdServer,
  scope: string,
): Promise<(args: string[]) => Promise<CommandResult>> {
  const file = path.join(dir, `patronictl-${scope}.yaml`);
  await writeFile(file, `scope: ${scope}\nnamespace: /service\netcd3:\n  hosts: ${etcd.endpoint}\n`);
  return async (args) => await runCommand(PATRONICTL_BIN, ['-c', file, ...args], { timeoutMs: 30_000 });
}

export interface RoleMap {
  readonly leader: string;
  readonly sync: readonly string[];
  readonly replicas: readonly string[];
}

/**
 * Waits until `/cluster` (asked at `apiPort`) shows one leader, `syncCount` members in role
 * `role` and the rest replicas, every one running or streaming.
 */
export async function waitForSyncRoles(
  apiPort: number,
  syncCount: number,
  timeoutMs: number,
  role: 'sync_standby' | 'quorum_standby' = 'sync_standby',
): Promise<RoleMap> {
  return await waitFor(
    `/cluster on :${apiPort} with ${syncCount} ${role}`,
    async () => {
      const { body } = await getJson<{ members: { name: string; role: string; state: string }[] }>(
        apiPort,
        '/cluster',
      );
      const leader = body.members.find((m) => m.role === 'leader');
      const sync = body.members.filter((m) => m.role === role).map((m) => m.name);
      const replicas = body.members.filter((m) => m.role === 'replica').map((m) => m.name);
      const ok = body.members.every((m) => ['running', 'streaming'].includes(m.state));
      return leader && ok && sync.length === syncCount ? { leader: leader.name, sync, replicas } : false;
    },
    timeoutMs,
    250,
  );
}
