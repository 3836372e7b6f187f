/**
 * Callbacks for the microtask queue, batched: the first one deferred in a turn schedules one
 * microtask that runs it and every one deferred after it (those deferred meanwhile too), in order.
 * Node's queueMicrotask makes an AsyncResource and a bound function per call; under `pgbench -C`
 * the proxy defers twice per connection (a pool's pump, a native connection's 'close'). A callback
 * that throws goes on up as from queueMicrotask; the ones after it run in a new microtask.
 */
const queue: (() => void)[] = [];
let scheduled = false;

function flush(): void {
  let i = 0;
  try {
    for (; i < queue.length; i++) queue[i]!();
  } finally {
    if (i < queue.length) {
      queue.splice(0, i + 1);
      queueMicrotask(flush);
    } else {
      queue.length = 0;
      scheduled = false;
    }
  }
}

export function defer(fn: () => void): void {
  queue.push(fn);
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(flush);
}
