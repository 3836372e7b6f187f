/** The pooled listeners' message framer: whole messages whatever the chunking, bad lengths refused. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MessageFramer } from '../../../src/protocol/index.js';
import { buffers, bytewise, int32, splits } from './buffers.js';

const STREAM = Buffer.concat([
  buffers.parseComplete(),
  buffers.dataRow('1', 'abc'),
  buffers.commandComplete('SELECT 1'),
  buffers.readyForQuery('I'),
]);

function frame(chunks: Buffer[]): Buffer[] {
  const f = new MessageFramer();
  const out: Buffer[] = [];
  for (const c of chunks) {
    const r = f.push(c);
    assert.ok(r.ok);
    out.push(...r.messages.map((m) => Buffer.from(m)));
  }
  assert.ok(f.atBoundary);
  return out;
}

describe('MessageFramer', () => {
  it('gives the same four messages for the stream split at every offset', () => {
    const whole = frame([STREAM]);
    assert.equal(whole.length, 4);
    assert.deepEqual(Buffer.concat(whole), STREAM);
    for (const [at, a, b] of splits(STREAM)) assert.deepEqual(frame([a, b]), whole, `split at ${at}`);
    assert.deepEqual(frame(bytewise(STREAM)), whole);
  });

  it('reports a partial message as not at a boundary', () => {
    const f = new MessageFramer();
    const r = f.push(STREAM.subarray(0, 7));
    assert.ok(r.ok);
    assert.equal(r.messages.length, 1);
    assert.equal(f.atBoundary, false);
  });

  const bad: [string, Buffer, RegExp][] = [
    ['a length below 4', Buffer.concat([Buffer.from('Q'), int32(3)]), /less than 4/],
    ['a message larger than the limit', Buffer.concat([Buffer.from('Q'), int32(1_000)]), /exceeds 100/],
  ];
  for (const [name, bytes, error] of bad)
    it(`refuses ${name}`, () => {
      const r = new MessageFramer(100).push(bytes);
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.error, error);
    });
});
