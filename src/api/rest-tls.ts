/**
 * TLS for requests to agents' REST APIs, as Patroni's own client resolves it (patroni/request.py):
 * the CA is `ctl.cacert`, else `restapi.cafile`; the client certificate `ctl.certfile`, else
 * `restapi.certfile` (and the key likewise); `ctl.insecure` skips verifying the server — with a
 * client certificate only its host name is not checked (Patroni's assert_hostname false). Used
 * by the agent (peer probes, failsafe), `pgfleet ctl` and, through `proxy.agent_tls`, the proxy.
 * Plain `http://` api_urls are unaffected.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Agent, fetch, type RequestInit, type Response } from 'undici';
import { PgfleetError, errorMessage } from '../errors.js';

export interface RestTlsSettings {
  readonly insecure: boolean;
  readonly cacert?: string | undefined;
  readonly certfile?: string | undefined;
  readonly keyfile?: string | undefined;
  readonly keyfilePassword?: string | undefined;
}

interface CtlLike {
  readonly insecure?: boolean | undefined;
  readonly cacert?: string | undefined;
  readonly certfile?: string | undefined;
  readonly keyfile?: string | undefined;
  readonly keyfile_password?: string | undefined;
}
interface RestapiLike {
  readonly cafile?: string | undefined;
  readonly certfile?: string | undefined;
  readonly keyfile?: string | undefined;
  readonly keyfile_password?: string | undefined;
}

/** Patroni's resolution of the `ctl` and `restapi` sections. Pure. */
export function restTlsSettings(ctl: CtlLike | undefined, restapi: RestapiLike | undefined): RestTlsSettings {
  return {
    insecure: ctl?.insecure === true,
    cacert: ctl?.cacert ?? restapi?.cafile,
    certfile: ctl?.certfile ?? restapi?.certfile,
    keyfile: ctl?.keyfile ?? restapi?.keyfile,
    keyfilePassword: ctl?.keyfile_password ?? restapi?.keyfile_password,
  };
}

/** The TLS options of a connection to an agent (files read now). */
export function tlsConnectOptions(s: RestTlsSettings): ConnectionOptions {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new PgfleetError('ERR_CONFIG_INVALID', `cannot read the ${what} ${file}: ${errorMessage(err)}`);
    }
  };
  const out: ConnectionOptions = {};
  if (s.cacert !== undefined) out.ca = read(s.cacert, 'CA certificate');
  if (s.certfile !== undefined) {
    out.cert = read(s.certfile, 'client certificate');
    out.key = read(s.keyfile ?? s.certfile, 'client key');
    if (s.keyfilePassword !== undefined) out.passphrase = s.keyfilePassword;
  }
  if (s.insecure && s.certfile === undefined) out.rejectUnauthorized = false;
  else if (s.insecure) out.checkServerIdentity = () => undefined;
  return out;
}

export function hasRestTls(s: RestTlsSettings): boolean {
  return s.insecure || s.cacert !== undefined || s.certfile !== undefined;
}

/** An undici dispatcher for agents' REST APIs; undefined when nothing is configured (the default). */
export function restDispatcher(s: RestTlsSettings, options: Agent.Options = {}): Agent | undefined {
  if (!hasRestTls(s)) return undefined;
  return new Agent({ ...options, connect: { ...tlsConnectOptions(s) } });
}

/** `fetch` through `dispatcher` (undici's own, so that its Agent is always understood). */
export async function restFetch(
  url: string,
  init: RequestInit & { dispatcher?: Agent | undefined },
): Promise<Response> {
  const { dispatcher, ...rest } = init;
  return await fetch(url, dispatcher ? { ...rest, dispatcher } : rest);
}
