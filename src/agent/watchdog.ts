/**
 * A watchdog that does not share the agent's event loop: a tiny bash process fed through a pipe.
 * While this node is primary the agent "arms" it after each lease renewal with the time left
 * before its lease deadline; if no new arm (or disarm) arrives in time — the agent is frozen,
 * hung or stopped (SIGSTOP) — the watchdog sends the postmaster SIGINT (fast shutdown), so no
 * writes are accepted after another member may have taken the leader key.
 * The watchdog dies with the agent (parent-death SIGKILL, and EOF on its pipe).
 *
 * States: disarmed ⇄ armed(deadline) → fired (postmaster signalled) → disarmed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';

// `read -t` waits on the pipe with a relative (monotonic) timeout; exit status > 128 means timeout.
const SCRIPT = String.raw`
t=0; pid=0
while true; do
  if [ "$t" = 0 ]; then
    IFS=' ' read -r cmd a b || exit 0
  else
    IFS=' ' read -r -t "$t" cmd a b; rc=$?
    if [ $rc -gt 128 ]; then
      kill -INT "$pid" 2>/dev/null && echo "watchdog: lease deadline passed without renewal; stopped postmaster $pid"
      t=0; continue
    elif [ $rc -ne 0 ]; then exit 0; fi
  fi
  case "$cmd" in
    arm) t="$a"; pid="$b" ;;
    disarm) t=0 ;;
  esac
done`;

export class Watchdog {
  private child: ChildProcess | undefined;
  private armed = false;

  constructor(private readonly log: Logger) {}

  start(): void {
    if (this.child) return;
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'bash', '-c', SCRIPT], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    child.stdout.on('data', (b: Buffer) => this.log.error(b.toString().trim()));
    child.stdin.on('error', () => undefined);
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    this.child = child;
  }

  /** Fire at `remainingMs` from now unless re-armed or disarmed before. */
  arm(remainingMs: number, postmasterPid: number): void {
    const s = Math.max(0.1, remainingMs / 1000).toFixed(3);
    this.child?.stdin?.write(`arm ${s} ${postmasterPid}\n`);
    this.armed = true;
  }

  disarm(): void {
    if (!this.armed) return;
    this.child?.stdin?.write('disarm\n');
    this.armed = false;
  }

  close(): void {
    this.disarm();
    this.child?.stdin?.end();
    this.child = undefined;
  }
}
