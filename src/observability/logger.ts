import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

export interface LoggerSettings {
  level?: string;
  /** Human-readable output (pino-pretty) instead of JSON lines. Default: when stdout is a terminal. */
  pretty?: boolean;
  name?: string;
}

/**
 * Never log secrets: passwords, auth headers, full connection strings, and the proxy's
 * authentication state (src/proxy/auth: a StoredSecret, LoginCredentials with a ClientKey).
 */
export const REDACT = [
  'password',
  '*.password',
  '*.*.password',
  'authorization',
  '*.authorization',
  'conn_url',
  '*.conn_url',
  'connectionString',
  'secret',
  '*.secret',
  'credentials',
  '*.credentials',
];

/** The one root logger of a process; made by the CLI, passed down as `log.child({ component })`. */
export function createLogger(settings: LoggerSettings = {}): Logger {
  const pretty = settings.pretty ?? process.stdout.isTTY;
  const options: LoggerOptions = {
    name: settings.name ?? 'pgfleet',
    level: settings.level ?? 'info',
    redact: { paths: REDACT, censor: '[redacted]' },
  };
  if (pretty) {
    options.transport = {
      target: 'pino-pretty',
      options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' },
    };
  }
  return pino(options);
}

/** A logger that drops everything: for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
