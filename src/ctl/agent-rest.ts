/**
 * Requests to a member's REST API, as patronictl's `request_patroni` makes them: the member's
 * `api_url` with its path replaced by the endpoint, JSON bodies, basic authentication from
 * `restapi.authentication` of the ctl config, a bounded wait.
 */
import type { Agent } from 'undici';
import { restFetch } from '../api/rest-tls.js';
import { PgfleetError, errorMessage } from '../errors.js';

export interface AgentReply {
  readonly status: number;
  readonly body: string;
}

export interface RestAuth {
  readonly username: string;
  readonly password?: string | undefined;
}

export function endpointUrl(apiUrl: string, endpoint: string): string {
  const u = new URL(apiUrl);
  u.pathname = `/${endpoint}`;
  u.search = '';
  return u.toString();
}

export async function requestAgent(
  apiUrl: string | undefined,
  method: string,
  endpoint: string,
  opts: { body?: unknown; auth?: RestAuth | undefined; timeoutMs: number; dispatcher?: Agent | undefined },
): Promise<AgentReply> {
  if (apiUrl === undefined) throw new PgfleetError('ERR_CTL_REJECTED', 'the member publishes no api_url');
  const headers: Record<string, string> = {};
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.auth) {
    const token = Buffer.from(`${opts.auth.username}:${opts.auth.password ?? ''}`).toString('base64');
    headers.Authorization = `Basic ${token}`;
  }
  const url = endpointUrl(apiUrl, endpoint);
  try {
    const res = await restFetch(url, {
      dispatcher: opts.dispatcher,
      method: method.toUpperCase(),
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    throw new PgfleetError(
      'ERR_CTL_REJECTED',
      `${method.toUpperCase()} ${url} failed: ${errorMessage(err)}`,
      {
        cause: err,
      },
    );
  }
}
