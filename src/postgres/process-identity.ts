/**
 * A process known by pid and start time, so that a pid reused by another process is never
 * signalled: the postmaster the agent adopts after a restart, the one the watchdog fences.
 * Linux /proc only.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot); undefined when gone. */
export function processStartTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    if (state === 'Z' || state === 'X') return undefined; // exited, not yet reaped
    return fields[19];
  } catch {
    return undefined;
  }
}

/** The process's command line, NULs as spaces; '' when gone. */
export function processCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

export interface ProcessRef {
  readonly pid: number;
  readonly startTicks: string;
}

export function refOf(pid: number): ProcessRef | undefined {
  const startTicks = processStartTicks(pid);
  return startTicks === undefined ? undefined : { pid, startTicks };
}

export function isAliveRef(ref: ProcessRef): boolean {
  return processStartTicks(ref.pid) === ref.startTicks;
}

/** Signals the process if it is still the same one; false when it is gone. */
export function signalRef(ref: ProcessRef, signal: NodeJS.Signals): boolean {
  if (!isAliveRef(ref)) return false;
  try {
    process.kill(ref.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Resolves true once the process is gone, false after `timeoutMs`. */
export async function waitGone(ref: ProcessRef, timeoutMs: number, pollMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAliveRef(ref)) {
    if (Date.now() >= deadline) return false;
    await sleep(pollMs);
  }
  return true;
}
