/**
 * Backend keys learnt from BackendKeyData → the server that issued them, so a CancelRequest goes
 * to that server only. Keys are removed when their session ends.
 */
/** Where a cancel goes: the node itself (its routing-table entry, shared by its sessions). */
export interface CancelTarget {
  readonly host: string;
  readonly port: number;
  readonly name: string;
  /** The CancelRequest to send instead of the client's (a pooled client's key is the proxy's). */
  readonly packet?: Buffer;
}

/**
 * A pooled client's key (issued by the proxy): where its cancel goes now, the server connection
 * serving it at this moment; 'idle' when none does (nothing to cancel). (The client's own object,
 * not a closure: one less allocation per idle client.)
 */
export interface CancelResolver {
  cancelTarget(): CancelTarget | 'idle';
}

export function cancelKey(processId: number, secretKey: Buffer): string {
  return `${processId}:${secretKey.toString('hex')}`;
}

export class CancelRegistry {
  /**
   * Key → the node, or the index of the pooled client resolving it: a pooled client is added and
   * removed at every connection, and a Map holding it would keep it alive through young
   * collections after its end (slot-set.ts says why); the Map holds numbers for those.
   */
  readonly #targets = new Map<string, CancelTarget | number>();
  readonly #resolvers: (CancelResolver | undefined)[] = [];
  readonly #free: number[] = [];

  add(key: string, target: CancelTarget | CancelResolver): void {
    this.remove(key);
    if (!('cancelTarget' in target)) {
      this.#targets.set(key, target);
      return;
    }
    const i = this.#free.pop() ?? this.#resolvers.length;
    this.#resolvers[i] = target;
    this.#targets.set(key, i);
  }

  remove(key: string): void {
    const t = this.#targets.get(key);
    if (t === undefined) return;
    this.#targets.delete(key);
    if (typeof t !== 'number') return;
    this.#resolvers[t] = undefined;
    this.#free.push(t);
  }

  has(key: string): boolean {
    return this.#targets.has(key);
  }

  lookup(key: string): CancelTarget | 'idle' | undefined {
    const t = this.#targets.get(key);
    return typeof t === 'number' ? this.#resolvers[t]!.cancelTarget() : t;
  }

  get size(): number {
    return this.#targets.size;
  }
}
