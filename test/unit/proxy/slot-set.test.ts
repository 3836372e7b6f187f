import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IdTable, SlotSet } from '../../../src/proxy/slot-set.js';

interface Item {
  name: string;
  slot: number;
}
const item = (name: string): Item => ({ name, slot: -1 });
const names = (s: SlotSet<Item>): string[] =>
  s
    .toArray()
    .map((i) => i.name)
    .sort();

describe('SlotSet', () => {
  it('adds, deletes and answers has() by the slot each item keeps', () => {
    const s = new SlotSet<Item>({ get: (i) => i.slot, set: (i, n) => (i.slot = n) });
    const [a, b, c] = [item('a'), item('b'), item('c')];
    s.add(a);
    s.add(b);
    s.add(c);
    s.add(b); // twice: once
    assert.equal(s.size, 3);
    assert.equal(s.delete(a), true, 'the last one moves into its place');
    assert.equal(c.slot, 0);
    assert.equal(a.slot, -1);
    assert.equal(s.delete(a), false);
    assert.equal(s.has(a), false);
    assert.deepEqual(names(s), ['b', 'c']);
    assert.deepEqual([...s].map((i) => i.name).sort(), ['b', 'c']);
    s.delete(c);
    s.delete(b);
    assert.equal(s.size, 0);
  });

  it('an item in two sets keeps a slot per set; a stale slot is not trusted', () => {
    const x = { name: 'x', slot: -1, other: -1 };
    const one = new SlotSet<typeof x>({ get: (i) => i.slot, set: (i, n) => (i.slot = n) });
    const two = new SlotSet<typeof x>({ get: (i) => i.other, set: (i, n) => (i.other = n) });
    one.add(x);
    two.add({ ...x, name: 'y' });
    two.add(x);
    assert.equal(x.slot, 0);
    assert.equal(x.other, 1);
    const forged = { name: 'z', slot: 0, other: -1 };
    assert.equal(one.has(forged), false, 'slot 0 holds x, not z');
    assert.equal(one.delete(forged), false);
    assert.equal(one.size, 1);
  });

  it('IdTable: a Map of values kept in an array, slots reused', () => {
    const t = new IdTable<number, string>();
    t.set(1, 'a');
    t.set(2, 'b');
    t.set(1, 'A');
    assert.equal(t.get(1), 'A');
    assert.equal(t.size, 2);
    assert.equal(t.delete(1), true);
    assert.equal(t.delete(1), false);
    assert.equal(t.get(1), undefined);
    assert.equal(t.has(2), true);
    t.set(3, 'c'); // into the freed slot
    assert.equal(t.get(3), 'c');
    assert.equal(t.get(2), 'b');
    t.clear();
    assert.equal(t.size, 0);
    assert.equal(t.get(2), undefined);
  });
});
