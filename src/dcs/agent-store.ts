/**
 * The agent's writes to etcd, in Patroni's etcd3 layout and with Patroni's compares:
 * - one lease per agent (TTL = ttl) carries the member key and, when leader, the `leader` key;
 * - acquire the leader key with `create_revision == 0`, update/delete it comparing `value == name`;
 * - `initialize` is created with `create_revision == 0`: whoever creates it bootstraps.
 * Every call goes through EtcdCluster: it moves to another etcd member when one fails, within the
 * call's budget (retry_timeout, or the lease deadline when that is nearer), and fails with
 * ERR_DCS_UNAVAILABLE when no member answers.
 * @see patroni/dcs/etcd3.py (attempt_to_acquire_leader, _update_leader, initialize)
 */
import { performance } from 'node:perf_hooks';
import { EtcdLeaseInvalidError, type Etcd3 } from 'etcd3';
import type { ClusterView } from '../cluster/types.js';
import { PgfleetError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { ClusterWatcher } from './cluster-watcher.js';
import type { EtcdCluster } from './etcd-cluster.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { buildView } from './patroni-json.js';

export interface DcsSnapshot {
  readonly view: ClusterView;
  /** Raw values under the cluster prefix, keyed relative to it (`members/pg1`, `initialize`). */
  readonly values: ReadonlyMap<string, string>;
  /** Each key's mod revision, keyed as `values` (for compare-and-set writes such as `sync`). */
  readonly modRevisions: ReadonlyMap<string, number>;
  readonly problems: readonly string[];
}

/** What the agent needs from the DCS; an in-memory fake implements it for loop tests. */
export interface AgentDcs {
  load(): Promise<DcsSnapshot>;
  /**
   * Grants the lease when there is none, it expired or `ttlMs` changed (keys move to the new
   * lease as they are rewritten), else keeps it alive once.
   */
  refreshLease(ttlMs: number, budgetMs?: number): Promise<void>;
  publishMember(json: string): Promise<void>;
  acquireLeader(): Promise<boolean>;
  /** Rewrites the leader key under our lease if it still names us. */
  renewLeader(): Promise<boolean>;
  /** Deletes the leader key if it names us; true when it is gone afterwards (nobody holds it). */
  releaseLeader(): Promise<boolean>;
  /**
   * Creates `initialize` with `value` (Patroni's '') when absent; true only when etcd acknowledged
   * our create (we bootstrap).
   */
  claimInitialize(value: string): Promise<boolean>;
  setInitialize(value: string): Promise<void>;
  cancelInitialize(): Promise<void>;
  writeConfigIfAbsent(json: string): Promise<void>;
  /**
   * Writes the `config` key (PATCH/PUT /config): when `expected` is a mod revision, only if the
   * key still has it (Patroni's version check); false when it changed meanwhile.
   */
  writeConfig(json: string, expected: number | undefined): Promise<boolean>;
  writeStatus(json: string): Promise<void>;
  writeFailover(json: string): Promise<void>;
  writeHistory(json: string): Promise<void>;
  /** The `failsafe` key (failsafe_mode): `{member: api_url}`. */
  writeFailsafe(json: string): Promise<void>;
  deleteFailover(): Promise<void>;
  /**
   * Writes the `sync` key if its mod revision is still `expected` (undefined: if it is absent);
   * resolves with the new mod revision, or undefined when the compare failed.
   */
  writeSync(json: string, expected: number | undefined): Promise<number | undefined>;
  /** Deletes the `sync` key if its mod revision is still `expected`; true when it is gone. */
  deleteSync(expected: number | undefined): Promise<boolean>;
  /** Deletes the `failover` key only if it still holds `value`; false when it holds another value. */
  deleteFailoverIf(value: string): Promise<boolean>;
  /**
   * Calls `onChange` whenever the leader key or the failover key changes (Patroni watches the
   * leader key to wake its loop). Best effort: the loop still polls every loop_wait.
   */
  watchLeader(onChange: () => void): Promise<void>;
  /** The total time one DCS call may take, across etcd members (the agent's retry_timeout). */
  setRetryTimeout(ms: number): void;
  /** Revokes the lease: member key (and leader key if held) disappear at once. */
  revokeLease(): Promise<void>;
  /** The lease in use (etcd's int64 id as text), if any. */
  readonly leaseId: string | undefined;
  /**
   * Takes over a lease a previous agent of this node granted (it carries our leader and member
   * keys): the next refresh keeps it alive instead of granting a new one.
   */
  adoptLease(id: string, ttlMs: number): void;
  close(): void;
}

export interface EtcdAgentDcsOptions {
  readonly cluster: EtcdCluster;
  readonly namespace: string;
  readonly scope: string;
  readonly name: string;
  readonly ttlMs: number;
  readonly log: Logger;
}

/** The Lease API's answer to a keepalive for a lease that no longer exists: TTL 0 or less. */
function keepaliveExpired(ttl: string | number | undefined): boolean {
  return Number(ttl ?? 0) <= 0;
}

/**
 * One LeaseKeepAlive exchange on `client`'s member: open the stream, send the id, read the answer,
 * end the stream. The deadline cancels the stream with the attempt, so none is left open on an
 * etcd that stopped answering.
 */
async function keepaliveOnce(client: Etcd3, id: string, deadline: Date): Promise<void> {
  const stream = await client.leaseClient.leaseKeepAlive({ deadline });
  try {
    const res = await new Promise<{ TTL?: string }>((resolve, reject) => {
      stream.on('data', resolve);
      stream.on('error', reject);
      stream.on('end', () => reject(new Error('lease keepalive stream ended')));
      stream.write({ ID: id });
    });
    if (keepaliveExpired(res.TTL)) throw new EtcdLeaseInvalidError(id);
  } finally {
    stream.end();
    stream.on('error', () => undefined);
  }
}

function isLeaseInvalid(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  return cause instanceof EtcdLeaseInvalidError || err instanceof EtcdLeaseInvalidError;
}

export class EtcdAgentDcs implements AgentDcs {
  readonly keys: ClusterKeys;
  private readonly cluster: EtcdCluster;
  private currentLease: string | undefined;
  private leaseTtlSeconds = 0;
  private watcher: ClusterWatcher | undefined;
  private requestedTtlMs: number;

  constructor(private readonly opts: EtcdAgentDcsOptions) {
    this.keys = clusterKeys(opts.namespace, opts.scope);
    this.cluster = opts.cluster;
    this.requestedTtlMs = opts.ttlMs;
  }

  setRetryTimeout(ms: number): void {
    this.cluster.setBudget(ms);
  }

  get leaseId(): string | undefined {
    return this.currentLease;
  }

  adoptLease(id: string, ttlMs: number): void {
    this.currentLease = id;
    this.leaseTtlSeconds = Math.max(1, Math.round(ttlMs / 1000));
  }

  async load(): Promise<DcsSnapshot> {
    const prefix = this.keys.prefix;
    const res = await this.cluster.run(`get ${prefix}`, (c) => c.getAll().prefix(prefix).exec());
    const values = new Map<string, string>();
    const modRevisions = new Map<string, number>();
    for (const kv of res.kvs) {
      const key = kv.key.toString().slice(prefix.length);
      values.set(key, kv.value.toString());
      modRevisions.set(key, Number(kv.mod_revision));
    }
    const { view, problems } = buildView(this.opts.scope, values, Number(res.header.revision));
    return { view, values, modRevisions, problems };
  }

  private async leaseIdOrThrow(): Promise<string> {
    if (this.currentLease === undefined) await this.refreshLease();
    if (this.currentLease === undefined) throw new PgfleetError('ERR_DCS_UNAVAILABLE', 'no etcd lease');
    return this.currentLease;
  }

  async refreshLease(ttlMs: number = this.requestedTtlMs, budgetMs?: number): Promise<void> {
    this.requestedTtlMs = ttlMs;
    const ttlSeconds = Math.max(1, Math.round(ttlMs / 1000));
    // A changed ttl takes a new lease; keys move to it as they are rewritten, the old one expires.
    if (this.currentLease !== undefined && ttlSeconds !== this.leaseTtlSeconds) this.currentLease = undefined;
    const id = this.currentLease;
    if (id !== undefined) {
      try {
        await this.cluster.run('lease keepalive', (c, deadline) => keepaliveOnce(c, id, deadline), budgetMs);
        return;
      } catch (err) {
        // An expired lease needs a new grant; anything else is an outage.
        if (!isLeaseInvalid(err)) throw err;
        this.currentLease = undefined;
      }
    }
    const granted = await this.cluster.run(
      'lease grant',
      (c) => c.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 }),
      budgetMs,
    );
    this.currentLease = granted.ID;
    this.leaseTtlSeconds = ttlSeconds;
  }

  async publishMember(json: string): Promise<void> {
    const id = await this.leaseIdOrThrow();
    const key = this.keys.member(this.opts.name);
    await this.cluster.run('put member', (c) => c.put(key).value(json).lease(id).exec());
  }

  /**
   * Takes the leader key if nobody holds it. A retry on another member after a lost answer finds
   * the key already ours, under our lease: that counts as taken.
   */
  async acquireLeader(): Promise<boolean> {
    const id = await this.leaseIdOrThrow();
    const { leader } = this.keys;
    const name = this.opts.name;
    const res = await this.cluster.run('acquire leader', (c) =>
      c.if(leader, 'Create', '==', 0).then(c.put(leader).value(name).lease(id)).else(c.get(leader)).commit(),
    );
    if (res.succeeded) return true;
    const kv = res.responses[0]?.response_range?.kvs[0];
    return kv !== undefined && kv.value.toString() === name && kv.lease === id;
  }

  async renewLeader(): Promise<boolean> {
    const id = await this.leaseIdOrThrow();
    const { leader } = this.keys;
    const name = this.opts.name;
    const res = await this.cluster.run('update leader', (c) =>
      c.if(leader, 'Value', '==', name).then(c.put(leader).value(name).lease(id)).commit(),
    );
    return res.succeeded;
  }

  /** Deletes the leader key if it names us; a retry after a lost answer finds it gone: released. */
  async releaseLeader(): Promise<boolean> {
    const { leader } = this.keys;
    const name = this.opts.name;
    const res = await this.cluster.run('delete leader', (c) =>
      c.if(leader, 'Value', '==', name).then(c.delete().key(leader)).else(c.get(leader)).commit(),
    );
    return res.succeeded || res.responses[0]?.response_range?.kvs.length === 0;
  }

  async claimInitialize(value: string): Promise<boolean> {
    const key = this.keys.initialize;
    // Only a claim etcd acknowledged counts. Every member claims with the same value (Patroni's ''),
    // so a retry that finds '' cannot tell its own lost claim from another member's: it counts as
    // lost, as in Patroni (the cluster then waits for a bootstrap rather than risk two).
    const res = await this.cluster.run('create initialize', (c) =>
      c.if(key, 'Create', '==', 0).then(c.put(key).value(value)).commit(),
    );
    return res.succeeded;
  }

  async setInitialize(value: string): Promise<void> {
    const key = this.keys.initialize;
    await this.cluster.run('put initialize', (c) => c.put(key).value(value).exec());
  }

  async cancelInitialize(): Promise<void> {
    const key = this.keys.initialize;
    await this.cluster.run('delete initialize', (c) => c.delete().key(key).exec());
  }

  async writeConfigIfAbsent(json: string): Promise<void> {
    const key = this.keys.config;
    await this.cluster.run('create config', (c) =>
      c.if(key, 'Create', '==', 0).then(c.put(key).value(json)).commit(),
    );
  }

  async writeConfig(json: string, expected: number | undefined): Promise<boolean> {
    const key = this.keys.config;
    if (expected === undefined) {
      await this.put(key, json, 'put config');
      return true;
    }
    const res = await this.cluster.run('update config', (c) =>
      c.if(key, 'Mod', '==', expected).then(c.put(key).value(json)).commit(),
    );
    return res.succeeded;
  }

  private async put(key: string, value: string, op: string): Promise<void> {
    await this.cluster.run(op, (c) => c.put(key).value(value).exec());
  }

  async writeStatus(json: string): Promise<void> {
    await this.put(this.keys.status, json, 'put status');
  }

  async writeFailover(json: string): Promise<void> {
    await this.put(this.keys.failover, json, 'put failover');
  }

  async writeHistory(json: string): Promise<void> {
    await this.put(this.keys.history, json, 'put history');
  }

  async writeFailsafe(json: string): Promise<void> {
    await this.put(this.keys.failsafe, json, 'put failsafe');
  }

  async deleteFailover(): Promise<void> {
    const key = this.keys.failover;
    await this.cluster.run('delete failover', (c) => c.delete().key(key).exec());
  }

  /** Deletes the failover key if it holds `value`; gone already (a retried delete) counts as done. */
  async deleteFailoverIf(value: string): Promise<boolean> {
    const key = this.keys.failover;
    const res = await this.cluster.run('delete failover', (c) =>
      c.if(key, 'Value', '==', value).then(c.delete().key(key)).else(c.get(key)).commit(),
    );
    return res.succeeded || res.responses[0]?.response_range?.kvs.length === 0;
  }

  /**
   * Patroni's set_sync_state_value with a version: compare-and-set on the mod revision. A retry on
   * another member after a lost answer finds our own value there: that counts as written.
   */
  async writeSync(json: string, expected: number | undefined): Promise<number | undefined> {
    const key = this.keys.sync;
    const res = await this.cluster.run('put sync', (c) =>
      (expected === undefined ? c.if(key, 'Create', '==', 0) : c.if(key, 'Mod', '==', expected))
        .then(c.put(key).value(json))
        .else(c.get(key))
        .commit(),
    );
    if (res.succeeded) return Number(res.header.revision);
    const kv = res.responses[0]?.response_range?.kvs[0];
    return kv !== undefined && kv.value.toString() === json ? Number(kv.mod_revision) : undefined;
  }

  /** Deletes the `sync` key if unchanged since `expected`; gone already counts as done. */
  async deleteSync(expected: number | undefined): Promise<boolean> {
    const key = this.keys.sync;
    if (expected === undefined) {
      await this.cluster.run('delete sync', (c) => c.delete().key(key).exec());
      return true;
    }
    const res = await this.cluster.run('delete sync', (c) =>
      c.if(key, 'Mod', '==', expected).then(c.delete().key(key)).else(c.get(key)).commit(),
    );
    return res.succeeded || res.responses[0]?.response_range?.kvs.length === 0;
  }

  /**
   * Follows the cluster prefix with a ClusterWatcher (which moves to another etcd member when
   * its member fails) and wakes the loop on a new or released leader and on failover requests,
   * not on the leader's renewals.
   */
  watchLeader(onChange: () => void): Promise<void> {
    if (this.watcher) return Promise.resolve();
    const watcher = new ClusterWatcher(this.cluster, {
      scope: this.opts.scope,
      keys: this.keys,
      probeIntervalMs: 1_000,
      log: this.opts.log.child({ component: 'dcs-watch' }),
      now: () => performance.now(),
      outageMessage: 'DCS watch interrupted; the loop polls every loop_wait meanwhile',
    });
    let leader: string | undefined;
    let failover: string | undefined;
    let seen = false;
    watcher.on('view', (view, values) => {
      const nextFailover = values.get('failover');
      if (seen && (view.leader !== leader || nextFailover !== failover)) onChange();
      seen = true;
      leader = view.leader;
      failover = nextFailover;
    });
    this.watcher = watcher;
    return watcher.start();
  }

  async revokeLease(): Promise<void> {
    const id = this.currentLease;
    this.currentLease = undefined;
    if (id !== undefined)
      await this.cluster.run('lease revoke', (c) => c.leaseClient.leaseRevoke({ ID: id }));
  }

  close(): void {
    this.currentLease = undefined;
    void this.watcher?.close();
    this.watcher = undefined;
  }
}
