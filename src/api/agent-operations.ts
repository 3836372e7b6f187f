/**
 * The agent's operator endpoints beyond switchover: POST/DELETE /restart, PATCH/PUT /config and
 * POST /reload, with Patroni's status codes and bodies. Bodies that Patroni answers with
 * `send_error(code)` get Python's http.server error page, as Patroni's do.
 * @see patroni/api.py do_POST_restart, do_DELETE_restart, do_PATCH_config, do_PUT_config,
 *   do_POST_reload, _read_json_content
 */
import type http from 'node:http';
import type { Agent } from '../agent/agent.js';
import type { ReloadPlan } from '../agent/config-reload.js';
import { admitRestart, type Reply } from '../agent/restart-rules.js';
import { mergePatch } from '../dcs/cluster-config.js';
import { errorMessage } from '../errors.js';
import { isPaused } from '../ha/dynamic-config.js';
import { readJsonBody } from './switchover.js';

export interface HttpReply {
  readonly status: number;
  readonly body: string;
  readonly type: string;
}

const EXPLAIN: Readonly<Record<number, [string, string]>> = {
  400: ['Bad Request', 'Bad request syntax or unsupported method'],
  409: ['Conflict', 'Request conflict'],
  411: ['Length Required', 'Client must specify Content-Length'],
  502: ['Bad Gateway', 'Invalid responses from another server/proxy'],
  503: ['Service Unavailable', 'The server cannot process the request due to a high load'],
};

/** Python's BaseHTTPRequestHandler.send_error page (what Patroni answers for these errors). */
export function sendErrorReply(code: number): HttpReply {
  const [message, explain] = EXPLAIN[code] ?? ['Error', 'Error'];
  const body = `<!DOCTYPE HTML>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <title>Error response</title>
    </head>
    <body>
        <h1>Error response</h1>
        <p>Error code: ${code}</p>
        <p>Message: ${message}.</p>
        <p>Error code explanation: ${code} - ${explain}.</p>
    </body>
</html>
`;
  return { status: code, body, type: 'text/html;charset=utf-8' };
}

const text = (r: Reply): HttpReply => ({ ...r, type: 'text/html' });
const json = (status: number, value: unknown): HttpReply => ({
  status,
  body: JSON.stringify(value),
  type: 'application/json',
});

export type JsonBody =
  { readonly kind: 'ok'; readonly value: Record<string, unknown> } | { readonly kind: 'bad' };

/** The request body as a JSON object, or `bad` (not JSON, not an object, too large). */
export async function readBody(req: http.IncomingMessage): Promise<JsonBody> {
  const value = await readJsonBody(req);
  return value === undefined ? { kind: 'bad' } : { kind: 'ok', value };
}

/**
 * Patroni's `_read_json_content`: no Content-Length → 411 (or `{}` when the body is optional);
 * anything but a JSON object (an empty one only when optional) → 400.
 */
export function checkJsonBody(
  req: http.IncomingMessage,
  body: JsonBody,
  optional: boolean,
): { readonly value: Record<string, unknown> } | { readonly reply: HttpReply } {
  const length = req.headers['content-length'];
  if (length === undefined) return optional ? { value: {} } : { reply: sendErrorReply(411) };
  if (length === '0' && optional) return { value: {} };
  if (body.kind === 'ok' && (optional || Object.keys(body.value).length > 0)) return { value: body.value };
  return { reply: sendErrorReply(400) };
}

export async function postRestart(
  agent: Agent,
  req: http.IncomingMessage,
  body: JsonBody,
): Promise<HttpReply> {
  const checked = checkJsonBody(req, body, true);
  if ('reply' in checked) return checked.reply;
  const config = agent.snapshotForApi.view?.config ?? {};
  const admission = admitRestart(checked.value, Date.now(), isPaused(config));
  if ('refused' in admission) return text(admission.refused);
  return text(await agent.requests.restart(admission.request));
}

export function deleteRestart(agent: Agent): HttpReply {
  return text(agent.requests.cancelScheduledRestart());
}

/** PATCH /config: Patroni's patch_config over the `config` key, written with its version check. */
export async function patchConfig(
  agent: Agent,
  req: http.IncomingMessage,
  body: JsonBody,
): Promise<HttpReply> {
  const checked = checkJsonBody(req, body, false);
  if ('reply' in checked) return checked.reply;
  const snapshot = await agent.requests.loadCluster();
  const revision = snapshot.modRevisions.get('config');
  const current = snapshot.view.config;
  if (revision === undefined) return sendErrorReply(503);
  const { config, changed } = mergePatch(current, checked.value);
  if (changed && !(await agent.requests.writeClusterConfig(JSON.stringify(config), revision)))
    return sendErrorReply(409);
  return json(200, config);
}

/** PUT /config: the whole `config` key replaced (written only when it differs). */
export async function putConfig(agent: Agent, req: http.IncomingMessage, body: JsonBody): Promise<HttpReply> {
  const checked = checkJsonBody(req, body, false);
  if ('reply' in checked) return checked.reply;
  const snapshot = await agent.requests.loadCluster();
  const current = snapshot.view.config;
  if (JSON.stringify(sortKeys(current)) !== JSON.stringify(sortKeys(checked.value))) {
    const written = await agent.requests
      .writeClusterConfig(JSON.stringify(checked.value), undefined)
      .catch(() => false);
    if (!written) return sendErrorReply(502);
  }
  return json(200, checked.value);
}

/**
 * POST /reload: 200 "nothing changed", 202 "reload scheduled" (Patroni's body) when something
 * changed, 503 with the reason when the file is invalid (the running configuration stays).
 */
export function postReload(reload: () => ReloadPlan): HttpReply {
  try {
    const plan = reload();
    if (plan.applied.length === 0 && plan.restartNeeded.length === 0)
      return { status: 200, body: 'nothing changed', type: 'text/plain' };
    return { status: 202, body: 'reload scheduled', type: 'text/html' };
  } catch (err) {
    return { status: 503, body: `reload failed: ${errorMessage(err)}`, type: 'text/plain' };
  }
}

/** Key order does not count when comparing configurations (Patroni's deep_compare). */
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => [k, sortKeys(x)]),
    );
  return v;
}
