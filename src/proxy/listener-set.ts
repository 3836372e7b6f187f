/**
 * The proxy's listeners by name, and those retired by a reload (removed, or moved to another
 * address) whose sessions are still open. A reload binds every new address first, so that one it
 * cannot bind fails the reload with nothing changed; then it swaps contexts and retires the rest.
 *
 *   listener in the new file | before                | after the reload
 *   -------------------------+-----------------------+---------------------------------------------
 *   new name                 | —                     | bound, serving
 *   same name, same address  | serving               | serving; new clients take the new context
 *   same name, new address   | serving               | new address bound; the old one stops accepting,
 *                            |                       | its sessions stay (retired)
 *   missing                  | serving               | stops accepting; retired (its sessions: the
 *                            |                       | caller applies on_unroutable)
 */
import type { ListenerConfig } from '../config/proxy-schema.js';
import { Listener } from './listener.js';
import type { SessionContext } from './session/session-context.js';
import type { Termination } from './session/session-types.js';

const sameAddress = (a: { host: string; port: number }, b: { host: string; port: number }): boolean =>
  a.host === b.host && a.port === b.port;

export class ListenerSet {
  readonly #active = new Map<string, Listener>();
  readonly #retired = new Set<Listener>();

  /** Serving listeners, in the order of the file. */
  get active(): readonly Listener[] {
    return [...this.#active.values()];
  }

  /** Every listener with something open: serving, or retired with sessions left. */
  get all(): readonly Listener[] {
    return [...this.#active.values(), ...this.#retired];
  }

  /**
   * Binds the listeners `configs` adds or moves (each with `contextFor` its context, on the socket
   * `inheritedFd` gives when a running proxy handed one over); throws
   * (after closing what it bound) when one cannot listen. Returns the commit: it swaps contexts,
   * and retires what is gone, returning the removed listeners.
   */
  async prepare(
    configs: readonly ListenerConfig[],
    contextFor: (l: ListenerConfig) => SessionContext,
    inheritedFd: (l: ListenerConfig) => number | undefined = () => undefined,
  ): Promise<() => Listener[]> {
    const bound = new Map<string, Listener>();
    try {
      for (const c of configs) {
        const now = this.#active.get(c.name);
        if (now !== undefined && sameAddress(now.listen, c.listen)) continue;
        const l = new Listener(contextFor(c), c.listen);
        bound.set(c.name, l);
        await l.start(inheritedFd(c));
      }
    } catch (err) {
      for (const l of bound.values()) l.stopAccepting();
      throw err;
    }
    return () => {
      const removed: Listener[] = [];
      const names = new Set(configs.map((c) => c.name));
      for (const [name, l] of this.#active) {
        if (names.has(name)) continue;
        removed.push(l);
        this.#retire(l);
      }
      for (const c of configs) {
        const fresh = bound.get(c.name);
        const now = this.#active.get(c.name);
        if (fresh === undefined) now?.setContext(contextFor(c));
        else if (now !== undefined) this.#retire(now);
      }
      // Rebuilt in the file's order.
      const order = new Map(configs.map((c) => [c.name, bound.get(c.name) ?? this.#active.get(c.name)!]));
      this.#active.clear();
      for (const [name, l] of order) this.#active.set(name, l);
      return removed;
    };
  }

  #retire(l: Listener): void {
    l.stopAccepting();
    this.#retired.add(l);
    void l.closed().then(() => this.#retired.delete(l));
  }

  get sessionCount(): number {
    return this.all.reduce((n, l) => n + l.sessionCount, 0);
  }

  stopAccepting(): void {
    for (const l of this.all) l.stopAccepting();
  }

  drain(t: Termination): void {
    for (const l of this.all) l.drain(t);
  }

  terminateAll(t: Termination): void {
    for (const l of this.all) l.terminateAll(t);
  }

  /** True when every session ended within `ms`. */
  async sessionsEnded(ms: number): Promise<boolean> {
    const ended = await Promise.all(this.all.map((l) => l.sessionsEnded(ms)));
    return ended.every(Boolean);
  }

  destroySessions(): void {
    for (const l of this.all) l.destroySessions();
  }

  async closed(): Promise<void> {
    await Promise.all(this.all.map((l) => l.closed()));
  }
}
