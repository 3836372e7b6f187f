/**
 * A postmaster's client backends still in their login, for the switchover drain
 * (transaction-drain.ts). PostgreSQL 15 lists a backend in pg_stat_activity only once it has
 * authenticated, and a fast shutdown ends one in the middle of its password exchange without a
 * word (no ErrorResponse while ClientAuthInProgress): a client whose exchange a proxy relays (a 1:1
 * listener, passthrough authentication) then sees its server close the connection and cannot be
 * retried elsewhere. While it authenticates, a backend's process title ends in "authentication"
 * (set_ps_display, with update_process_title on, the default): its children's titles, read from
 * Linux's /proc, tell them apart. Where /proc cannot tell (another OS, titles off), the count is 0
 * and the drain behaves as before.
 */
import { readFile } from 'node:fs/promises';

/** A process title (/proc/PID/cmdline: NUL-separated, padded with NULs) of a backend authenticating. */
export function isLoggingIn(cmdline: string): boolean {
  return /^postgres: .* authentication$/.test(cmdline.replace(/\0+$/, '').replace(/\0/g, ' '));
}

/** The child pids in /proc/PID/task/PID/children ("12 34 "). */
export function childPids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((t) => /^\d+$/.test(t))
    .map(Number);
}

/** How many children of `postmasterPid` are authenticating now; 0 when /proc cannot tell. */
export async function loginsInProgress(postmasterPid: number, procDir = '/proc'): Promise<number> {
  let children: number[];
  try {
    children = childPids(
      await readFile(`${procDir}/${postmasterPid}/task/${postmasterPid}/children`, 'utf8'),
    );
  } catch {
    return 0;
  }
  const titles = await Promise.all(
    children.map((pid) => readFile(`${procDir}/${pid}/cmdline`, 'latin1').catch(() => '')),
  );
  return titles.filter(isLoggingIn).length;
}
