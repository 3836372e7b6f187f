/**
 * One pool: the server connections of a (database, user, client_encoding) on a pooled listener,
 * the clients logged in to it, those waiting for a server, and its totals. A record that
 * pool-manager.ts changes and pool-views.ts reads.
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
  counter: ((node: string) => number) | undefined;
  /** Closes one of its idle servers that cannot be lent any more (made once, like `counter`). */
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
}
