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

  it('reads in place: each message type and bounds, what follows, nothing kept after', () => {
    const f = new MessageFramer();
    assert.equal(f.begin(STREAM.subarray(0, 20)), undefined);
    const seen: string[] = [];
    for (let t = f.next(); t >= 0; t = f.next()) seen.push(`${String.fromCharCode(t)}${f.end - f.start}`);
    assert.equal(f.atBoundary, false, 'the DataRow cut at byte 20 is kept');
    assert.equal(f.begin(STREAM.subarray(20)), undefined);
    assert.equal(f.next(), 0x44);
    assert.deepEqual(f.message(), buffers.dataRow('1', 'abc'));
    assert.equal(f.ahead(0x5a), true, 'a ReadyForQuery follows');
    assert.equal(f.next(), -1, 'ahead() read to the end');
    assert.equal(f.bytes.length, 0, 'the chunk is let go once read');
    assert.deepEqual(seen, ['15']);
    assert.equal(f.begin(STREAM), undefined);
    f.next();
    assert.equal(f.ahead(0x31), false, 'only what follows counts');
    const bad = new MessageFramer();
    assert.match(bad.begin(Buffer.concat([STREAM, Buffer.from('Q'), int32(3)])) ?? '', /less than 4/);
    assert.equal(bad.next(), -1, 'nothing of a refused chunk is read');
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
