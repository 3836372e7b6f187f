/**
 * The etcd3 adapter boundary: one library client per etcd member, and the one function that turns
 * the library's errors into PgfleetError codes (used by every etcd caller), with the one rule of
 * which errors are a member's fault (try another member) and which are etcd's answer.
 */
import { existsSync, readFileSync } from 'node:fs';
import tls from 'node:tls';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  EtcdRoleNotGrantedError,
  EtcdUserNotFoundError,
  GRPCAlreadyExistsError,
  GRPCFailedPreconditionError,
  GRPCInvalidArgumentError,
  GRPCNotFoundError,
  GRPCOutOfRangeError,
  GRPCUnauthenticatedError,
  type IOptions,
} from 'etcd3';
import { noop } from 'cockatiel';
import type { Etcd3Config } from '../config/common.js';
import { PgfleetError } from '../errors.js';

/** `http://host:port` for each configured `etcd3.hosts` entry. */
export function etcdHostUrls(config: Etcd3Config): string[] {
  return config.hosts.map(
    (h) => `${config.protocol}://${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`,
  );
}

/** Debian's (and most distributions') system CA bundle, as Python's ssl (Patroni) uses it. */
const OS_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * The CAs an etcd server certificate is checked against without `cacert`: Node's bundled roots,
 * the system bundle and NODE_EXTRA_CA_CERTS. grpc-js alone would use only Node's bundled roots,
 * so a certificate signed by a CA installed on the host (as Patroni trusts it) would fail.
 */
export function systemRoots(env: Readonly<Record<string, string | undefined>> = process.env): Buffer {
  const pems = [...tls.rootCertificates];
  for (const file of [OS_CA_BUNDLE, env.NODE_EXTRA_CA_CERTS]) {
    if (file === undefined || !existsSync(file)) continue;
    pems.push(readFileSync(file, 'utf8'));
  }
  return Buffer.from(pems.join('\n'));
}

/**
 * A library client bound to one member. Fault handling is ours (EtcdCluster), not the library's:
 * no retries, no circuit breaker, a deadline on every unary call (`attemptMs()` read per call),
 * and a channel that reconnects within a second once its member is back.
 */
export function createMemberClient(url: string, config: Etcd3Config, attemptMs: () => number): Etcd3 {
  const options: IOptions = {
    hosts: url,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + attemptMs() }),
    faultHandling: { host: () => noop, global: noop },
    grpcOptions: {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1_000,
    },
  };
  if (config.username !== undefined) {
    options.auth = { username: config.username, password: config.password ?? '' };
  }
  // A client certificate works with the system's roots too: `cacert` is not required for it.
  if (config.cacert !== undefined || config.cert !== undefined || config.key !== undefined) {
    options.credentials = {
      rootCertificate: config.cacert !== undefined ? readFileSync(config.cacert) : systemRoots(),
      ...(config.key !== undefined ? { privateKey: readFileSync(config.key) } : {}),
      ...(config.cert !== undefined ? { certChain: readFileSync(config.cert) } : {}),
    };
  }
  return new Etcd3(options);
}

/**
 * Errors that are etcd's answer to the request rather than a fault of the member asked: asking
 * another member would get the same answer. Everything else (unavailable, deadline exceeded,
 * "no leader", "request timed out", a reset connection) is the member's fault.
 */
const DEFINITIVE_ERRORS = [
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  EtcdAuthenticationFailedError,
  EtcdRoleNotGrantedError,
  EtcdUserNotFoundError,
  GRPCUnauthenticatedError,
  GRPCInvalidArgumentError,
  GRPCFailedPreconditionError,
  GRPCOutOfRangeError,
  GRPCNotFoundError,
  GRPCAlreadyExistsError,
] as const;

/** Whether a failed call should be tried on another member (see DEFINITIVE_ERRORS). */
export function isMemberFault(err: unknown): boolean {
  const inner = err instanceof PgfleetError && err.cause !== undefined ? err.cause : err;
  return !DEFINITIVE_ERRORS.some((cls) => inner instanceof cls);
}

/** Maps anything the etcd3 library throws to a PgfleetError with a stable code. */
export function toDcsError(err: unknown, operation: string): PgfleetError {
  if (err instanceof PgfleetError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PgfleetError('ERR_DCS_UNAVAILABLE', `etcd ${operation} failed: ${message}`, { cause: err });
}
