/**
 * Backend keys → where their CancelRequest goes: keys learnt from a server's BackendKeyData (1:1
 * sessions) go to that server only; keys the proxy issued to pooled clients go to whichever server
 * serves that client at the moment. Keys are removed when their session ends.
 *
 * Issued keys are looked up by their processId (a number: no string per pooled login, whose keys
 * are made and dropped once per connection), the proxy keeping processIds unique among the keys it
 * has out; their secret is checked on lookup.
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
  /** The secret of the key issued to it (a signed Int32 of its 4 bytes). */
  readonly cancelSecret: number;
}

export function cancelKey(processId: number, secretKey: Buffer): string {
  return `${processId}:${secretKey.toString('hex')}`;
}

export class CancelRegistry {
  /** Keys learnt from servers (1:1 sessions): an IdTable (slot-set.ts says why not a Map). */
  readonly #learnt = new IdTable<string, CancelTarget>();
  /** Keys issued to pooled clients, by processId: the client itself, whose secret is checked. */
  readonly #issued = new IdTable<number, CancelResolver>();

  /** A key learnt from a server (cancelKey's string). */
  add(key: string, target: CancelTarget): void {
    this.#learnt.set(key, target);
  }

  remove(key: string): void {
    this.#learnt.delete(key);
  }

  /**
   * Registers a key issued to `client`; false (nothing registered) when another issued key has
   * that processId: the caller draws another.
   */
  issue(processId: number, client: CancelResolver): boolean {
    if (this.#issued.has(processId)) return false;
    this.#issued.set(processId, client);
    return true;
  }

  /** The issued key `processId` is `client`'s no more. */
  withdraw(processId: number, client: CancelResolver): void {
    if (this.#issued.get(processId) === client) this.#issued.delete(processId);
  }

  lookup(processId: number, secretKey: Buffer): CancelTarget | 'idle' | undefined {
    const issued = this.#issued.get(processId);
    if (issued !== undefined && secretKey.length === 4 && secretKey.readInt32BE(0) === issued.cancelSecret)
      return issued.cancelTarget();
    return this.#learnt.get(cancelKey(processId, secretKey));
  }

  get size(): number {
    return this.#learnt.size + this.#issued.size;
  }
}
