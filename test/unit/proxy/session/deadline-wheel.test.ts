import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DeadlineWheel, IDLE_TICKS, type WheelClock } from '../../../../src/proxy/session/deadline-wheel.js';

/** A clock moved by hand; `tick()` runs the wheel's interval callback if it is running. */
class ManualClock implements WheelClock {
  t = 0;
  running: (() => void) | undefined;
  starts = 0;
  now(): number {
    return this.t;
  }
  every(_ms: number, fn: () => void): { stop(): void } {
    this.running = fn;
    this.starts++;
    return { stop: () => (this.running = undefined) };
  }
  advance(ms: number): void {
    this.t += ms;
    this.running?.();
  }
}

class Item {
  fired: number[] = [];
  constructor(
    readonly clock: ManualClock,
    readonly then?: (self: Item) => void,
  ) {}
  onDeadline(): void {
    this.fired.push(this.clock.t);
    this.then?.(this);
  }
}

function setup() {
  const clock = new ManualClock();
  const errors: unknown[] = [];
  const wheel = new DeadlineWheel<Item>(10, (e) => errors.push(e), clock);
  return { clock, wheel, errors };
}

describe('DeadlineWheel', () => {
  const cases: {
    name: string;
    run: (s: ReturnType<typeof setup>, item: Item) => void;
    fired: number[];
  }[] = [
    {
      name: 'fires at the first tick at or after its deadline, once',
      run: ({ clock, wheel }, item) => {
        wheel.set(item, 25);
        for (let i = 0; i < 6; i++) clock.advance(10);
      },
      fired: [30],
    },
    {
      name: 'a cleared item never fires',
      run: ({ clock, wheel }, item) => {
        wheel.set(item, 15);
        clock.advance(10);
        wheel.clear(item);
        clock.advance(10);
        clock.advance(10);
      },
      fired: [],
    },
    {
      name: 'set again moves the deadline',
      run: ({ clock, wheel }, item) => {
        wheel.set(item, 15);
        clock.advance(10);
        wheel.set(item, 30); // due at 40
        clock.advance(10); // 20: the first deadline (15) has passed, the second not
        clock.advance(10);
        clock.advance(10);
        clock.advance(10);
      },
      fired: [40],
    },
    {
      name: 'a deadline already passed fires at the next tick',
      run: ({ clock, wheel }, item) => {
        wheel.set(item, -5);
        clock.advance(1);
      },
      fired: [1],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = setup();
      const item = new Item(s.clock);
      c.run(s, item);
      assert.deepEqual(item.fired, c.fired);
      assert.deepEqual(s.errors, []);
    });
  }

  it('many items: one cleared from the middle, the others fire in deadline order, each once', () => {
    const { clock, wheel } = setup();
    const order: string[] = [];
    const named = (name: string): Item => new Item(clock, () => order.push(name));
    const [a, b, c, d] = [named('a'), named('b'), named('c'), named('d')];
    wheel.set(a, 30);
    wheel.set(b, 10);
    wheel.set(c, 20);
    wheel.set(d, 5);
    wheel.clear(b); // d moves into its slot
    wheel.set(d, 25); // re-armed where it now sits
    assert.equal(wheel.size, 3);
    for (let i = 0; i < 4; i++) clock.advance(10);
    assert.deepEqual(order, ['c', 'd', 'a']);
    assert.equal(wheel.size, 0);
    wheel.clear(a); // not armed: nothing
    assert.equal(wheel.size, 0);
  });

  it('an item may arm itself again from onDeadline (connect, then startup timeout)', () => {
    const { clock, wheel } = setup();
    let rearmed = false;
    const item = new Item(clock, (self) => {
      if (!rearmed) wheel.set(self, 100);
      rearmed = true;
    });
    wheel.set(item, 10);
    for (let i = 0; i < 15; i++) clock.advance(10);
    assert.deepEqual(item.fired, [10, 110]);
  });

  it('runs one timer, stopped after IDLE_TICKS ticks with nothing armed', () => {
    const { clock, wheel } = setup();
    const a = new Item(clock);
    const b = new Item(clock);
    assert.equal(clock.running, undefined);
    wheel.set(a, 10);
    wheel.set(b, 30);
    assert.equal(clock.starts, 1, 'one timer for every item');
    clock.advance(30); // both fire: the first empty tick
    assert.equal(wheel.size, 0);
    for (let i = 2; i < IDLE_TICKS; i++) clock.advance(10);
    wheel.set(a, 5);
    assert.equal(clock.starts, 1, 'still running: armed again within IDLE_TICKS');
    for (let i = 0; i < IDLE_TICKS; i++) clock.advance(10);
    assert.equal(clock.running, undefined, 'stopped after IDLE_TICKS empty ticks');
    wheel.set(a, 5);
    assert.equal(clock.starts, 2);
    clock.advance(10);
    assert.equal(a.fired.length, 3);
    assert.deepEqual(b.fired, [30]);
  });

  it('one item that throws does not keep the others from firing', () => {
    const { clock, wheel, errors } = setup();
    const bad = new Item(clock, () => {
      throw new Error('boom');
    });
    const good = new Item(clock);
    wheel.set(bad, 5);
    wheel.set(good, 5);
    clock.advance(10);
    assert.deepEqual(good.fired, [10]);
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /boom/);
  });

  it('rejects a tick that is not positive', () => {
    assert.throws(() => new DeadlineWheel(0, () => undefined), /tickMs must be positive, got 0/);
  });

  it('fires on real time too', async () => {
    const wheel = new DeadlineWheel<{ onDeadline(): void }>(5, (e) => assert.fail(String(e)));
    // The wheel's timer does not keep the process alive (unref): this one does, meanwhile.
    const alive = setTimeout(() => undefined, 10_000);
    await new Promise<void>((resolve) => wheel.set({ onDeadline: resolve }, 1));
    clearTimeout(alive);
    assert.equal(wheel.size, 0);
  });
});
