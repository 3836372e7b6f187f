/**
 * A set of objects that each keep their own place in it: adds and deletes without a hash table,
 * for the proxy's long-lived sets of per-connection objects (a listener's sessions, a pool's
 * clients). A Map or Set there, added to and deleted from at every connection, is rehashed every
 * few connections; V8 keeps each discarded table, garbage in the old generation, pointing at its
 * successor, and young collections take such pointers for live ones: every session that ever sat
 * in the set survived them and was promoted, to be freed only by a full collection (--trace-gc
 * under pgbench -C: ~1.8 MB promoted at every scavenge). An array holds only what is in it.
 */

/** Where an item keeps its index in one set (-1: not in it). */
export interface SlotField<T> {
  get(item: T): number;
  set(item: T, slot: number): void;
}

export class SlotSet<T> {
  readonly #items: T[] = [];
  readonly #field: SlotField<T>;

  constructor(field: SlotField<T>) {
    this.#field = field;
  }

  get size(): number {
    return this.#items.length;
  }

  has(item: T): boolean {
    return this.#indexOf(item) >= 0;
  }

  add(item: T): void {
    if (this.#indexOf(item) >= 0) return;
    this.#field.set(item, this.#items.length);
    this.#items.push(item);
  }

  /** Removes `item` (the last one takes its place); false when it was not in the set. */
  delete(item: T): boolean {
    const i = this.#indexOf(item);
    if (i < 0) return false;
    const last = this.#items.pop()!;
    if (last !== item) {
      this.#items[i] = last;
      this.#field.set(last, i);
    }
    this.#field.set(item, -1);
    return true;
  }

  /** The items now (a copy: the set may change while they are visited). */
  toArray(): T[] {
    return this.#items.slice();
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.#items.slice()[Symbol.iterator]();
  }

  #indexOf(item: T): number {
    const i = this.#field.get(item);
    return i >= 0 && i < this.#items.length && this.#items[i] === item ? i : -1;
  }
}

/**
 * A Map whose values (per-connection objects) sit in an array: the Map itself holds only their
 * indices, so a discarded table keeps nothing of a connection alive (see above). Keys are kept as
 * the Map keeps them (numbers, or short strings).
 */
export class IdTable<K, V> {
  readonly #index = new Map<K, number>();
  readonly #values: (V | undefined)[] = [];
  readonly #free: number[] = [];

  get size(): number {
    return this.#index.size;
  }

  get(key: K): V | undefined {
    const i = this.#index.get(key);
    return i === undefined ? undefined : this.#values[i];
  }

  has(key: K): boolean {
    return this.#index.has(key);
  }

  set(key: K, value: V): void {
    const i = this.#index.get(key);
    if (i !== undefined) {
      this.#values[i] = value;
      return;
    }
    const slot = this.#free.pop() ?? this.#values.length;
    this.#values[slot] = value;
    this.#index.set(key, slot);
  }

  delete(key: K): boolean {
    const i = this.#index.get(key);
    if (i === undefined) return false;
    this.#index.delete(key);
    this.#values[i] = undefined;
    this.#free.push(i);
    return true;
  }

  clear(): void {
    this.#index.clear();
    this.#values.length = 0;
    this.#free.length = 0;
  }
}
