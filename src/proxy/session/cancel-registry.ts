/**
 * Backend keys learnt from BackendKeyData → the server that issued them, so a CancelRequest goes
 * to that server only. Keys are removed when their session ends.
 */
import { IdTable } from '../slot-set.js';

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
   * Key → the node, or the pooled client resolving it: an IdTable, since pooled clients are added
   * and removed at every connection (slot-set.ts says why not a Map of them).
   */
  readonly #targets = new IdTable<string, CancelTarget | CancelResolver>();

  add(key: string, target: CancelTarget | CancelResolver): void {
    this.#targets.set(key, target);
  }

  remove(key: string): void {
    this.#targets.delete(key);
  }

  has(key: string): boolean {
    return this.#targets.has(key);
  }

  lookup(key: string): CancelTarget | 'idle' | undefined {
    const t = this.#targets.get(key);
    return t !== undefined && 'cancelTarget' in t ? t.cancelTarget() : t;
  }

  get size(): number {
    return this.#targets.size;
  }
}
