/**
 * The etcd3 adapter boundary: building a client from config, and turning the library's errors
 * into PgfleetError codes (one function, used by every etcd caller).
 */
import { readFileSync } from 'node:fs';
import { Etcd3, type IOptions } from 'etcd3';
import { ExponentialBackoff, noop, type IBackoff } from 'cockatiel';
import type { Etcd3Config } from '../config/common.js';
import { PgfleetError } from '../errors.js';

export function etcdHostUrls(config: Etcd3Config): string[] {
  return config.hosts.map(
    (h) => `${config.protocol}://${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`,
  );
}

/**
 * One etcd3 client. Fault handling is ours, not the library's: no circuit breaker that would keep
 * us away from a recovered etcd for 5 s, a short watch backoff, and a deadline on every unary call.
 */
export function createEtcdClient(config: Etcd3Config): Etcd3 {
  const options: IOptions = {
    hosts: etcdHostUrls(config),
    dialTimeout: config.dial_timeout,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + config.request_timeout }),
    faultHandling: {
      host: () => noop,
      global: noop,
      // etcd3 types this as IBackoff but calls it as a factory (`.next()`), which is what we pass.
      watchBackoff: new ExponentialBackoff({
        initialDelay: 100,
        maxDelay: 2_000,
      }) as unknown as IBackoff<unknown>,
    },
  };
  if (config.username !== undefined) {
    options.auth = { username: config.username, password: config.password ?? '' };
  }
  if (config.cacert !== undefined) {
    options.credentials = {
      rootCertificate: readFileSync(config.cacert),
      ...(config.key !== undefined ? { privateKey: readFileSync(config.key) } : {}),
      ...(config.cert !== undefined ? { certChain: readFileSync(config.cert) } : {}),
    };
  }
  return new Etcd3(options);
}

/** Maps anything the etcd3 library throws to a PgfleetError with a stable code. */
export function toDcsError(err: unknown, operation: string): PgfleetError {
  if (err instanceof PgfleetError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PgfleetError('ERR_DCS_UNAVAILABLE', `etcd ${operation} failed: ${message}`, { cause: err });
}
