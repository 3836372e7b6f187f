/**
 * Patroni's callbacks (`postgresql.callbacks`): `<cmd> <action> <role> <scope>` run in the
 * background, never awaited by the HA loop. As Patroni's CallbackExecutor: `on_reload` has a lane of
 * its own, every other callback shares one, and a new call kills the one still running in its
 * lane (with its process group). pgfleet adds a timeout (`agent.callback_timeout`): a callback
 * still running then is killed and logged. A non-zero exit is logged.
 *
 * The command is run by `/bin/sh -c '<cmd> "$@"'`, so quoting works as in a shell (Patroni splits
 * it with shlex: the same for plain commands and quoted arguments). The role is `primary` or
 * `replica` (Patroni 4's names; Patroni 3 said `master`).
 *
 * When each runs is read off what the agent observes of PostgreSQL between cycles (see
 * callbackFor), so no action path needs to know about callbacks.
 * @see patroni/postgresql/callback_executor.py; patroni/postgresql/__init__.py call_nowait
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';

export type CallbackAction = 'on_start' | 'on_stop' | 'on_restart' | 'on_reload' | 'on_role_change';
export type CallbackRole = 'primary' | 'replica';

/** What the agent saw of its PostgreSQL at the end of a cycle. */
export interface PgFacts {
  readonly running: boolean;
  /** undefined while it runs but does not answer. */
  readonly role: CallbackRole | undefined;
  /** pg_postmaster_start_time() in epoch ms. */
  readonly startMs: number | undefined;
}

export interface CallbackCall {
  readonly action: CallbackAction;
  readonly role: CallbackRole;
}

/**
 * The callback a change from `prev` to `next` calls, if any (pure). `prev` undefined: the agent's
 * first look, where a running PostgreSQL gets `on_start` (Patroni calls it once per agent start).
 *
 * | prev → next                                   | callback               |
 * |-----------------------------------------------|------------------------|
 * | (agent start) → running                       | on_start (its role)    |
 * | stopped → running                             | on_start (new role)    |
 * | running → stopped                             | on_stop (old role)     |
 * | running → running, role changed               | on_role_change (new)   |
 * | running → running, same role, new start time  | on_restart             |
 */
export function callbackFor(prev: PgFacts | undefined, next: PgFacts): CallbackCall | undefined {
  if (next.running && next.role === undefined) return undefined;
  if (!prev?.running) return next.running ? { action: 'on_start', role: next.role! } : undefined;
  if (!next.running) return prev.role ? { action: 'on_stop', role: prev.role } : undefined;
  if (prev.role !== undefined && prev.role !== next.role)
    return { action: 'on_role_change', role: next.role! };
  if (prev.startMs !== undefined && next.startMs !== undefined && prev.startMs !== next.startMs)
    return { action: 'on_restart', role: next.role! };
  return undefined;
}

export interface CallbackSettings {
  readonly commands: Readonly<Partial<Record<CallbackAction, string>>>;
  readonly scope: string;
  readonly timeoutMs: number;
}

type Lane = 'reload' | 'main';

export class CallbackRunner {
  private readonly running = new Map<Lane, ChildProcess>();
  private last: PgFacts | undefined;
  private closed = false;

  constructor(
    private readonly settings: () => CallbackSettings,
    private readonly log: Logger,
  ) {}

  /** Records what the agent sees now and runs the callback the change calls for. */
  observe(facts: PgFacts): void {
    if (facts.running && facts.role === undefined) return;
    const call = callbackFor(this.last, facts);
    this.last = facts;
    if (call) this.run(call.action, call.role);
  }

  /** Starts `action`'s command, if configured, killing the one still running in its lane. */
  run(action: CallbackAction, role: CallbackRole): void {
    const { commands, scope, timeoutMs } = this.settings();
    const cmd = commands[action];
    if (cmd === undefined || this.closed) return;
    const lane: Lane = action === 'on_reload' ? 'reload' : 'main';
    const prev = this.running.get(lane);
    if (prev) {
      this.log.info({ pid: prev.pid, action }, 'callback: killing the previous one still running');
      killGroup(prev);
    }
    const child = spawn('/bin/sh', ['-c', `${cmd} "$@"`, 'pgfleet-callback', action, role, scope], {
      stdio: 'ignore',
      detached: true,
    });
    this.running.set(lane, child);
    const timer = setTimeout(() => {
      this.log.warn({ action, timeoutMs }, 'callback: still running at its timeout; killed');
      killGroup(child);
    }, timeoutMs);
    timer.unref();
    child.once('error', (err) => this.log.warn({ action, err: errorMessage(err) }, 'callback: cannot run'));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (this.running.get(lane) === child) this.running.delete(lane);
      if (code === 0) this.log.info({ action, role }, 'callback: done');
      else this.log.warn({ action, role, code, signal }, 'callback: failed');
    });
    this.log.info({ action, role, pid: child.pid }, 'callback: started');
  }

  /** Kills callbacks still running. */
  close(): void {
    this.closed = true;
    for (const child of this.running.values()) killGroup(child);
    this.running.clear();
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}
