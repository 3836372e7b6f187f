/**
 * One pool: the server connections of a (database, user, client_encoding) on a pooled listener,
 * the clients logged in to it, those waiting for a server, and its totals. A record that
 * pool-manager.ts changes (its per-node counts kept here) and pool-views.ts reads.
 */
import type { LoginCredentials } from '../auth/index.js';
import type { PooledServer, ServerBorrower } from './pooled-server.js';
import { SlotSet, type SlotField } from '../slot-set.js';

/** A client session of a pooled listener, as its pool sees it. */
export interface PoolClient extends ServerBorrower {
  /** Its place in its pool's `clients` (the pool's; -1 when not in it). */
  poolSlot: number;
  /** The pool lends `server` (delivered on a later tick than the acquire). */
  onPoolServer(server: PooledServer): void;
  onPoolFailed(fatal: Buffer): void;
}

const CLIENT_SLOT: SlotField<PoolClient> = {
  get: (c) => c.poolSlot,
  set: (c, slot) => (c.poolSlot = slot),
};

export interface Waiter {
  readonly client: PoolClient;
  readonly since: number;
}

export interface PoolTotals {
  transactions: number;
  waits: number;
  waitMs: number;
  maxWaitMs: number;
  logins: number;
  loginFailures: number;
}

/** What one pool serves: a database, a user, and the client_encoding its servers log in with. */
export interface PoolIdentity {
  readonly database: string;
  readonly user: string;
  /** '' for the server's default. */
  readonly encoding: string;
}

export const poolKey = (id: PoolIdentity): string => `${id.database}\0${id.user}\0${id.encoding}`;

export class Pool {
  readonly servers = new Set<PooledServer>();
  /** Idle servers, the most recently used last (lent first: the others may time out). */
  readonly idle: PooledServer[] = [];
  readonly waiters: Waiter[] = [];
  /** Logins under way, by node name ('' before a node is known). */
  logins = 0;
  readonly clients = new SlotSet<PoolClient>(CLIENT_SLOT);
  readonly totals: PoolTotals = {
    transactions: 0,
    waits: 0,
    waitMs: 0,
    maxWaitMs: 0,
    logins: 0,
    loginFailures: 0,
  };
  /** Nodes with logins under way. */
  readonly loginsOn = new Map<string, number>();
  /** Servers per node (of `servers`). */
  readonly serversOn = new Map<string, number>();
  /** Servers and logins under way on a node (made once: asked at every acquire of a busy pool). */
  readonly count = (node: string): number => (this.loginsOn.get(node) ?? 0) + (this.serversOn.get(node) ?? 0);
  /** Closes one of its idle servers that cannot be lent any more (made once, like `count`). */
  closeIdle: ((server: PooledServer) => void) | undefined;
  /** How its servers are logged in to (proxy.auth); undefined: the servers must ask nothing. */
  credentials: LoginCredentials | undefined;
  /** The ParameterStatus of its last logged-in server (what new clients are told). */
  parameters: readonly Buffer[] | undefined;
  readonly database: string;
  readonly user: string;
  readonly encoding: string;
  constructor(id: PoolIdentity) {
    this.database = id.database;
    this.user = id.user;
    this.encoding = id.encoding;
  }

  /** A login on `node` began (`by` 1) or ended (-1); '' (no node yet): nothing. */
  countLogin(node: string, by: number): void {
    if (node === '') return;
    const n = (this.loginsOn.get(node) ?? 0) + by;
    if (n <= 0) this.loginsOn.delete(node);
    else this.loginsOn.set(node, n);
  }

  /** A server logged in: one of its servers, idle. */
  addServer(s: PooledServer): void {
    this.servers.add(s);
    this.serversOn.set(s.node.name, (this.serversOn.get(s.node.name) ?? 0) + 1);
    this.idle.push(s);
  }

  /** `s` is none of its servers any more; false when it was none already. */
  removeServer(s: PooledServer): boolean {
    if (!this.servers.delete(s)) return false;
    const n = (this.serversOn.get(s.node.name) ?? 1) - 1;
    if (n <= 0) this.serversOn.delete(s.node.name);
    else this.serversOn.set(s.node.name, n);
    const i = this.idle.indexOf(s);
    if (i >= 0) this.idle.splice(i, 1);
    return true;
  }
}
