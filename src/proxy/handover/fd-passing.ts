/**
 * Descriptor passing over a Unix stream socket (SCM_RIGHTS), from the native addon
 * (native/fd-pass.c): what the upgrade hand-over needs and Node's net module cannot do. Results
 * come back as values; a negative errno is turned into an Error naming the call and the errno.
 */
import { constants } from 'node:os';
import { loadAddon } from '../relay/native-relay.js';

interface FdPassAddon {
  connectUnix(path: string): number;
  sendFds(socketFd: number, payload: Buffer, fds: readonly number[]): number;
  recvFds(socketFd: number, maxBytes: number, timeoutMs: number): { data: Buffer; fds: number[] } | number;
}

/** The most descriptors one message carries (MAX_PASSED_FDS in native/fd-pass.c). */
export const MAX_PASSED_FDS = 64;

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** `connect failed: ECONNREFUSED` from a call's negative errno. */
export function errnoError(call: string, rc: number): Error & { code: string } {
  const code = ERRNO_NAMES.get(-rc) ?? `errno ${-rc}`;
  return Object.assign(new Error(`${call} failed: ${code}`), { code });
}

export class FdPassing {
  readonly #addon: FdPassAddon;

  private constructor(addon: FdPassAddon) {
    this.#addon = addon;
  }

  /** The calls from the addon at `addonPath` (default: the built one), or why it cannot be loaded. */
  static load(addonPath?: string): FdPassing | Error {
    const addon = loadAddon(addonPath);
    if (addon instanceof Error) return addon;
    const calls = addon as unknown as Partial<FdPassAddon>;
    if (typeof calls.sendFds !== 'function')
      return new Error('the native addon has no descriptor passing: rebuild it with `npm run build`');
    return new FdPassing(calls as FdPassAddon);
  }

  /** A blocking, close-on-exec Unix stream socket connected to `path`. Throws (code: ENOENT, …). */
  connect(path: string): number {
    const fd = this.#addon.connectUnix(path);
    if (fd < 0) throw errnoError(`connect to ${path}`, fd);
    return fd;
  }

  /** Sends `payload` whole with `fds` attached, in one sendmsg; throws on an error or a short send. */
  send(socketFd: number, payload: Buffer, fds: readonly number[]): void {
    const rc = this.#addon.sendFds(socketFd, payload, fds);
    if (rc < 0) throw errnoError('sendmsg', rc);
    if (rc !== payload.length) throw new Error(`sendmsg sent ${rc} of ${payload.length} bytes`);
  }

  /**
   * Waits up to `timeoutMs` for the socket to be readable, then reads once: up to `maxBytes` bytes
   * and the descriptors attached (close-on-exec; the caller owns them). Empty data: end of file.
   */
  receive(socketFd: number, maxBytes: number, timeoutMs: number): { data: Buffer; fds: number[] } {
    const r = this.#addon.recvFds(socketFd, maxBytes, Math.max(0, Math.round(timeoutMs)));
    if (typeof r === 'number') throw errnoError('recvmsg', r);
    return r;
  }
}
