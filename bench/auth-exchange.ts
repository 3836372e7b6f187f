/**
 * CPU per login of the proxy's authentication state machines, in process (no sockets): what the
 * proxy itself spends per client login (server side) and per server login (client side). A
 * benchmark, not a test: it asserts nothing.
 *
 *   node --import tsx bench/auth-exchange.ts [--seconds 2]
 *
 * Cases: the client-to-proxy SCRAM exchange with a SCRAM secret (the client's PBKDF2 is done once,
 * outside the timing: a real client pays it); md5; the proxy-to-server SCRAM login from recovered
 * keys (no PBKDF2) and from a plaintext password (one PBKDF2 at 4,096 iterations).
 */
import { parseArgs } from 'node:util';
import {
  ClientLogin,
  clientKeysFromPassword,
  createServerAuth,
  verifierFromPassword,
  type LoginCredentials,
  type ServerAuthExchange,
} from '../src/proxy/auth/index.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' } } });
const seconds = Number(values.seconds);

/** Whole messages → bodies of the 'R' ones. */
function authBodies(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length;) {
    const length = bytes.readUInt32BE(i + 1);
    if (bytes[i] === 0x52) out.push(bytes.subarray(i + 5, i + 1 + length));
    i += 1 + length;
  }
  return out;
}

/** One full exchange in memory; both sides' CPU. */
function exchange(server: ServerAuthExchange, client: ClientLogin): void {
  let step = server.start();
  while (step.type === 'continue') {
    let reply: Buffer | undefined;
    for (const body of authBodies(step.send)) {
      const c = client.receive(body);
      if (c.type === 'send') reply = c.send;
    }
    if (reply === undefined) throw new Error('no reply');
    step = server.receive(reply.subarray(5));
  }
  if (step.type !== 'ok') throw new Error(`login failed: ${step.reason}`);
}

const salt = Buffer.from('0123456789abcdef');
const verifier = verifierFromPassword('pw', salt, 4096);
const keys = clientKeysFromPassword('pw', salt, 4096);
const scramSecret = { kind: 'scram' as const, ...verifier };
const keyCredentials: LoginCredentials = { kind: 'scram-keys', keys };

const cases: [string, () => void][] = [
  [
    'client → proxy SCRAM (both sides, keys precomputed)',
    () =>
      exchange(
        createServerAuth({ method: 'scram-sha-256', user: 'u', secret: scramSecret }),
        new ClientLogin({ user: 'u', credentials: keyCredentials }),
      ),
  ],
  [
    'client → proxy md5 (both sides)',
    () =>
      exchange(
        createServerAuth({ method: 'md5', user: 'u', secret: { kind: 'password', password: 'pw' } }),
        new ClientLogin({ user: 'u', credentials: { kind: 'password', password: 'pw' } }),
      ),
  ],
  [
    'proxy → server SCRAM from a plaintext password (one PBKDF2, 4096 iterations)',
    () =>
      exchange(
        createServerAuth({ method: 'scram-sha-256', user: 'u', secret: scramSecret }),
        new ClientLogin({ user: 'u', credentials: { kind: 'password', password: 'pw' } }),
      ),
  ],
];

for (const [name, run] of cases) {
  for (let i = 0; i < 50; i++) run();
  const start = process.cpuUsage();
  const until = performance.now() + seconds * 1000;
  let n = 0;
  while (performance.now() < until) {
    run();
    n++;
  }
  const cpu = process.cpuUsage(start);
  const usPerLogin = (cpu.user + cpu.system) / n;
  console.log(
    `${name}: ${n} logins, ${usPerLogin.toFixed(1)} µs CPU each (${Math.round(1e6 / usPerLogin)} per CPU-second)`,
  );
}
