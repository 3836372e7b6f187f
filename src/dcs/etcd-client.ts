/**
 * The etcd3 adapter boundary: one library client per etcd member, and the one function that turns
 * the library's errors into PgfleetError codes (used by every etcd caller), with the one rule of
 * which errors are a member's fault (try another member) and which are etcd's answer.
 */
import { readFileSync } from 'node:fs';
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
      // grpc-js uses the system's roots when none are given; the library's type insists on a Buffer.
      rootCertificate:
        config.cacert !== undefined ? readFileSync(config.cacert) : (undefined as unknown as Buffer),
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
