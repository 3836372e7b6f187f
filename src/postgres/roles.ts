/**
 * The roles a bootstrap makes, as Patroni's create_or_update_role: created when missing, altered
 * when present — a custom bootstrap restores a cluster that may have them already. Pure SQL.
 */
import { sqlIdent, sqlLiteral } from './conf.js';

export function createOrUpdateRoleSql(
  name: string,
  password: string | undefined,
  options: readonly string[],
): string {
  const opts = options.map((o) => o.toUpperCase());
  if (!opts.includes('LOGIN') && !opts.includes('NOLOGIN')) opts.push('LOGIN');
  if (password !== undefined) opts.push(`PASSWORD ${sqlLiteral(password)}`);
  const ident = sqlIdent(name);
  const how = opts.join(' ');
  return (
    `DO $pgfleet$ BEGIN ` +
    `IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ${sqlLiteral(name)}) ` +
    `THEN ALTER ROLE ${ident} WITH ${how}; ELSE CREATE ROLE ${ident} WITH ${how}; END IF; END $pgfleet$`
  );
}

/** Statements for the superuser's password, the replication role and the rewind role. */
export function bootstrapRoleStatements(auth: {
  superuser: { username: string; password?: string | undefined };
  replication: { username: string; password?: string | undefined };
  rewind?: { username: string; password?: string | undefined } | undefined;
}): string[] {
  const su = auth.superuser;
  const out: string[] = [];
  if (su.password !== undefined) out.push(createOrUpdateRoleSql(su.username, su.password, ['SUPERUSER']));
  out.push(createOrUpdateRoleSql(auth.replication.username, auth.replication.password, ['REPLICATION']));
  const rw = auth.rewind;
  if (rw && rw.username !== su.username) {
    const r = sqlIdent(rw.username);
    out.push(
      createOrUpdateRoleSql(rw.username, rw.password, []),
      `GRANT EXECUTE ON function pg_catalog.pg_ls_dir(text, boolean, boolean) TO ${r}`,
      `GRANT EXECUTE ON function pg_catalog.pg_stat_file(text, boolean) TO ${r}`,
      `GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text) TO ${r}`,
      `GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO ${r}`,
    );
  }
  return out;
}
