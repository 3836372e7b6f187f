/**
 * The agent's writes to etcd, in Patroni's etcd3 layout and with Patroni's compares:
 * - one lease per agent (TTL = ttl) carries the member key and, when leader, the `leader` key;
 * - acquire the leader key with `create_revision == 0`, update/delete it comparing `value == name`;
 * - `initialize` is created with `create_revision == 0`: whoever creates it bootstraps.
 * Every call has a deadline and fails with ERR_DCS_UNAVAILABLE (see toDcsError).
 * @see patroni/dcs/etcd3.py (attempt_to_acquire_leader, _update_leader, initialize)
 */
import { EtcdLeaseInvalidError, type Etcd3, type Lease, type Watcher } from 'etcd3';
import type { ClusterView } from '../cluster/types.js';
import { PgfleetError } from '../errors.js';
import { toDcsError } from './etcd-client.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { buildView } from './patroni-json.js';

export interface DcsSnapshot {
  readonly view: ClusterView;
  /** Raw values under the cluster prefix, keyed relative to it (`members/pg1`, `initialize`). */
  readonly values: ReadonlyMap<string, string>;
  readonly problems: readonly string[];
}

/** What the agent needs from the DCS; an in-memory fake implements it for loop tests. */
export interface AgentDcs {
  load(): Promise<DcsSnapshot>;
  /**
   * Grants the lease when there is none, it expired or `ttlMs` changed (keys move to the new
   * lease as they are rewritten), else keeps it alive once.
   */
  refreshLease(ttlMs: number): Promise<void>;
  publishMember(json: string): Promise<void>;
  acquireLeader(): Promise<boolean>;
  /** Rewrites the leader key under our lease if it still names us. */
  renewLeader(): Promise<boolean>;
  releaseLeader(): Promise<boolean>;
  /** Creates `initialize` when absent; true when we created it (we bootstrap). */
  claimInitialize(value: string): Promise<boolean>;
  setInitialize(value: string): Promise<void>;
  cancelInitialize(): Promise<void>;
  writeConfigIfAbsent(json: string): Promise<void>;
  writeStatus(json: string): Promise<void>;
  writeFailover(json: string): Promise<void>;
  writeHistory(json: string): Promise<void>;
  deleteFailover(): Promise<void>;
  /** Deletes the `failover` key only if it still holds `value`; false when it changed. */
  deleteFailoverIf(value: string): Promise<boolean>;
  /**
   * Calls `onChange` whenever the leader key or the failover key changes (Patroni watches the
   * leader key to wake its loop). Best effort: the loop still polls every loop_wait.
   */
  watchLeader(onChange: () => void): Promise<void>;
  /** Revokes the lease: member key (and leader key if held) disappear at once. */
  revokeLease(): Promise<void>;
  close(): void;
}

export interface EtcdAgentDcsOptions {
  readonly client: Etcd3;
  readonly namespace: string;
  readonly scope: string;
  readonly name: string;
  readonly ttlMs: number;
  /** Deadline on each call, including lease keepalives (which the library leaves unbounded). */
  readonly callTimeoutMs: number;
}

async function withDeadline<T>(p: Promise<T>, ms: number, op: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PgfleetError('ERR_DCS_UNAVAILABLE', `etcd ${op} timed out`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } catch (err) {
    throw toDcsError(err, op);
  } finally {
    clearTimeout(timer);
  }
}

function isLeaseInvalid(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  return cause instanceof EtcdLeaseInvalidError || err instanceof EtcdLeaseInvalidError;
}

export class EtcdAgentDcs implements AgentDcs {
  readonly keys: ClusterKeys;
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private leaseTtlSeconds = 0;
  private watcher: Watcher | undefined;
  private watchStarting = false;
  private requestedTtlMs: number;

  constructor(private readonly opts: EtcdAgentDcsOptions) {
    this.keys = clusterKeys(opts.namespace, opts.scope);
    this.requestedTtlMs = opts.ttlMs;
  }

  private deadline(): Date {
    return new Date(Date.now() + this.opts.callTimeoutMs);
  }

  private call<T>(p: Promise<T>, op: string): Promise<T> {
    return withDeadline(p, this.opts.callTimeoutMs, op);
  }

  async load(): Promise<DcsSnapshot> {
    const res = await this.call(
      this.opts.client.getAll().prefix(this.keys.prefix).exec(),
      `get ${this.keys.prefix}`,
    );
    const values = new Map<string, string>();
    for (const kv of res.kvs)
      values.set(kv.key.toString().slice(this.keys.prefix.length), kv.value.toString());
    const { view, problems } = buildView(this.opts.scope, values, Number(res.header.revision));
    return { view, values, problems };
  }

  private async leaseIdOrThrow(): Promise<string> {
    if (this.leaseId === undefined) await this.refreshLease();
    if (this.leaseId === undefined) throw new PgfleetError('ERR_DCS_UNAVAILABLE', 'no etcd lease');
    return this.leaseId;
  }

  async refreshLease(ttlMs: number = this.requestedTtlMs): Promise<void> {
    this.requestedTtlMs = ttlMs;
    const ttlSeconds = Math.max(1, Math.round(ttlMs / 1000));
    if (this.lease && ttlSeconds !== this.leaseTtlSeconds) this.dropLease();
    if (this.lease && this.leaseId !== undefined) {
      try {
        // keepaliveOnce opens a stream per call: a gRPC deadline cancels it with the call, instead
        // of leaving it open until etcd answers or the connection drops.
        await this.call(this.lease.keepaliveOnce({ deadline: this.deadline() }), 'lease keepalive');
        return;
      } catch (err) {
        // An expired lease (EtcdLeaseInvalidError) needs a new grant; anything else is an outage.
        if (!isLeaseInvalid(err)) throw err;
        this.dropLease();
      }
    }
    const lease = this.opts.client.lease(ttlSeconds, {
      autoKeepAlive: false,
    });
    lease.on('lost', () => undefined);
    try {
      this.leaseId = await this.call(lease.grant(), 'lease grant');
      this.lease = lease;
      this.leaseTtlSeconds = ttlSeconds;
    } catch (err) {
      lease.release();
      throw err;
    }
  }

  private dropLease(): void {
    this.lease?.release();
    this.lease = undefined;
    this.leaseId = undefined;
  }

  async publishMember(json: string): Promise<void> {
    const id = await this.leaseIdOrThrow();
    await this.call(
      this.opts.client.put(this.keys.member(this.opts.name)).value(json).lease(id).exec(),
      'put member',
    );
  }

  async acquireLeader(): Promise<boolean> {
    const id = await this.leaseIdOrThrow();
    const c = this.opts.client;
    const res = await this.call(
      c
        .if(this.keys.leader, 'Create', '==', 0)
        .then(c.put(this.keys.leader).value(this.opts.name).lease(id))
        .commit(),
      'acquire leader',
    );
    return res.succeeded;
  }

  async renewLeader(): Promise<boolean> {
    const id = await this.leaseIdOrThrow();
    const c = this.opts.client;
    const res = await this.call(
      c
        .if(this.keys.leader, 'Value', '==', this.opts.name)
        .then(c.put(this.keys.leader).value(this.opts.name).lease(id))
        .commit(),
      'update leader',
    );
    return res.succeeded;
  }

  async releaseLeader(): Promise<boolean> {
    const c = this.opts.client;
    const res = await this.call(
      c.if(this.keys.leader, 'Value', '==', this.opts.name).then(c.delete().key(this.keys.leader)).commit(),
      'delete leader',
    );
    return res.succeeded;
  }

  async claimInitialize(value: string): Promise<boolean> {
    const c = this.opts.client;
    const res = await this.call(
      c.if(this.keys.initialize, 'Create', '==', 0).then(c.put(this.keys.initialize).value(value)).commit(),
      'create initialize',
    );
    return res.succeeded;
  }

  async setInitialize(value: string): Promise<void> {
    await this.call(this.opts.client.put(this.keys.initialize).value(value).exec(), 'put initialize');
  }

  async cancelInitialize(): Promise<void> {
    await this.call(this.opts.client.delete().key(this.keys.initialize).exec(), 'delete initialize');
  }

  async writeConfigIfAbsent(json: string): Promise<void> {
    const c = this.opts.client;
    await this.call(
      c.if(this.keys.config, 'Create', '==', 0).then(c.put(this.keys.config).value(json)).commit(),
      'create config',
    );
  }

  async writeStatus(json: string): Promise<void> {
    await this.call(this.opts.client.put(this.keys.status).value(json).exec(), 'put status');
  }

  async writeFailover(json: string): Promise<void> {
    await this.call(this.opts.client.put(this.keys.failover).value(json).exec(), 'put failover');
  }

  async writeHistory(json: string): Promise<void> {
    await this.call(this.opts.client.put(this.keys.history).value(json).exec(), 'put history');
  }

  async deleteFailover(): Promise<void> {
    await this.call(this.opts.client.delete().key(this.keys.failover).exec(), 'delete failover');
  }

  async deleteFailoverIf(value: string): Promise<boolean> {
    const c = this.opts.client;
    const res = await this.call(
      c.if(this.keys.failover, 'Value', '==', value).then(c.delete().key(this.keys.failover)).commit(),
      'delete failover',
    );
    return res.succeeded;
  }

  async watchLeader(onChange: () => void): Promise<void> {
    if (this.watcher || this.watchStarting) return;
    this.watchStarting = true;
    const w = await this.opts.client
      .watch()
      .prefix(this.keys.prefix)
      .create()
      .catch(() => undefined)
      .finally(() => {
        this.watchStarting = false;
      });
    if (!w) return;
    // Wake on a new or released leader and on failover requests; not on the leader's renewals.
    let leader: string | undefined;
    w.on('put', (kv) => {
      const k = kv.key.toString();
      const v = kv.value.toString();
      if (k === this.keys.failover || (k === this.keys.leader && v !== leader)) onChange();
      if (k === this.keys.leader) leader = v;
    });
    w.on('delete', (kv) => {
      const k = kv.key.toString();
      if (k === this.keys.leader) leader = undefined;
      if (k === this.keys.leader || k === this.keys.failover) onChange();
    });
    w.on('error', () => undefined);
    this.watcher = w;
  }

  async revokeLease(): Promise<void> {
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    if (lease) await this.call(lease.revoke({ deadline: this.deadline() }), 'lease revoke');
  }

  close(): void {
    this.dropLease();
    void this.watcher?.cancel().catch(() => undefined);
    this.watcher = undefined;
  }
}
