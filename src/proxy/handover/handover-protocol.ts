/**
 * The upgrade hand-over's messages and its one decision, pure. Over the Unix socket
 * `proxy.handover_socket`, between the running proxy (old) and the one taking over (new):
 *
 *   step | who → whom | bytes                                          | then
 *   -----+------------+------------------------------------------------+----------------------------
 *   1    | new → old  | connects                                       |
 *   2    | old → new  | OFFER line (JSON) + its listening descriptors  | new listens on those it
 *        |            | attached (SCM_RIGHTS), in the order of the line | wants, binds the rest, closes
 *        |            |                                                | those it does not want
 *   3    | new → old  | `listening pid=N\n`                            | old closes its hand-over
 *        |            |                                                | socket (the path is unlinked)
 *   4    | old → new  | `released\n`, then end of file                 | old stops accepting and waits
 *        |            |                                                | for its sessions; new serves
 *        |            |                                                | the hand-over path itself
 *
 * Until step 3 the old proxy serves as before: a new process that fails or exits early costs
 * nothing. Both processes accept on a shared socket between steps 2 and 4, so no connection attempt
 * meets a closed port.
 */

/** What one listening socket is, in the offer: its address as `host:port`. */
export interface OfferedSocket {
  readonly address: string;
  readonly fd: number;
}

export const RELEASED = 'released\n';
const VERSION = 1;

/** The offer line for `addresses` (their descriptors go with it, in the same order). */
export function offerMessage(pid: number, addresses: readonly string[]): Buffer {
  return Buffer.from(
    JSON.stringify({ version: VERSION, pid, sockets: addresses.map((address) => ({ address })) }) + '\n',
  );
}

/**
 * The sockets of an offer line, paired with the descriptors that came with it; throws, naming
 * what is wrong, when the line is not an offer of this version or the counts differ.
 */
export function parseOffer(line: string, fds: readonly number[]): { pid: number; sockets: OfferedSocket[] } {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch {
    throw new Error(`the hand-over offer is not JSON: ${JSON.stringify(line.slice(0, 80))}`);
  }
  const o = doc as { version?: unknown; pid?: unknown; sockets?: unknown };
  if (typeof o !== 'object' || o === null || o.version !== VERSION)
    throw new Error(`the hand-over offer has version ${JSON.stringify(o?.version)}, not ${VERSION}`);
  if (!Array.isArray(o.sockets) || typeof o.pid !== 'number')
    throw new Error('the hand-over offer lacks "pid" or "sockets"');
  const sockets = o.sockets as unknown[];
  if (sockets.length !== fds.length)
    throw new Error(`the hand-over offer names ${sockets.length} sockets but ${fds.length} descriptors came`);
  return {
    pid: o.pid,
    sockets: sockets.map((s, i) => {
      const address = (s as { address?: unknown } | null)?.address;
      if (typeof address !== 'string') throw new Error(`the hand-over offer's sockets[${i}] has no address`);
      return { address, fd: fds[i]! };
    }),
  };
}

/** Step 3: the new process (`pid`) listens on the sockets. */
export function listeningMessage(pid: number): string {
  return `listening pid=${pid}\n`;
}

/** The new process's pid from a step-3 line (undefined when it gave none); null: not that line. */
export function parseListening(line: string): number | undefined | null {
  const m = /^listening(?: pid=(\d+))?$/.exec(line.trim());
  if (m === null) return null;
  return m[1] === undefined ? undefined : Number(m[1]);
}

export interface InheritPlan {
  /** Address → the descriptor to listen on. */
  readonly inherit: ReadonlyMap<string, number>;
  /** Descriptors offered that no wanted address takes: to be closed. */
  readonly unused: readonly number[];
}

/**
 * Which offered sockets serve the addresses the new configuration listens on (same `host:port`):
 * each wanted address takes the first socket offered for it; the rest are unused (listeners the
 * new file removed or moved, duplicates). Wanted addresses without one are bound afresh.
 */
export function planInheritance(offered: readonly OfferedSocket[], wanted: readonly string[]): InheritPlan {
  const want = new Set(wanted);
  const inherit = new Map<string, number>();
  const unused: number[] = [];
  for (const s of offered) {
    if (want.has(s.address) && !inherit.has(s.address)) inherit.set(s.address, s.fd);
    else unused.push(s.fd);
  }
  return { inherit, unused };
}
