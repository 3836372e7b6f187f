import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';

import { REDACT } from '../../../src/observability/logger.js';

void describe('logger redaction', () => {
  void it("hides passwords, stored secrets and a client's login credentials at the top and one level down", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = pino({ redact: { paths: REDACT, censor: '[redacted]' } }, sink);
    const credentials = { kind: 'scram-keys', keys: { clientKey: Buffer.alloc(32, 0xab) } };
    log.info({ user: 'alice', credentials, secret: { kind: 'password', password: 'pw' } }, 'logged in');
    log.info({ session: { credentials, secret: 'md5abc', password: 'pw' } }, 'nested');
    const text = lines.join('');
    assert.doesNotMatch(text, /scram-keys|171,171|md5abc|"pw"/);
    assert.match(text, /"credentials":"\[redacted\]"/);
    assert.match(text, /"user":"alice"/);
  });
});
