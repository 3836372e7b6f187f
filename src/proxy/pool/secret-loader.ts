/**
 * proxy.auth for the pooled listeners: its file read and checked (every problem with its file and
 * line), and auth.query aimed at the primary the routing table names when it runs.
 */
import type { ProxyAuthConfig } from '../../config/proxy-auth-schema.js';
import { PgfleetError } from '../../errors.js';
import type { RouteNode } from '../../routing/types.js';
import { createSecretSource, formatAuthFileError, loadAuthFile, type SecretSource } from '../auth/index.js';

/** The secrets of `auth`, or undefined with `passthrough`; throws ERR_CONFIG_INVALID naming the key. */
export async function loadSecretSource(
  auth: ProxyAuthConfig,
  primary: () => RouteNode | undefined,
): Promise<SecretSource | undefined> {
  if (auth.type === 'passthrough') return undefined;
  const file = auth.file === undefined ? undefined : await loadAuthFile(auth.file);
  if (file !== undefined && file.errors.length > 0)
    throw new PgfleetError(
      'ERR_CONFIG_INVALID',
      `proxy.auth.file: ${file.errors.map(formatAuthFileError).join('; ')}`,
    );
  return createSecretSource(auth, file, () => {
    const node = primary();
    return node === undefined ? undefined : { host: node.host, port: node.port };
  });
}
