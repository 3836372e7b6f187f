/**
 * TLS of the REST API, both ends: which connection options an agent-to-agent (or ctl, proxy)
 * request gets from Patroni's `ctl.insecure` with and without a client certificate, and which
 * unsafe requests `verify_client` lets through.
 */
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { hasRestTls, tlsConnectOptions, type RestTlsSettings } from '../../../src/api/rest-tls.js';
import { clientCertificateOk, restServerTls } from '../../../src/api/rest-server-tls.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'rest-tls-'));
const file = (name: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, `-----${name}-----\n`);
  return p;
};
const [ca, cert, key] = [file('ca'), file('cert'), file('key')];
const none: RestTlsSettings = { insecure: false };
/** A PEM option as text (the options hold the file's bytes). */
const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString() : JSON.stringify(v));

void describe('tlsConnectOptions (Patroni request.py)', () => {
  const cases: [string, RestTlsSettings, (o: ReturnType<typeof tlsConnectOptions>) => unknown, unknown][] = [
    ['nothing: defaults (verified against the system CAs)', none, (o) => Object.keys(o), []],
    ['cacert read', { ...none, cacert: ca }, (o) => text(o.ca), '-----ca-----\n'],
    ['insecure without a certificate: not verified', { insecure: true }, (o) => o.rejectUnauthorized, false],
    [
      'insecure with a certificate: verified, host name not checked',
      { insecure: true, certfile: cert, keyfile: key },
      (o) => [o.rejectUnauthorized, typeof o.checkServerIdentity, text(o.key)],
      [undefined, 'function', '-----key-----\n'],
    ],
    [
      'the key defaults to the certificate file',
      { ...none, certfile: cert },
      (o) => text(o.key),
      '-----cert-----\n',
    ],
    ['a passphrase', { ...none, certfile: cert, keyfilePassword: 'pw' }, (o) => o.passphrase, 'pw'],
  ];
  for (const [name, s, pick, expected] of cases)
    void it(name, () => assert.deepEqual(pick(tlsConnectOptions(s)), expected));
  void it('an unreadable file names itself', () =>
    assert.throws(
      () => tlsConnectOptions({ ...none, cacert: '/nonexistent/ca.pem' }),
      /cannot read the CA certificate \/nonexistent\/ca.pem/,
    ));
  void it('no dispatcher without settings', () => assert.equal(hasRestTls(none), false));
});

void describe('verify_client', () => {
  const req = (authorized: boolean | undefined, cert: object = { subject: { CN: 'c' } }) =>
    ({ socket: { authorized, getPeerCertificate: () => cert } }) as unknown as IncomingMessage;
  void it('optional: "authorized" without a certificate (a resumed session) is refused', () =>
    assert.equal(clientCertificateOk(req(true, {}), 'optional'), false));
  const cases: [string, 'none' | 'optional' | 'required', boolean | undefined, boolean][] = [
    ['none: anything', 'none', undefined, true],
    ['optional: a verified certificate', 'optional', true, true],
    ['optional: none', 'optional', false, false],
    ['optional: plain socket', 'optional', undefined, false],
    ['required: a verified certificate', 'required', true, true],
  ];
  for (const [name, verify, authorized, ok] of cases)
    void it(name, () => assert.equal(clientCertificateOk(req(authorized), verify), ok));
  void it('server options: optional asks, required refuses', () => {
    const base = { certfile: cert, keyfile: key, cafile: ca };
    assert.equal(restServerTls({ verify_client: 'none' }), undefined);
    const o = restServerTls({ ...base, verify_client: 'optional' });
    assert.deepEqual([o?.requestCert, o?.rejectUnauthorized], [true, false]);
    const r = restServerTls({ ...base, verify_client: 'required' });
    assert.deepEqual([r?.requestCert, r?.rejectUnauthorized], [true, true]);
  });
});
