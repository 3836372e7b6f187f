/**
 * The certificates of TLS-terminating listeners (`tls: terminate | require`), read from their PEM
 * files into one secure context per listener. Loaded when the proxy starts and again on reload: a
 * file that cannot be read or a key that does not match its certificate is an error naming the key
 * (`proxy.listeners[1].tls_key_file: …`), and the running contexts stay. Sessions take the context
 * of their listener when their handshake begins, so a rotation reaches new sessions and leaves
 * established ones alone.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ProxyConfig } from '../../config/proxy-schema.js';
import { PgfleetError, errorMessage } from '../../errors.js';
import type { NativeTlsContext } from '../relay/native-relay.js';

/** What a listener's TLS sessions use, and what /status shows of it. */
export interface ListenerTls {
  readonly context: SecureContext;
  /** The same for the relay threads' TLS bridges (tls-bridge.ts), when the native relay runs. */
  readonly native: NativeTlsContext | undefined;
  /** Client certificates are required and verified (proxy.tls.ca_file is set). */
  readonly verifyClients: boolean;
  readonly certFile: string;
  readonly subject: string;
  /** The certificate's notAfter, ISO 8601. */
  readonly notAfter: string;
  readonly fingerprint256: string;
}

interface Pem {
  readonly key: string;
  readonly file: string;
  readonly text: string;
}

function readPem(key: string, file: string): Pem {
  try {
    return { key, file, text: readFileSync(file, 'utf8') };
  } catch (err) {
    throw new PgfleetError('ERR_CONFIG_INVALID', `${key}: cannot read ${file}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

function invalid(key: string, file: string, what: string, err: unknown): PgfleetError {
  return new PgfleetError('ERR_CONFIG_INVALID', `${key}: ${file} ${what}: ${errorMessage(err)}`, {
    cause: err,
  });
}

/**
 * Makes the addon's context from the same PEM texts (native-relay.ts: nativeTlsContext): the
 * context, an Error with OpenSSL's reason, or undefined without the addon.
 */
export type NativeTlsFactory = (
  pems: { cert: string; key: string; ca: string | undefined },
  minVersion: 'TLSv1.2' | 'TLSv1.3',
) => NativeTlsContext | Error | undefined;

/** One listener's context from its certificate and key (and the proxy's CA and minimum version). */
function loadListenerTls(
  cert: Pem,
  key: Pem,
  ca: Pem | undefined,
  minVersion: 'TLSv1.2' | 'TLSv1.3',
  makeNative: NativeTlsFactory | undefined,
): ListenerTls {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert.text);
  } catch (err) {
    throw invalid(cert.key, cert.file, 'is not a PEM certificate', err);
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key.text)))
      throw new Error(`the key does not match the certificate ${cert.file}`);
  } catch (err) {
    throw invalid(key.key, key.file, 'is not the private key of the certificate', err);
  }
  let context: SecureContext;
  try {
    context = createSecureContext({ cert: cert.text, key: key.text, ca: ca?.text, minVersion });
  } catch (err) {
    throw invalid((ca ?? cert).key, (ca ?? cert).file, 'cannot be used', err);
  }
  const native = makeNative?.({ cert: cert.text, key: key.text, ca: ca?.text }, minVersion);
  if (native instanceof Error) throw invalid((ca ?? cert).key, (ca ?? cert).file, 'cannot be used', native);
  return {
    context,
    native,
    verifyClients: ca !== undefined,
    certFile: cert.file,
    subject: x509.subject.replaceAll('\n', ', '),
    notAfter: new Date(x509.validTo).toISOString(),
    fingerprint256: x509.fingerprint256,
  };
}

/** The proxy's TLS to the servers: the mode, and the CA's PEM text for the verify modes. */
export interface ServerTls {
  readonly mode: ProxyConfig['proxy']['server_tls']['mode'];
  readonly ca: string | undefined;
}

/** proxy.server_tls, its CA file read (an error naming the key when it cannot be). */
export function loadServerTls(p: ProxyConfig['proxy']): ServerTls {
  const t = p.server_tls;
  const ca = t.ca_file === undefined ? undefined : readPem('proxy.server_tls.ca_file', t.ca_file);
  if (ca !== undefined) {
    try {
      new X509Certificate(ca.text);
    } catch (err) {
      throw invalid(ca.key, ca.file, 'is not a PEM certificate', err);
    }
  }
  return { mode: t.mode, ca: ca?.text };
}

/**
 * Every TLS-terminating listener's context, by listener name; throws on the first bad file. With
 * `makeNative`, each also gets the relay threads' context.
 */
export function loadTlsContexts(
  p: ProxyConfig['proxy'],
  makeNative?: NativeTlsFactory,
): Map<string, ListenerTls> {
  const out = new Map<string, ListenerTls>();
  const ca = p.tls?.ca_file === undefined ? undefined : readPem('proxy.tls.ca_file', p.tls.ca_file);
  const minVersion = p.tls?.min_version ?? 'TLSv1.2';
  p.listeners.forEach((l, i) => {
    if (l.tls !== 'terminate' && l.tls !== 'require') return;
    const own = l.tls_cert_file !== undefined && l.tls_key_file !== undefined;
    const cert = own
      ? readPem(`proxy.listeners[${i}].tls_cert_file`, l.tls_cert_file!)
      : readPem('proxy.tls.cert_file', p.tls!.cert_file);
    const key = own
      ? readPem(`proxy.listeners[${i}].tls_key_file`, l.tls_key_file!)
      : readPem('proxy.tls.key_file', p.tls!.key_file);
    out.set(l.name, loadListenerTls(cert, key, ca, minVersion, makeNative));
  });
  return out;
}
