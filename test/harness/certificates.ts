/**
 * Certificates for TLS tests, made with openssl in a temp dir: a CA, server certificates it signs
 * (for 127.0.0.1 and localhost), a client certificate it signs, and a second CA that signs nothing
 * the proxy serves (a client that trusts only it must fail verify-full).
 */
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runChecked } from './processes.js';
import { makeTempDir } from './temp-dir.js';

export interface CertificateSet {
  readonly dir: string;
  /** The CA that signs the server and client certificates. */
  readonly caCert: string;
  /** Another CA: trusting only it, a client cannot verify the proxy. */
  readonly otherCaCert: string;
  /** Server certificate and key, CN `name` given to server(). */
  server(name: string): Promise<{ cert: string; key: string }>;
  /** A client certificate and key signed by the CA, CN `user`. */
  client(user: string): Promise<{ cert: string; key: string }>;
}

const openssl = (dir: string, args: string[]) => runChecked('/usr/bin/openssl', args, { cwd: dir });

async function selfSigned(dir: string, name: string): Promise<string> {
  await openssl(dir, [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-keyout', `${name}.key`, '-out', `${name}.crt`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]); // prettier-ignore
  return path.join(dir, `${name}.crt`);
}

/** A key and a certificate for `cn`, signed by the CA, with the extensions given. */
async function signed(dir: string, cn: string, ext: string): Promise<{ cert: string; key: string }> {
  await writeFile(path.join(dir, `${cn}.ext`), ext);
  await openssl(dir, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${cn}`,
    '-keyout',
    `${cn}.key`,
    '-out',
    `${cn}.csr`,
  ]);
  await openssl(dir, [
    'x509', '-req', '-in', `${cn}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-out', `${cn}.crt`, '-extfile', `${cn}.ext`,
  ]); // prettier-ignore
  const key = path.join(dir, `${cn}.key`);
  await chmod(key, 0o600); // libpq refuses a client key readable by others
  return { cert: path.join(dir, `${cn}.crt`), key };
}

export async function makeCertificates(): Promise<CertificateSet> {
  const dir = await makeTempDir('certs');
  const caCert = await selfSigned(dir, 'ca');
  const otherCaCert = await selfSigned(dir, 'other-ca');
  return {
    dir,
    caCert,
    otherCaCert,
    server: (name) =>
      signed(dir, name, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'),
    client: (user) => signed(dir, user, 'extendedKeyUsage=clientAuth\n'),
  };
}
