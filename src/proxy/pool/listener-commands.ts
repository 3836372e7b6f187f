/**
 * pgbouncer's operator commands on a pooled listener (pgbouncer's "db"), as the admin console and
 * the admin HTTP port give them: what each does to the listener's state, and which listeners a
 * command names. Pure; PoolSet and the console's target act on the verdicts.
 *
 *   command   | paused | disabled | and now
 *   ----------+--------+----------+--------------------------------------------------------------
 *   PAUSE     | true   | —        | no server is lent; clients wait
 *   RESUME    | false  | —        | the waiting clients are lent servers
 *   KILL      | true   | —        | every client (57P01) and every server connection dropped;
 *             |        |          | new clients wait until RESUME (pgbouncer's KILL)
 *   RECONNECT | —      | —        | every server closes when next released (idle ones now)
 *   DISABLE   | —      | true     | new clients refused at login (55000); open sessions go on
 *   ENABLE    | —      | false    | new clients let in again
 *
 * (— : unchanged.) The admin console's own sessions are none of these: KILL leaves them, DISABLE
 * does not refuse them (pgbouncer's console is a database of its own).
 */

export const LISTENER_COMMANDS = ['pause', 'resume', 'kill', 'reconnect', 'disable', 'enable'] as const;
export type ListenerCommand = (typeof LISTENER_COMMANDS)[number];

/** DISABLE and ENABLE name their listener (pgbouncer requires the database for them). */
export const NEEDS_LISTENER: ReadonlySet<ListenerCommand> = new Set(['disable', 'enable']);

export const isListenerCommand = (word: string): word is ListenerCommand =>
  (LISTENER_COMMANDS as readonly string[]).includes(word);

export interface ListenerAdminState {
  /** PAUSE or KILL: no server is lent until RESUME. */
  readonly paused: boolean;
  /** DISABLE: new clients are refused until ENABLE. */
  readonly disabled: boolean;
}

export const RUNNING: ListenerAdminState = { paused: false, disabled: false };

/** What a command does to a listener: its next state, and what goes now. */
export interface CommandVerdict {
  readonly state: ListenerAdminState;
  /** KILL: every client session of the listener ends (57P01), the console's aside. */
  readonly dropClients: boolean;
  /** KILL: every server connection closes now, lent or idle, and every login under way. */
  readonly dropServers: boolean;
  /** RECONNECT: every server connection closes when next released (idle ones now). */
  readonly retireServers: boolean;
}

export function decideCommand(state: ListenerAdminState, command: ListenerCommand): CommandVerdict {
  const verdict = (
    next: Partial<ListenerAdminState>,
    acts: Partial<CommandVerdict> = {},
  ): CommandVerdict => ({
    state: { ...state, ...next },
    dropClients: false,
    dropServers: false,
    retireServers: false,
    ...acts,
  });
  switch (command) {
    case 'pause':
      return verdict({ paused: true });
    case 'resume':
      return verdict({ paused: false });
    case 'kill':
      return verdict({ paused: true }, { dropClients: true, dropServers: true });
    case 'reconnect':
      return verdict({}, { retireServers: true });
    case 'disable':
      return verdict({ disabled: true });
    case 'enable':
      return verdict({ disabled: false });
  }
}

/** A new client of the listener, at its StartupMessage: let in, or refused (DISABLE). */
export function admitsClient(disabled: boolean, adminConsole: boolean): boolean {
  return adminConsole || !disabled;
}

export type CommandTargets =
  | { readonly ok: true; readonly listeners: readonly string[] }
  | { readonly ok: false; readonly problem: 'missing' | 'unknown'; readonly message: string };

/**
 * The pooled listeners `command` acts on: the one named, or (none named) every pooled listener;
 * DISABLE and ENABLE must name one.
 */
export function commandTargets(
  command: ListenerCommand,
  listener: string | undefined,
  pooled: readonly string[],
): CommandTargets {
  if (listener === undefined || listener === '') {
    if (NEEDS_LISTENER.has(command))
      return { ok: false, problem: 'missing', message: `${command.toUpperCase()} needs a listener's name` };
    return { ok: true, listeners: pooled };
  }
  if (!pooled.includes(listener))
    return { ok: false, problem: 'unknown', message: `no pooled listener "${listener}"` };
  return { ok: true, listeners: [listener] };
}
