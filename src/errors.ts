/**
 * pgfleet's one error class. Code elsewhere switches on `code`, never on message text.
 * Library errors are mapped to these at each adapter's boundary (one function per adapter).
 */
export const ErrorCodes = {
  ERR_CONFIG_INVALID: 'configuration is invalid',
  ERR_CONFIG_READ: 'configuration file cannot be read',
  ERR_DCS_UNAVAILABLE: 'the DCS (etcd) cannot be reached',
  ERR_DCS_CONFLICT: 'a DCS compare-and-set failed',
  ERR_NO_ROUTE: 'no server qualifies for the listener',
  ERR_PROTOCOL: 'malformed Postgres protocol message',
  ERR_STARTUP_TIMEOUT: 'client sent no startup packet in time',
  ERR_CONNECT_TIMEOUT: 'server connection timed out',
  ERR_UPSTREAM: 'server connection failed',
  ERR_POSTGRES: 'a PostgreSQL command failed',
  ERR_HEALTH_CHECK: 'health check failed',
  ERR_TIMEOUT: 'an operation timed out',
  ERR_CTL_REJECTED: 'the control command is not possible on this cluster',
  ERR_CTL_FAILED: 'the cluster did not carry out the control command',
  ERR_WATCHDOG: 'the watchdog process cannot be reached',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class PgfleetError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message ?? ErrorCodes[code], options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PgfleetError';
    this.code = code;
    this.details = options?.details;
  }
}

export function isPgfleetError(err: unknown, code?: ErrorCode): err is PgfleetError {
  return err instanceof PgfleetError && (code === undefined || err.code === code);
}

/** A printable message for any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
