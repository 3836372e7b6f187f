/** Batched microtasks: order, callbacks deferred while flushing, a throwing callback. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { defer } from '../../../src/proxy/microtasks.js';

/** Lets every pending microtask (and the ones they queue) run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('defer', () => {
  it('runs after the current task, in the order deferred, with those deferred while running', async () => {
    const seen: string[] = [];
    defer(() => {
      seen.push('a');
      defer(() => seen.push('c'));
    });
    defer(() => seen.push('b'));
    seen.push('sync');
    await settle();
    assert.deepEqual(seen, ['sync', 'a', 'b', 'c']);
  });

  it('a callback that throws reaches uncaughtException; the ones after it still run, later ones too', async () => {
    const seen: string[] = [];
    const errors: unknown[] = [];
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', (err) => errors.push(err));
    try {
      defer(() => seen.push('before'));
      defer(() => {
        throw new Error('boom');
      });
      defer(() => seen.push('after'));
      await settle();
      defer(() => seen.push('next turn'));
      await settle();
    } finally {
      process.removeAllListeners('uncaughtException');
      for (const l of listeners) process.on('uncaughtException', l);
    }
    assert.deepEqual(seen, ['before', 'after', 'next turn']);
    assert.equal((errors[0] as Error).message, 'boom');
  });
});
