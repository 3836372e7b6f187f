/**
 * A pooled session's start (pooled-phase.ts): the StartupMessage's checks a pool needs (no
 * replication, a user, only parameters it can keep, the admin console's users, a listener not
 * DISABLEd) and the session's
 * record, then the pool or the authentication. Pure.
 */
import { MessageFramer, SQLSTATE, errorResponse } from '../../protocol/index.js';
import { admitsClient } from '../pool/listener-commands.js';
import type { StatementNames } from './prepared-statements.js';
import { startupWants, unkeptStartupParameter } from './tracked-parameters.js';
import { authenticationOk } from '../auth/index.js';
import { acquire } from './pooled-session.js';
import { end, fail, type SessionState } from './session-state.js';
import type { SessionAction } from './session-types.js';

const AUTH_OK = authenticationOk();
/** The database name that means the admin console (pool/admin-console.ts), when proxy.admin_users lists someone. */
export const ADMIN_DATABASE = 'pgfleet';

export function beginPooled(
  s: SessionState,
  mode: 'session' | 'transaction',
  parameters: ReadonlyMap<string, string>,
  rest: Buffer,
  names: StatementNames,
  /** The listener is DISABLEd (admin console): new clients but the console's are refused. */
  disabled: boolean,
  out: SessionAction[],
): void {
  s.framer = undefined;
  s.deadline = undefined;
  if (parameters.has('replication')) {
    fail(
      s,
      out,
      'protocol_error',
      SQLSTATE.FEATURE_NOT_SUPPORTED,
      'pgfleet: replication connections cannot be pooled',
    );
    return;
  }
  const user = parameters.get('user') ?? '';
  if (user === '') {
    fail(
      s,
      out,
      'protocol_error',
      SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION,
      'no PostgreSQL user name specified in startup packet',
    );
    return;
  }
  const unkept = unkeptStartupParameter(parameters, s.settings.pool?.ignoreStartupParameters ?? []);
  if (unkept !== undefined) {
    fail(
      s,
      out,
      'startup_rejected',
      SQLSTATE.PROTOCOL_VIOLATION,
      `pgfleet: unsupported startup parameter: ${unkept} (a pooled listener cannot keep it; proxy.ignore_startup_parameters lists those let through)`,
    );
    return;
  }
  const database = parameters.get('database') ?? user;
  const admin = database === ADMIN_DATABASE && (s.settings.pool?.adminUsers?.length ?? 0) > 0;
  if (
    admin &&
    !(s.settings.pool?.adminUsers?.includes(user) === true && s.settings.pool.auth !== undefined)
  ) {
    fail(
      s,
      out,
      'auth_failed',
      SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION,
      `pgfleet: user "${user}" may not use the admin console (proxy.admin_users)`,
    );
    return;
  }
  if (!admitsClient(disabled, admin)) {
    // PostgreSQL's words for a database with datallowconn false.
    end(
      s,
      out,
      'finish',
      'listener_disabled',
      errorResponse({
        severity: 'FATAL',
        code: SQLSTATE.OBJECT_NOT_IN_PREREQUISITE_STATE,
        message: `database "${database}" is not currently accepting connections`,
        detail: `pgfleet: listener "${s.settings.listener}" is disabled (DISABLE); ENABLE lets new clients in`,
      }),
    );
    return;
  }
  s.phase = 'pool_login';
  const method = s.settings.pool?.auth;
  s.pool = {
    mode,
    database,
    user,
    encoding: parameters.get('client_encoding') ?? '',
    client: new MessageFramer(),
    server: undefined,
    serverFramer: undefined,
    replies: undefined,
    acquiring: true,
    queued: rest.length > 0 ? [Buffer.from(rest)] : [],
    queuedBytes: rest.length,
    awaiting: 0,
    unsynced: false,
    status: 'I',
    replay: undefined,
    statements: undefined,
    names,
    retire: undefined,
    auth: method === undefined ? 'done' : 'lookup',
    greeting: method === undefined ? AUTH_OK : undefined,
    credentials: undefined,
    wanted: startupWants(parameters),
    ownWanted: undefined,
    setting: undefined,
    settingError: undefined,
    loginKey: undefined,
    admin,
  };
  out.push({ kind: 'pause_client' });
  if (method === undefined) acquire(s.pool, out);
  else out.push({ kind: 'auth_lookup', user });
}
