/** Without `cacert`, etcd's certificate is checked against Node's roots, the system bundle and NODE_EXTRA_CA_CERTS. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { systemRoots } from '../../../src/dcs/etcd-client.js';

void describe('systemRoots', () => {
  const extra = path.join(mkdtempSync(path.join(os.tmpdir(), 'roots-')), 'extra.pem');
  writeFileSync(extra, '-----BEGIN CERTIFICATE-----\nEXTRA\n-----END CERTIFICATE-----\n');
  void it("has Node's bundled roots", () =>
    assert.ok(systemRoots({}).toString().includes(tls.rootCertificates[0]!)));
  void it('adds NODE_EXTRA_CA_CERTS', () =>
    assert.match(systemRoots({ NODE_EXTRA_CA_CERTS: extra }).toString(), /EXTRA/));
  void it('a missing NODE_EXTRA_CA_CERTS file is skipped', () =>
    assert.doesNotThrow(() => systemRoots({ NODE_EXTRA_CA_CERTS: '/nonexistent.pem' })));
});
