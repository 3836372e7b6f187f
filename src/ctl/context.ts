/**
 * What every `pgfleet ctl` command works with: the ctl config, etcd (every member), a way to read a
 * cluster's keys (any scope: patronictl takes the cluster name as an argument), prompts and
 * output. Built by src/cli/ctl.ts; commands take it as their only dependency.
 */
import type { Agent } from 'undici';
import type { ClusterView } from '../cluster/types.js';
import { EtcdAgentDcs } from '../dcs/agent-store.js';
import type { EtcdCluster } from '../dcs/etcd-cluster.js';
import { clusterKeys, type ClusterKeys } from '../dcs/keys.js';
import { PgfleetError } from '../errors.js';
import type { FailoverRequest } from '../ha/types.js';
import { silentLogger } from '../observability/logger.js';
import { parseFailover } from '../ha/switchover.js';
import type { CtlConfig } from './ctl-config.js';
import type { RestAuth } from './agent-rest.js';
import type { Prompter } from './prompt.js';

export interface ClusterSnapshot {
  readonly scope: string;
  readonly view: ClusterView;
  readonly values: ReadonlyMap<string, string>;
  readonly failover: FailoverRequest | undefined;
  readonly keys: ClusterKeys;
}

export interface CtlContext {
  readonly config: CtlConfig;
  /** etcd, through whichever member answers (calls move on when one fails). */
  readonly etcd: EtcdCluster;
  readonly prompter: Prompter;
  /** Writes one line (a newline is added). */
  readonly print: (text: string) => void;
  readonly restAuth: RestAuth | undefined;
  /** TLS for agents' https api_urls: `ctl` over `restapi` settings, as patronictl. */
  readonly restDispatcher?: Agent | undefined;
  readonly restTimeoutMs: number;
  readonly stdoutIsTty: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** The scope a command acts on: its cluster-name argument, else the config's `scope`. */
export function scopeOf(ctx: CtlContext, clusterName: string | undefined): string {
  const scope = clusterName ?? ctx.config.scope;
  if (!scope) throw new PgfleetError('ERR_CTL_REJECTED', 'no cluster name given and no scope in the config');
  return scope;
}

/** The agent's DCS adapter for a scope, used only for reads and the `failover` key (no lease). */
export function openDcs(ctx: CtlContext, scope: string): EtcdAgentDcs {
  return new EtcdAgentDcs({
    cluster: ctx.etcd,
    namespace: ctx.config.namespace,
    scope,
    name: 'pgfleet-ctl',
    ttlMs: 30_000,
    log: silentLogger(),
  });
}

/** Reads every key of a cluster (no lease, no watch). */
export async function loadCluster(ctx: CtlContext, scope: string): Promise<ClusterSnapshot> {
  const dcs = openDcs(ctx, scope);
  try {
    const { view, values } = await dcs.load();
    return {
      scope,
      view,
      values,
      failover: parseFailover(values.get('failover')),
      keys: clusterKeys(ctx.config.namespace, scope),
    };
  } finally {
    dcs.close();
  }
}
