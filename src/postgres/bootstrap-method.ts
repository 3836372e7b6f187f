/**
 * Patroni's custom bootstrap (patroni/postgresql/bootstrap.py _custom_bootstrap) and its
 * post_bootstrap script. `bootstrap.method: <name>` runs `bootstrap.<name>.command` with
 * `--scope=… --datadir=…` (none with `no_params`) to fill the data directory — a restore from a
 * backup, for instance. Then `recovery_conf` (restore_command, recovery_target_*, …) goes into
 * postgresql.auto.conf with recovery.signal (PostgreSQL 12+ has no recovery.conf), so the node
 * starts in archive recovery and promotes at its end; without `recovery_conf` any signal files
 * the restore left are removed unless `keep_existing_recovery_conf`. The agent waits for the end
 * of recovery, then resets those settings (ALTER SYSTEM RESET) so a later clone does not inherit
 * them.
 * @see https://patroni.readthedocs.io/en/latest/replica_bootstrap.html#bootstrap
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { confValue, type ParamValue } from './conf.js';
import { afterRestore, runCommandLine, type DataDirHost } from './create-replica.js';

export interface BootstrapMethod {
  readonly name: string;
  readonly command: string;
  readonly no_params?: boolean | undefined;
  readonly recovery_conf?: Readonly<Record<string, ParamValue>> | undefined;
  readonly keep_existing_recovery_conf?: boolean | undefined;
}

export function bootstrapArgs(method: BootstrapMethod, scope: string, dataDir: string): string[] {
  return method.no_params === true ? [] : [`--scope=${scope}`, `--datadir=${dataDir}`];
}

/** Lines appended to postgresql.auto.conf: `key = 'value'`, PostgreSQL's own quoting. */
export function recoveryConfText(recovery: Readonly<Record<string, ParamValue>>): string {
  const lines = Object.entries(recovery).map(([k, v]) => `${k} = ${confValue(v)}`);
  return (
    ['# recovery_conf of the custom bootstrap (pgfleet resets these once recovery ends)', ...lines].join(
      '\n',
    ) + '\n'
  );
}

/**
 * Fills the data directory with the method's command and prepares the recovery it asked for.
 * Resolves with the recovery settings written (to be reset once the node has promoted).
 */
export async function runCustomBootstrap(
  host: DataDirHost,
  method: BootstrapMethod,
  scope: string,
): Promise<string[]> {
  await host.prepareEmptyDataDir();
  host.log.info({ method: method.name }, `running custom bootstrap script: ${method.command}`);
  await runCommandLine(host, method.command, bootstrapArgs(method, scope, host.dataDir), {});
  await afterRestore(host.dataDir);
  const signals = ['recovery.signal', 'standby.signal'].map((f) => path.join(host.dataDir, f));
  if (method.recovery_conf !== undefined) {
    const auto = path.join(host.dataDir, 'postgresql.auto.conf');
    const before = await readFile(auto, 'utf8').catch(() => '');
    await host.writeOwned(auto, before + recoveryConfText(method.recovery_conf));
    await rm(signals[1]!, { force: true });
    await host.writeOwned(signals[0]!, '');
    return Object.keys(method.recovery_conf);
  }
  if (method.keep_existing_recovery_conf !== true) for (const s of signals) await rm(s, { force: true });
  return [];
}

/** Patroni's post_bootstrap (or post_init): the command with the local connection string appended. */
export async function runPostBootstrap(
  host: DataDirHost,
  command: string,
  connstring: string,
  password: string | undefined,
): Promise<void> {
  host.log.info(`running post_bootstrap script: ${command}`);
  // The superuser's password for the script's libpq (as Patroni's PGPASSFILE): pg_hba may ask for
  // one on the Unix socket too.
  await runCommandLine(host, command, [connstring], {
    PGOPTIONS: '-c synchronous_commit=local',
    ...(password !== undefined ? { PGPASSWORD: password } : {}),
  });
}
