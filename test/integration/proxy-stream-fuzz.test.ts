/**
 * The proxy under malformed and hostile input, as a separate process running the ASan + UBSan build
 * of its native relay (`relay: native`), in front of a real PostgreSQL and a hostile server. Its
 * fuzzed listener terminates TLS (`tls: terminate`): SSLRequests and direct-TLS first bytes go to
 * the relay threads' TLS bridges (OpenSSL), and psql's sessions (sslmode=prefer) collapse into relay
 * pairs, all under the sanitizers.
 *
 * - seeded, bounded stream fuzzing: random bytes; startup lengths 0/1/7/8/2^31−1/2^32−1/10 MB;
 *   truncated packets then FIN or RST; SSLRequest then garbage or a TLS ClientHello; odd
 *   CancelRequests; byte-at-a-time sends; half-closes; real sessions fed garbage; then a burst of
 *   connections opened at once;
 * - a hostile server whose malformed ErrorResponses are retried on every attempt;
 * - a pooled listener (transaction mode, plain): its clients accepted and served by the native
 *   socket transport (native/nio*.c) under the sanitizers, one round of fuzzed streams.
 *
 * It asserts: no crash and no sanitizer report, no hung connection (the proxy closes each stream
 * within its deadlines), the proxy's descriptors back to their baseline, its resident memory flat
 * across rounds, and psql served during and after. PGFLEET_FUZZ_SEED replays a run; the seed is
 * printed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import {
  cleanupAll,
  makeCertificates,
  makeTempDir,
  onCleanup,
  runCommand,
  sanitizerEnv,
  sanitizerReport,
  startEtcd,
  startPrimary,
  startProxyProcess,
  waitFor,
  type PgNode,
  type ProxyProcess,
} from '../harness/index.js';
import { KEYS, etcdClient, putMember, putStatus, SCOPE } from './proxy-helpers.js';

const SEED = Number(process.env.PGFLEET_FUZZ_SEED ?? 16);
const ROUNDS = 4;
const STREAMS_PER_ROUND = 5_000;
const BURST = 2_000;
const CONCURRENCY = 64;
/** The pooled listener's round (the native transport's accept, reads, writes and closes). */
const POOLED_STREAMS = 2_000;
/** Startup timeout 1 s, wait timeout 1 s: a stream the proxy has not closed by then is hung. */
const STREAM_DEADLINE_MS = 8_000;
/** Fuzz clients come from 127.0.0.2–9 (their own per-address limits); psql from 127.0.0.1. */
const SOURCES = 8;

/** mulberry32: a small seeded generator, so that a failing run can be replayed. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const packet = (code: number, body: Buffer = Buffer.alloc(0)): Buffer =>
  Buffer.concat([int32(8 + body.length), int32(code), body]);
const message = (type: string, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from(type, 'latin1'), int32(4 + body.length), body]);
const SSL = packet(80877103);
const GSS = packet(80877104);
const STARTUP = packet(196608, Buffer.from('user\0postgres\0database\0postgres\0\0'));
const CLIENT_HELLO = Buffer.concat([
  Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]),
]);
const LENGTHS = [0, 1, 7, 8, 2 ** 31 - 1, 2 ** 32 - 1, 10_000_000];

interface Stream {
  readonly kind: string;
  readonly bytes: Buffer;
  readonly bytewise: boolean;
  /** How the client ends: FIN, reset, or waiting for the proxy to close. */
  readonly ending: 'fin' | 'rst' | 'wait';
}

function makeStream(rand: () => number): Stream {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const junk = (max: number): Buffer =>
    Buffer.from(Array.from({ length: Math.floor(rand() * max) }, () => Math.floor(rand() * 256)));
  const ending = pick(['fin', 'rst', 'wait'] as const);
  const bytewise = rand() < 0.1;
  const r = rand();
  if (r < 0.2) return { kind: 'random bytes', bytes: junk(64), bytewise, ending };
  if (r < 0.35)
    return {
      kind: 'odd length',
      bytes: Buffer.concat([int32(pick(LENGTHS)), int32(196608), junk(32)]),
      bytewise,
      ending,
    };
  if (r < 0.5) {
    const cut = STARTUP.subarray(0, Math.floor(rand() * STARTUP.length));
    return { kind: 'truncated startup', bytes: cut, bytewise, ending: pick(['fin', 'rst', 'wait'] as const) };
  }
  if (r < 0.6)
    return { kind: 'SSLRequest, garbage', bytes: Buffer.concat([SSL, junk(40)]), bytewise, ending };
  if (r < 0.68)
    return {
      kind: 'SSLRequest, ClientHello',
      bytes: Buffer.concat([SSL, CLIENT_HELLO, junk(200)]),
      bytewise,
      ending,
    };
  if (r < 0.8) {
    const keyBytes = pick([0, 1, 3, 4, 4, 32, 256, 257, 300]);
    const key = Buffer.from(Array.from({ length: keyBytes }, () => Math.floor(rand() * 256)));
    const body = Buffer.concat([int32(Math.floor(rand() * 2 ** 32)), key]);
    return { kind: 'odd CancelRequest', bytes: packet(80877102, body), bytewise, ending };
  }
  if (r < 0.88)
    return { kind: 'GSSENCRequest, garbage', bytes: Buffer.concat([GSS, junk(24)]), bytewise, ending };
  if (r < 0.97)
    return {
      kind: 'half-close mid-packet',
      bytes: STARTUP.subarray(0, 1 + Math.floor(rand() * (STARTUP.length - 1))),
      bytewise,
      ending: 'fin',
    };
  // A real session (trust), then garbage the server will refuse: the relay and its end.
  const garbage = rand() < 0.5 ? junk(100) : message(pick(['Q', 'P', 'x', '\0']), junk(50));
  return {
    kind: 'session, then garbage',
    bytes: Buffer.concat([STARTUP, garbage]),
    bytewise: false,
    ending: pick(['fin', 'rst'] as const),
  };
}

/** Plays one stream against `port`; resolves with an error text when the proxy left it hanging. */
function play(port: number, s: Stream, source: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock: Socket = connect({ host: '127.0.0.1', port, localAddress: source });
    let done = false;
    const finish = (problem?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      sock.destroy();
      resolve(problem);
    };
    const deadline = setTimeout(
      () => finish(`hung: ${s.kind} (${s.ending}) ${s.bytes.toString('hex').slice(0, 80)}`),
      STREAM_DEADLINE_MS,
    );
    sock.on('error', () => finish());
    sock.on('close', () => finish());
    sock.on('data', () => undefined);
    sock.on('connect', () => {
      void (async () => {
        if (s.bytewise) {
          for (const b of s.bytes) {
            if (sock.destroyed) return;
            sock.write(Buffer.from([b]));
            await new Promise((r) => setImmediate(r));
          }
        } else if (s.bytes.length > 0) sock.write(s.bytes);
        if (s.ending === 'fin') sock.end();
        else if (s.ending === 'rst') setImmediate(() => sock.resetAndDestroy());
        // 'wait': the proxy must close it (startup timeout, or a FATAL)
      })();
    });
  });
}

async function runStreams(port: number, streams: Stream[], concurrency: number): Promise<string[]> {
  const problems: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < streams.length) {
      const i = next++;
      const p = await play(port, streams[i]!, `127.0.0.${2 + (i % SOURCES)}`);
      if (p !== undefined) problems.push(p);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return problems;
}

/** `select 1` through psql (`sslmode`: require on the TLS listener; disable on the pooled one, which is plain). */
async function psqlOne(port: number, sslmode: 'require' | 'disable' = 'require'): Promise<string> {
  const r = await runCommand(
    '/usr/bin/psql',
    ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-XAtqc', 'select 1'],
    { timeoutMs: 20_000, env: { PGCONNECT_TIMEOUT: '10', PGSSLMODE: sslmode } },
  );
  return r.code === 0 ? r.stdout.trim() : `psql failed: ${r.stderr.trim()}`;
}

/** A server that answers every StartupMessage with a malformed ErrorResponse, in turns. */
async function hostileServer(): Promise<{ port: number; replies: () => number }> {
  let replies = 0;
  const bad = [
    message('E', Buffer.concat([Buffer.from('SFATAL\0Mno sqlstate\0'), Buffer.alloc(1)])),
    message('E', Buffer.concat([Buffer.from('SFATAL\0C57P03\0M'), Buffer.alloc(900_000, 0x41)])), // unterminated
    Buffer.concat([Buffer.from('E'), int32(2_000_000), Buffer.alloc(60_000, 0x42)]), // over the message limit
    message('E', Buffer.from('SFATAL\0CXX\0Mshort code\0\0')),
  ];
  const server = createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.end(bad[replies++ % bad.length]!));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as AddressInfo).port, replies: () => replies };
}

const MiB = 1024 * 1024;

void describe(
  'proxy under stream fuzzing and a hostile server (sanitizer build)',
  { timeout: 300_000 },
  () => {
    let proxy: ProxyProcess;
    let pg: PgNode;
    let hostile: { port: number; replies: () => number };
    let baselineFds: number;

    before(async () => {
      const etcd = await startEtcd();
      pg = await startPrimary('fuzz-pg', { parameters: { max_connections: '200' } });
      hostile = await hostileServer();
      const cert = await (await makeCertificates()).server('proxy');
      const userlist = path.join(await makeTempDir('fuzz-auth'), 'userlist.txt');
      await writeFile(userlist, '"postgres" "unused-with-trust"\n');
      const kv = etcdClient(etcd);
      await kv.put(KEYS.initialize).value('7000000000000000001').exec();
      await putMember(kv, pg, 'master', 1000);
      await putMember(kv, { name: 'hostile', port: hostile.port } as PgNode, 'replica', 1000);
      await putStatus(kv, 1000);
      await kv.put(KEYS.leader).value(pg.name).exec();
      proxy = await startProxyProcess({
        scope: SCOPE,
        etcdEndpoint: etcd.endpoint,
        listeners: [
          { name: 'primary', role: 'primary', tls: 'terminate' },
          { name: 'hostile', role: 'replica' },
          { name: 'pooled', role: 'primary', pool_mode: 'transaction', pool_size: 2 },
        ],
        proxy: {
          tls: { cert_file: cert.cert, key_file: cert.key },
          auth: { type: 'trust', file: userlist },
          relay: 'native',
          relay_threads: 1,
          startup_timeout: '1s',
          wait_timeout: '1s',
          connect_timeout: '1s',
          max_startup_connections: 3_000,
        },
        env: await sanitizerEnv(),
      });
      console.log(`stream fuzz seed ${SEED} (PGFLEET_FUZZ_SEED replays it)`);
      // Warm: a session long enough to reach the relay thread (its epoll set and eventfd).
      const warm = await runCommand(
        '/usr/bin/psql',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(proxy.ports.primary),
          '-U',
          'postgres',
          '-XAtqc',
          'select pg_sleep(0.2)',
        ],
        { timeoutMs: 20_000, env: { PGSSLMODE: 'require' } },
      );
      assert.equal(warm.code, 0, warm.stderr);
      // The pooled listener's server connection, idle in its pool from here on.
      assert.equal(await psqlOne(proxy.ports.pooled!, 'disable'), '1', 'psql through the pooled listener');
      await waitFor('the warm-up session closed', async () => (await clientConnections()) === 0, 10_000);
      baselineFds = proxy.fds();
    });
    after(async () => {
      if (proxy?.process.isRunning) {
        const status = await proxy.process.stop(15_000);
        assert.equal(sanitizerReport(proxy.log()), undefined, 'no sanitizer report');
        assert.equal(status.code, 0, `the proxy exits cleanly:\n${proxy.process.logTail()}`);
      }
      await cleanupAll();
    });

    const clientConnections = async (): Promise<number> => {
      const res = await request(`http://127.0.0.1:${proxy.adminPort}/status`);
      return ((await res.body.json()) as { clientConnections: number }).clientConnections;
    };
    const settled = async (what: string): Promise<void> => {
      assert.ok(proxy.process.isRunning, `the proxy is running (${what}):\n${proxy.process.logTail()}`);
      assert.equal(sanitizerReport(proxy.log()), undefined, `no sanitizer report (${what})`);
      await waitFor(
        `descriptors back to ${baselineFds} (${what})`,
        () => proxy.fds() <= baselineFds,
        20_000,
        100,
      );
    };

    void it(`survives ${ROUNDS} rounds of ${STREAMS_PER_ROUND} fuzzed streams and a burst of ${BURST}, serving psql throughout`, async () => {
      const rand = generator(SEED);
      const rss: number[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const streams = Array.from({ length: STREAMS_PER_ROUND }, () => makeStream(rand));
        const fuzz = runStreams(proxy.ports.primary!, streams, CONCURRENCY);
        assert.equal(await psqlOne(proxy.ports.primary!), '1', `psql during round ${round}`);
        const problems = await fuzz;
        assert.deepEqual(problems.slice(0, 5), [], `round ${round}: ${problems.length} hung connections`);
        await settled(`round ${round}`);
        rss.push(proxy.rssBytes());
      }
      // A burst: every connection at once, each saying a little.
      const burst = Array.from({ length: BURST }, () => makeStream(rand));
      const during = psqlOne(proxy.ports.primary!);
      const problems = await runStreams(proxy.ports.primary!, burst, BURST);
      assert.deepEqual(problems.slice(0, 5), [], `burst: ${problems.length} hung connections`);
      assert.equal(await during, '1', 'psql during the burst');
      await settled('burst');
      assert.equal(await psqlOne(proxy.ports.primary!), '1', 'psql after');
      console.log(`proxy RSS after each round: ${rss.map((b) => (b / MiB).toFixed(1)).join(', ')} MiB`);
      // Flat: what the later rounds add stays within noise (rounds 1–2 warm up the heap and allocator).
      const growth = rss[ROUNDS - 1]! - rss[1]!;
      assert.ok(
        growth < Math.max(16 * MiB, rss[1]! * 0.1),
        `RSS grew ${(growth / MiB).toFixed(1)} MiB after round 2`,
      );
    });

    void it(`a pooled listener on the native transport survives ${POOLED_STREAMS} fuzzed streams, serving psql`, async () => {
      const rand = generator(SEED + 1);
      const streams = Array.from({ length: POOLED_STREAMS }, () => makeStream(rand));
      const fuzz = runStreams(proxy.ports.pooled!, streams, CONCURRENCY);
      assert.equal(
        await psqlOne(proxy.ports.pooled!, 'disable'),
        '1',
        'psql through the pooled listener during the round',
      );
      const problems = await fuzz;
      assert.deepEqual(problems.slice(0, 5), [], `${problems.length} hung connections`);
      await settled('pooled round');
      assert.equal(
        await psqlOne(proxy.ports.pooled!, 'disable'),
        '1',
        'psql through the pooled listener after',
      );
    });

    void it('keeps its memory flat while a hostile server answers every retry with a malformed ErrorResponse', async () => {
      const rss: number[] = [];
      for (let round = 1; round <= 4; round++) {
        const before = hostile.replies();
        const answers = await Promise.all(
          Array.from({ length: 40 }, async (_, i) => {
            const s = connect({
              host: '127.0.0.1',
              port: proxy.ports.hostile!,
              localAddress: `127.0.0.${2 + (i % SOURCES)}`,
            });
            const parts: Buffer[] = [];
            s.on('data', (b: Buffer) => parts.push(b));
            s.on('error', () => undefined);
            s.on('connect', () => s.write(STARTUP));
            await new Promise((resolve) => s.once('close', resolve));
            return Buffer.concat(parts).toString('latin1');
          }),
        );
        // Each client is retried until wait_timeout, then told why: never a malformed reply passed on.
        for (const a of answers)
          assert.match(a, /SFATAL\0VFATAL\0C08006\0Mpgfleet: could not connect/, 'a FATAL of the proxy');
        assert.ok(hostile.replies() - before > 40, 'retried on every attempt');
        await settled(`hostile round ${round}`);
        rss.push(proxy.rssBytes());
      }
      console.log(
        `proxy RSS after each hostile round: ${rss.map((b) => (b / MiB).toFixed(1)).join(', ')} MiB`,
      );
      const growth = rss[3]! - rss[1]!;
      assert.ok(
        growth < Math.max(16 * MiB, rss[1]! * 0.1),
        `RSS grew ${(growth / MiB).toFixed(1)} MiB after round 2`,
      );
      assert.equal(await psqlOne(proxy.ports.primary!), '1', 'psql after');
    });
  },
);
