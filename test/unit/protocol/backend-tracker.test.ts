import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { MessageBoundaryTracker } from '../../../src/protocol/backend-tracker.js';
import { buffers, bytewise, message, splits } from './buffers.js';

/** A result set then ReadyForQuery, with an empty-bodied message and one larger than a chunk. */
const messages = [
  buffers.parseComplete(),
  buffers.dataRow('1', 'hello'),
  buffers.dataRow('x'.repeat(300)),
  buffers.commandComplete('SELECT 2'),
  buffers.notice('hi'),
  buffers.readyForQuery('T'),
];
const stream = Buffer.concat(messages);
/** Offsets at which a message ends (0 included: nothing seen yet is a boundary). */
const boundaries = new Set<number>([0]);
messages.reduce((end, m) => (boundaries.add(end + m.length), end + m.length), 0);

function feedAll(chunks: Buffer[]): MessageBoundaryTracker {
  const tracker = new MessageBoundaryTracker();
  for (const chunk of chunks) tracker.feed(chunk);
  return tracker;
}

void describe('MessageBoundaryTracker', () => {
  void it('starts at a boundary with nothing counted', () => {
    const tracker = new MessageBoundaryTracker();
    assert.equal(tracker.atBoundary, true);
    assert.equal(tracker.messages, 0);
    assert.equal(tracker.transactionStatus, '');
  });

  void it('split at every offset: atBoundary is right after each half', () => {
    for (const [at, head, tail] of splits(stream)) {
      const tracker = new MessageBoundaryTracker();
      tracker.feed(head);
      assert.equal(tracker.atBoundary, boundaries.has(at), `after the first ${at} bytes`);
      tracker.feed(tail);
      assert.equal(tracker.atBoundary, true, `split at ${at}: end of stream`);
      assert.equal(tracker.messages, messages.length, `split at ${at}`);
      assert.equal(tracker.transactionStatus, 'T', `split at ${at}`);
      assert.equal(tracker.lastType, 0x5a);
    }
  });

  void it('one byte at a time: atBoundary is right after every byte', () => {
    const tracker = new MessageBoundaryTracker();
    bytewise(stream).forEach((byte, i) => {
      tracker.feed(byte);
      assert.equal(tracker.atBoundary, boundaries.has(i + 1), `after byte ${i + 1}`);
    });
    assert.equal(tracker.messages, messages.length);
  });

  void it('empty chunks change nothing', () => {
    const tracker = feedAll([Buffer.alloc(0), stream.subarray(0, 3), Buffer.alloc(0)]);
    assert.equal(tracker.atBoundary, false);
    tracker.feed(stream.subarray(3));
    assert.equal(tracker.atBoundary, true);
  });

  void it('the transaction status follows the last ReadyForQuery, even when its byte starts a chunk', () => {
    const idle = Buffer.concat([buffers.readyForQuery('E'), buffers.readyForQuery('I')]);
    const tracker = feedAll([idle.subarray(0, idle.length - 1)]);
    assert.equal(tracker.transactionStatus, 'E');
    tracker.feed(idle.subarray(idle.length - 1));
    assert.equal(tracker.transactionStatus, 'I');
    assert.equal(tracker.messages, 2);
  });

  void it('a length below 4 marks the stream corrupt and never at a boundary again', () => {
    const bad = Buffer.from([0x44, 0, 0, 0, 3]);
    for (const [at, head, tail] of splits(bad)) {
      const tracker = feedAll([buffers.parseComplete(), head, tail, buffers.readyForQuery('I')]);
      assert.equal(tracker.corrupt, true, `split at ${at}`);
      assert.equal(tracker.atBoundary, false, `split at ${at}`);
      assert.equal(tracker.messages, 1, `split at ${at}`);
    }
  });

  void it('counts many small messages in one chunk', () => {
    const many = Buffer.concat(Array.from({ length: 1000 }, () => message('n')));
    const tracker = feedAll([many]);
    assert.equal(tracker.messages, 1000);
    assert.equal(tracker.atBoundary, true);
  });
});
