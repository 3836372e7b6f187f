/**
 * Backend keys learnt from BackendKeyData → the server that issued them, so a CancelRequest goes
 * to that server only. Keys are removed when their session ends.
 */
/** Where a cancel goes: the node itself (its routing-table entry, shared by its sessions). */
export interface CancelTarget {
  readonly host: string;
  readonly port: number;
  readonly name: string;
}

export function cancelKey(processId: number, secretKey: Buffer): string {
  return `${processId}:${secretKey.toString('hex')}`;
}

export class CancelRegistry {
  readonly #targets = new Map<string, CancelTarget>();

  add(key: string, target: CancelTarget): void {
    this.#targets.set(key, target);
  }

  remove(key: string): void {
    this.#targets.delete(key);
  }

  lookup(key: string): CancelTarget | undefined {
    return this.#targets.get(key);
  }

  get size(): number {
    return this.#targets.size;
  }
}
