/**
 * Keeps PostgreSQL's files in step with the parameters in force (the node's, the DCS `config`
 * key's, the managed synchronous_standby_names) and its pg_hba: when they change (`patronictl
 * edit-config`, PATCH /config, a reload of the node's file) the files are rewritten and
 * PostgreSQL reloaded, then `on_reload` runs. A parameter that needs a restart shows as
 * pending_restart in the next probe.
 */
import type { Logger } from 'pino';
import type { ParamValue } from '../cluster/types.js';
import { errorMessage } from '../errors.js';
import type { PostgresControl } from '../postgres/postgres-control.js';
import type { CallbackRole } from './callbacks.js';

export class ParameterSync {
  /** A reload changed parameters or pg_hba: rewrite and reload even if the parameters look the same. */
  private filesChanged = false;

  constructor(
    private readonly node: PostgresControl,
    private readonly log: Logger,
    private readonly onReload: (role: CallbackRole) => void,
  ) {}

  markFilesChanged(): void {
    this.filesChanged = true;
  }

  /** Writes and reloads when `wanted` differs from what runs (or the files changed); `role` when answering. */
  async apply(wanted: Readonly<Record<string, ParamValue>>, role: CallbackRole | undefined): Promise<void> {
    if (!this.node.isRunning() || role === undefined) return;
    if (!this.filesChanged && JSON.stringify(wanted) === JSON.stringify(this.node.appliedParameters)) return;
    this.filesChanged = false;
    try {
      await this.node.applyParameters(wanted);
      this.log.info({ parameters: Object.keys(wanted) }, 'postgres parameters changed; reloaded');
      this.onReload(role);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'could not apply changed postgres parameters');
    }
  }
}
