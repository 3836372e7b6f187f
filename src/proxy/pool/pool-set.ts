/**
 * Every pooled listener's PoolManager, by listener name, kept across reloads (a reload gives a pool
 * its listener's new context and limits; open server connections stay), closed when its listener
 * goes or stops pooling.
 */
import { randomBytes } from 'node:crypto';
import type { ListenerConfig } from '../../config/proxy-schema.js';
import type { Logger } from '../../observability/logger.js';
import type { SessionContext } from '../session/session-context.js';
import type { SessionWorld } from '../session/session-types.js';
import { PoolManager, type PoolStatus } from './pool-manager.js';
import type { PoolLimits } from './pool-rules.js';
import { decideCommand, type ListenerAdminState, type ListenerCommand } from './listener-commands.js';

export function poolLimits(l: ListenerConfig): PoolLimits {
  return {
    poolSize: l.pool_size,
    minPoolSize: l.min_pool_size,
    reservePool: l.reserve_pool,
    reservePoolTimeoutMs: l.reserve_pool_timeout,
    serverIdleTimeoutMs: l.server_idle_timeout,
    serverLifetimeMs: l.server_lifetime,
  };
}

export class PoolSet {
  readonly #pools = new Map<string, PoolManager>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** `ctx`, with the listener's pool when it pools (made, or given the new context and limits). */
  contextWithPool(listener: ListenerConfig, ctx: SessionContext): SessionContext {
    const existing = this.#pools.get(listener.name);
    if (listener.pool_mode === 'none') {
      if (existing !== undefined) {
        existing.close();
        this.#pools.delete(listener.name);
      }
      return ctx;
    }
    const limits = poolLimits(listener);
    let pool = existing;
    if (pool === undefined) {
      pool = new PoolManager(ctx, listener.pool_mode, limits, this.#log.child({ listener: listener.name }));
      this.#pools.set(listener.name, pool);
    } else pool.configure(ctx, listener.pool_mode, limits);
    const names = pool.names;
    // The context's world (one object, its time set per event) seen through one that adds the
    // pool's names: made once, not per event.
    const base = ctx.world(0);
    const p = pool;
    const listenerDisabled = (): boolean => p.state.disabled;
    const world: SessionWorld = Object.create(base, {
      statementNames: { value: names },
      randomBytes: { value: randomBytes },
      listenerDisabled: { value: listenerDisabled },
    }) as SessionWorld;
    return {
      ...ctx,
      pool,
      world: (now) => {
        const w = ctx.world(now);
        // (A context whose world is made per event, as tests' are: added to that one.)
        return w === base ? world : { ...w, statementNames: names, randomBytes, listenerDisabled };
      },
    };
  }

  /** Closes the pools of listeners no longer configured. */
  keepOnly(listeners: readonly ListenerConfig[]): void {
    for (const [name, pool] of this.#pools) {
      if (listeners.some((l) => l.name === name && l.pool_mode !== 'none')) continue;
      pool.close();
      this.#pools.delete(name);
    }
  }

  /** The routes or the switchover hold changed: waiting clients may be lent a server now. */
  wakeAll(): void {
    for (const p of this.#pools.values()) p.wake();
  }

  get(listener: string): PoolManager | undefined {
    return this.#pools.get(listener);
  }

  /** listener → its pools. */
  status(): Record<string, PoolStatus[]> {
    return Object.fromEntries([...this.#pools].map(([name, p]) => [name, p.status()]));
  }

  servers(): Record<string, ReturnType<PoolManager['servers']>> {
    return Object.fromEntries([...this.#pools].map(([name, p]) => [name, p.servers()]));
  }

  clients(): Record<string, ReturnType<PoolManager['clients']>> {
    return Object.fromEntries([...this.#pools].map(([name, p]) => [name, p.clients()]));
  }

  /** The pooled listener's PAUSE / DISABLE state; undefined: no pooled listener of that name. */
  state(listener: string): ListenerAdminState | undefined {
    return this.#pools.get(listener)?.state;
  }

  /**
   * An operator command on a pooled listener (listener-commands.ts): decided, then `endClients`
   * ends its client sessions when the command drops them (KILL: before its servers go, so that
   * each client is told 57P01, not that its server was lost), then the pool acts. false: no
   * pooled listener of that name.
   */
  command(listener: string, command: ListenerCommand, endClients: (listener: string) => void): boolean {
    const p = this.#pools.get(listener);
    if (p === undefined) return false;
    const verdict = decideCommand(p.state, command);
    if (verdict.dropClients) endClients(listener);
    p.apply(verdict);
    this.#log.info({ listener, command, ...verdict.state }, `pool: ${command.toUpperCase()}`);
    return true;
  }

  close(): void {
    for (const p of this.#pools.values()) p.close();
    this.#pools.clear();
  }
}
