/**
 * The admin status page: listeners (with their nodes and sessions), members (role, state,
 * timeline, lag, health checks, sessions), the DCS state and a pending switchover's hold, as plain HTML that reloads itself
 * every 2 s. Pure.
 */
import type { ProxyStatus } from '../proxy/proxy-status.js';

function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A listener's TLS: its mode; terminated TLS is relayed in JavaScript, until its certificate's expiry. */
function tlsCell(l: { tls: string; tls_certificate?: { not_after: string } }): string {
  if (l.tls_certificate === undefined) return l.tls;
  return `${l.tls} (TLS sessions relayed in JavaScript; certificate valid until ${l.tls_certificate.not_after})`;
}

export function renderStatusPage(s: ProxyStatus): string {
  const sessionsOf = (byNode: Record<string, number> | undefined) =>
    Object.values(byNode ?? {}).reduce((a, b) => a + b, 0);
  const memberSessions = (name: string) =>
    Object.values(s.sessions).reduce((a, byNode) => a + (byNode[name] ?? 0), 0);
  const listeners = Object.entries(
    s.listeners as Record<
      string,
      {
        listen: string;
        role: string;
        tls: string;
        tls_certificate?: { not_after: string };
        nodes: { name: string }[];
        excluded: Record<string, string>;
      }
    >,
  )
    .map(
      ([name, l]) =>
        `<tr><td>${esc(name)}</td><td>${esc(l.listen)}</td><td>${esc(l.role)}</td><td>${esc(tlsCell(l))}</td><td>${esc(l.nodes.map((n) => n.name).join(', ') || '— none —')}</td>` +
        `<td>${Object.entries(l.excluded)
          .map(([m, why]) => `${esc(m)}: ${esc(why)}`)
          .join('<br>')}</td><td>${sessionsOf(s.sessions[name])}</td></tr>`,
    )
    .join('');
  const members = Object.entries(
    s.members as Record<
      string,
      {
        role: string;
        state: string;
        host: string;
        port: number;
        lag_bytes: number | null;
        timeline: number | null;
        health?: Record<string, string>;
      }
    >,
  )
    .map(
      ([name, m]) =>
        `<tr><td>${esc(name)}${name === s.leader ? ' ★' : ''}</td><td>${esc(m.host)}:${esc(m.port)}</td><td>${esc(m.role)}</td><td>${esc(m.state)}</td><td>${esc(m.timeline ?? '')}</td><td>${esc(m.lag_bytes ?? '')}</td>` +
        `<td>${Object.entries(m.health ?? {})
          .map(([check, v]) => `${esc(check)}: ${v === 'up' ? 'up' : `<b>${esc(v)}</b>`}`)
          .join('<br>')}</td><td>${memberSessions(name)}</td></tr>`,
    )
    .join('');
  const dcs = s.dcs.connected
    ? `connected (etcd member ${esc(s.dcs.member ?? '?')})`
    : `<b>unreachable</b> (stale ${esc(s.dcs.staleSeconds ?? '?')} s: ${esc(s.dcs.lastError ?? '')})` +
      (s.dcs.checkingAgents ? "; routing by the agents' REST checks" : '');
  const hold = s.switchoverHold;
  const held =
    hold === null || hold === undefined
      ? ''
      : ` · <b>switchover pending away from ${esc(hold.from)}</b>: transaction-pooled clients held for ${esc(hold.heldForMs)} ms (cap ${esc(hold.capMs)} ms)`;
  return `<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>pgfleet proxy — ${esc(s.cluster)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head>
<body><h1>pgfleet proxy — cluster ${esc(s.cluster)}</h1>
<p>Routing generation ${esc(s.generation)} · relay ${esc(s.relay)} · DCS ${dcs} · leader ${esc(s.leader ?? 'none')}${held} · ${esc(s.clientConnections)} client connections</p>
<h2>Listeners</h2><table><tr><th>name</th><th>listen</th><th>role</th><th>TLS</th><th>nodes</th><th>excluded</th><th>sessions</th></tr>${listeners}</table>
<h2>Members</h2><table><tr><th>name</th><th>address</th><th>role</th><th>state</th><th>timeline</th><th>lag (bytes)</th><th>health checks</th><th>sessions</th></tr>${members}</table>
<p><a href="/status">/status</a> · <a href="/metrics">/metrics</a></p></body></html>`;
}
