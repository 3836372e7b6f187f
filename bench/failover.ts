/**
 * Failover benchmark: write RTO on node loss and on switchover, failed attempts and the time until
 * a session opened before the event is closed, for pgfleet (3 agents + the pgfleet proxy) and for
 * Patroni 3 + HAProxy (the standard config: httpchk OPTIONS /primary, `inter 3s fall 3 rise 2
 * on-marked-down shutdown-sessions`), both at the same ttl, loop_wait and retry_timeout, in one run.
 *
 * Per round, scenario and stack (stack order alternates by round):
 *   - a writer opens a NEW connection through the write port every 50 ms and inserts one row
 *     (2 s timeout per attempt, connect included);
 *   - one long-lived session, opened through the write port before the event, runs `select 1`
 *     every 250 ms; it counts as closed on the first socket end/error or failed probe;
 *   - the event: `node-loss` SIGKILLs the leader's agent/Patroni and its postmaster (pid from
 *     data/postmaster.pid); `switchover` runs `pgfleet ctl switchover --candidate X --force` /
 *     `patronictl switchover --candidate X --force` (the event time is when the command starts);
 *     `etcd-member-loss` SIGKILLs the first-listed member of the 3-member etcd cluster both stacks
 *     use, `etcd-leader-loss` its raft leader (no failover should follow: the table says whether
 *     the leader was kept; the member is restarted after ttl + 5 s of watching); `agent-restart`
 *     SIGKILLs the leader's agent/Patroni alone and starts it again 0.5 s later (systemd's
 *     Restart=always), `agent-upgrade` sends the pgfleet agent SIGUSR2 (hand over) and starts it
 *     again (pgfleet only) — no failover should follow; `agent-kill` SIGKILLs the leader's agent
 *     alone for good (pgfleet only: Patroni 3.0.2 leaves its PostgreSQL writable), started again
 *     after the observation.
 * Write RTO: from the event to the end of the first successful insert after the last failed one;
 * with no failure, the longest gap between successful inserts after the event. The killed member
 * is restarted and the cluster healed before the next event.
 *
 *   npm run bench:failover -- [--rounds 2] [--ttl 10] [--loop-wait 2] [--retry-timeout 3]
 *        [--scenarios node-loss,switchover,etcd-member-loss,etcd-leader-loss,agent-restart,agent-upgrade,agent-kill]
 *        [--stacks pgfleet,patroni]
 *
 * Both stacks use one 3-member etcd cluster (every component is given all three endpoints).
 *
 * Loopback only. Results also go to `.bench-out/failover-<timestamp>.json`.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  freePort,
  isAlive,
  isClusterReady,
  patroniHaproxyConfig,
  readPidFile,
  startEtcdCluster,
  startHaproxy,
  startPatroniCluster,
  waitFor,
  type EtcdCluster as EtcdTestCluster,
  type EtcdServer,
  type PatroniCluster,
} from '../test/harness/index.js';
import { SUPERUSER } from '../test/integration/agent-helpers.js';
import { startAgentCluster } from './pgfleet-cluster.js';
import { startPgfleetProxy } from './pgfleet-proxy.js';
import { armWatchdog, foreignProcesses, log, median, OUT_DIR, ROOT, runMain, timestamp } from './lib.js';

const SCENARIOS = [
  'node-loss',
  'switchover',
  'etcd-member-loss',
  'etcd-leader-loss',
  'agent-restart',
  'agent-upgrade',
  'agent-kill',
] as const;
/** Scenarios after which the leader should stay where it was (watched for ttl + 5 s). */
const LEADER_STAYS: readonly Scenario[] = [
  'etcd-member-loss',
  'etcd-leader-loss',
  'agent-restart',
  'agent-upgrade',
];
/** How long after an agent's death its restart is modelled to come (systemd Restart=always). */
const AGENT_RESTART_DELAY_MS = 500;
type Scenario = (typeof SCENARIOS)[number];
const STACKS = ['pgfleet', 'patroni'] as const;
type Stack = (typeof STACKS)[number];
const STACK_LABEL: Record<Stack, string> = {
  pgfleet: 'pgfleet agents + pgfleet proxy',
  patroni: 'Patroni + HAProxy',
};

const WRITE_EVERY_MS = 50;
const ATTEMPT_TIMEOUT_MS = 2_000;
/** The old session counts as "stayed open" when still open this long after the event. */
const SESSION_WINDOW_MS = 30_000;
/** Writes count as recovered after this long without a failure (and a new leader). */
const STABLE_MS = 5_000;
/** Hard cap on one event's observation. */
const OBSERVE_MAX_MS = 90_000;
const HEAL_TIMEOUT_MS = 90_000;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '2' },
      ttl: { type: 'string', default: '10' },
      'loop-wait': { type: 'string', default: '2' },
      'retry-timeout': { type: 'string', default: '3' },
      scenarios: { type: 'string', default: 'node-loss,switchover' },
      stacks: { type: 'string', default: STACKS.join(',') },
    },
    strict: true,
  });
  const int = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const pick = <T extends string>(name: string, list: string, known: readonly T[]): T[] =>
    list.split(',').map((x) => {
      const found = known.find((k) => k === x.trim());
      if (found === undefined) throw new Error(`unknown ${name} ${x}; known: ${known.join(',')}`);
      return found;
    });
  const opts = {
    rounds: int('rounds', values.rounds, 1),
    ttl: int('ttl', values.ttl, 2),
    loopWait: int('loop-wait', values['loop-wait'], 1),
    retryTimeout: int('retry-timeout', values['retry-timeout'], 1),
    scenarios: pick('scenario', values.scenarios, SCENARIOS),
    stacks: pick('stack', values.stacks, STACKS),
  };
  if (opts.loopWait + 2 * opts.retryTimeout > opts.ttl) {
    throw new Error('loop_wait + 2 × retry_timeout must be ≤ ttl (the agent refuses otherwise)');
  }
  return opts;
}
type Options = ReturnType<typeof parseOptions>;

/** What the benchmark needs from either stack. */
interface StackUnderTest {
  readonly stack: Stack;
  readonly writePort: number;
  readonly password: string;
  readonly dirs: string[];
  leader(): Promise<string | undefined>;
  /** A running replica's name. */
  replica(): Promise<string>;
  /** SIGKILL the member's agent/Patroni and its postmaster (and pgfleet's watchdog): node loss. */
  kill(name: string): void;
  /** SIGKILL the member's agent/Patroni alone. */
  killAgent(name: string): void;
  /** pgfleet: SIGUSR2 (hand over to the next agent), resolved once it exited; undefined for Patroni. */
  readonly handOver: ((name: string) => Promise<void>) | undefined;
  /** Starts the agent/Patroni of a member whose PostgreSQL may still run. */
  restartAgent(name: string): Promise<void>;
  switchover(candidate: string): Promise<{ code: number | null; output: string }>;
  /** Starts a killed member's agent/Patroni again. */
  restart(name: string): Promise<void>;
  /** Waits for 3 running members with one leader. */
  heal(): Promise<void>;
  /** The cluster as the REST API shows it, for warnings. */
  describe(): Promise<string>;
}

interface Attempt {
  readonly startMs: number;
  readonly endMs: number;
  readonly ok: boolean;
  readonly error?: string;
}

interface EventResult {
  readonly round: number;
  readonly scenario: Scenario;
  readonly stack: Stack;
  readonly oldLeader: string;
  readonly newLeader: string | undefined;
  /** etcd scenarios: the leader after the watch is the one before. */
  readonly leaderKept: boolean;
  /** Write RTO in ms (see the file comment). */
  readonly rtoMs: number;
  readonly failedAttempts: number;
  readonly attempts: number;
  /** ms from the event until the long-lived session was closed; undefined = stayed open. */
  readonly sessionClosedMs: number | undefined;
  readonly sessionCloseHow: string | undefined;
  readonly commandMs: number | undefined;
  readonly commandCode: number | null | undefined;
  readonly errors: Record<string, number>;
  readonly loadavg1: number;
  readonly foreignProcesses: number;
  readonly startedAt: string;
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const events = opts.rounds * opts.scenarios.length * opts.stacks.length;
  armWatchdog(300_000 + events * 180_000);
  const startLoad = os.loadavg()[0] ?? 0;
  const startForeign = foreignProcesses([]);
  log(
    `rounds=${opts.rounds} ttl=${opts.ttl} loop_wait=${opts.loopWait} retry_timeout=${opts.retryTimeout} ` +
      `cpus=${os.cpus().length} loadavg1=${startLoad.toFixed(2)} foreign-processes=${startForeign}`,
  );
  if (startForeign > 0 || startLoad > 1) {
    log('WARNING: the host is busy before the benchmark starts; numbers will be disturbed');
  }

  const etcd = await startEtcdCluster();
  const stacks: StackUnderTest[] = [];
  for (const s of opts.stacks) {
    log(`starting ${STACK_LABEL[s]}`);
    stacks.push(s === 'pgfleet' ? await startPgfleetStack(etcd, opts) : await startPatroniStack(etcd, opts));
  }
  const ourDirs = [...etcd.members.map((m) => m.dataDir), ...stacks.flatMap((s) => s.dirs)];
  for (const s of stacks) {
    await waitFor(
      `${s.stack} write port to reach only the leader`,
      // HAProxy starts with every server up until `fall` checks fail: 10 connections in a row.
      async () => {
        for (let i = 0; i < 10; i++) if (!(await attempt(s, 0)).ok) return false;
        return true;
      },
      90_000,
      250,
    );
    await query(
      s,
      'CREATE TABLE IF NOT EXISTS bench_failover(id bigserial PRIMARY KEY, at timestamptz DEFAULT now())',
    );
  }

  const results: EventResult[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const scenario of opts.scenarios) {
      const order = round % 2 === 1 ? stacks : [...stacks].reverse();
      for (const s of order) {
        if (!supports(s.stack, scenario)) {
          if (round === 1) log(`${scenario} is not run on ${s.stack} (pgfleet only)`);
          continue;
        }
        const r = await runEvent(s, scenario, round, ourDirs, etcd, opts);
        results.push(r);
        log(
          `[${results.length}/${events}] round ${round} ${scenario} ${s.stack}: ${r.oldLeader} → ${r.newLeader ?? '?'} ` +
            `RTO ${fmtS(r.rtoMs)} failed ${r.failedAttempts}/${r.attempts} ` +
            `old session ${r.sessionClosedMs === undefined ? 'stayed open' : `closed after ${fmtS(r.sessionClosedMs)} (${r.sessionCloseHow})`}` +
            (r.commandMs === undefined ? '' : ` command ${fmtS(r.commandMs)} exit ${r.commandCode}`) +
            (r.foreignProcesses > 0 ? ` foreign-processes=${r.foreignProcesses}` : ''),
        );
      }
    }
  }

  process.stdout.write('\n' + renderTable(results, opts) + '\n');
  const disturbed = results.filter((r) => r.foreignProcesses > 0).length;
  if (disturbed > 0) {
    process.stdout.write(
      `\nWARNING: ${disturbed}/${results.length} events saw other etcd/postgres/haproxy/patroni/test processes ` +
        `on the host (max loadavg1 ${Math.max(...results.map((r) => r.loadavg1)).toFixed(2)}); numbers are disturbed.\n`,
    );
  }
  await mkdir(OUT_DIR, { recursive: true });
  const outFile = path.join(OUT_DIR, `failover-${timestamp()}.json`);
  await writeFile(
    outFile,
    JSON.stringify(
      {
        options: opts,
        constants: { WRITE_EVERY_MS, ATTEMPT_TIMEOUT_MS, SESSION_WINDOW_MS, STABLE_MS },
        environment: {
          node: process.version,
          cpus: os.cpus().length,
          startLoadavg1: startLoad,
          startForeign,
        },
        summaries: summarise(results, opts),
        results,
      },
      null,
      2,
    ) + '\n',
  );
  log(`results written to ${path.relative(ROOT, outFile)}`);
}

/** agent-upgrade needs pgfleet's hand-over; agent-kill would leave Patroni 3.0.2's primary writable. */
function supports(stack: Stack, scenario: Scenario): boolean {
  return stack === 'pgfleet' || (scenario !== 'agent-upgrade' && scenario !== 'agent-kill');
}

async function runEvent(
  s: StackUnderTest,
  scenario: Scenario,
  round: number,
  ourDirs: string[],
  etcd: EtcdTestCluster,
  opts: Options,
): Promise<EventResult> {
  await etcd.waitForLeader(30_000);
  const startedAt = new Date().toISOString();
  const foreign = foreignProcesses(ourDirs);
  try {
    await s.heal();
  } catch (err) {
    log(
      `WARNING: ${s.stack} did not heal before the event (${(err as Error).message}): ${await s.describe().catch(() => '?')}`,
    );
  }
  const oldLeader = await s.leader();
  if (oldLeader === undefined) throw new Error(`${s.stack}: no leader before the event`);
  const candidate = scenario === 'switchover' ? await s.replica() : undefined;

  // Writer: a new connection + insert every 50 ms.
  const attempts: Attempt[] = [];
  const inflight = new Set<Promise<void>>();
  let writing = true;
  const writer = (async () => {
    while (writing) {
      const p = attempt(s, 1).then((a) => void attempts.push(a));
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      await sleep(WRITE_EVERY_MS);
    }
  })();

  // Long-lived session, opened before the event.
  const session = client(s);
  await session.connect();
  let sessionClosedAt: number | undefined;
  let sessionCloseHow: string | undefined;
  const closed = (how: string): void => {
    if (sessionClosedAt === undefined) {
      sessionClosedAt = performance.now();
      sessionCloseHow = how;
    }
  };
  session.on('end', () => closed('socket closed'));
  session.on('error', (err: Error) => closed(`error: ${err.message}`));
  let probing = true;
  const prober = (async () => {
    while (probing && sessionClosedAt === undefined) {
      try {
        await session.query('select 1');
      } catch (err) {
        closed(`probe failed: ${(err as Error).message}`);
      }
      await sleep(250);
    }
  })();

  await sleep(2_000); // a baseline of successful writes
  const t0 = performance.now();
  let commandMs: number | undefined;
  let commandCode: number | null | undefined;
  let killedEtcd: EtcdServer | undefined;
  if (scenario === 'node-loss') {
    s.kill(oldLeader);
  } else if (scenario === 'etcd-member-loss' || scenario === 'etcd-leader-loss') {
    killedEtcd = scenario === 'etcd-member-loss' ? etcd.members[0]! : await etcd.leader();
    killedEtcd.kill('SIGKILL');
  } else if (scenario === 'agent-restart' || scenario === 'agent-kill') {
    s.killAgent(oldLeader);
    if (scenario === 'agent-restart') {
      await sleep(AGENT_RESTART_DELAY_MS); // the restart delay being modelled
      await s.restartAgent(oldLeader);
    }
  } else if (scenario === 'agent-upgrade') {
    await s.handOver!(oldLeader);
    await s.restartAgent(oldLeader);
  } else {
    const res = await s.switchover(candidate!);
    commandMs = performance.now() - t0;
    commandCode = res.code;
    if (res.code !== 0) log(`WARNING: ${s.stack} switchover exited ${res.code}: ${res.output.trim()}`);
  }

  // Observe until writes are stable on a new leader and the old session closed (or its window passed).
  let newLeader: string | undefined;
  // etcd and agent-restart scenarios: no failover is expected; watch past any lease deadline.
  const watchOnly = LEADER_STAYS.includes(scenario);
  while (watchOnly && performance.now() - t0 < (opts.ttl + 5) * 1000) {
    await sleep(250);
    const l = await s.leader().catch(() => undefined);
    if (l !== undefined && l !== oldLeader) newLeader ??= l;
  }
  while (!watchOnly && performance.now() - t0 < OBSERVE_MAX_MS) {
    await sleep(250);
    const now = performance.now();
    const after = attempts.filter((a) => a.startMs >= t0);
    const lastFail = Math.max(t0, ...after.filter((a) => !a.ok).map((a) => a.endMs));
    const okSinceFail = after.filter((a) => a.ok && a.startMs > lastFail).length;
    if (newLeader === undefined) {
      const l = await s.leader().catch(() => undefined);
      if (l !== undefined && l !== oldLeader) newLeader = l;
    }
    const writesStable = newLeader !== undefined && now - lastFail >= STABLE_MS && okSinceFail > 0;
    const sessionDone = sessionClosedAt !== undefined || now - t0 >= SESSION_WINDOW_MS;
    if (writesStable && sessionDone) break;
  }
  writing = false;
  probing = false;
  await writer;
  await Promise.all([...inflight]);
  await prober;
  // Our own end of the session is not a close by the stack under test.
  session.removeAllListeners('end');
  session.removeAllListeners('error');
  session.on('error', () => undefined);
  await session.end().catch(() => undefined);

  const after = attempts.filter((a) => a.startMs >= t0).sort((a, b) => a.startMs - b.startMs);
  const failures = after.filter((a) => !a.ok);
  let rtoMs: number;
  if (failures.length > 0) {
    const lastFailStart = Math.max(...failures.map((a) => a.startMs));
    const recovered = after.filter((a) => a.ok && a.startMs > lastFailStart).map((a) => a.endMs);
    rtoMs = recovered.length > 0 ? Math.min(...recovered) - t0 : Number.POSITIVE_INFINITY;
  } else {
    const ends = after.map((a) => a.endMs).sort((a, b) => a - b);
    rtoMs = 0;
    let prev = t0;
    for (const e of ends) {
      rtoMs = Math.max(rtoMs, e - prev);
      prev = e;
    }
  }
  const errors: Record<string, number> = {};
  for (const f of failures) {
    const key = (f.error ?? 'unknown').replace(/\d+/g, 'N').slice(0, 80);
    errors[key] = (errors[key] ?? 0) + 1;
  }

  if (scenario === 'node-loss') await s.restart(oldLeader);
  if (scenario === 'agent-kill') await s.restartAgent(oldLeader);
  const leaderAfter = watchOnly ? await s.leader().catch(() => undefined) : undefined;
  if (killedEtcd !== undefined) {
    await killedEtcd.start();
    await etcd.waitForLeader(30_000);
  }
  return {
    round,
    scenario,
    stack: s.stack,
    oldLeader,
    newLeader,
    leaderKept: newLeader === undefined && leaderAfter === oldLeader,
    rtoMs,
    failedAttempts: failures.length,
    attempts: after.length,
    sessionClosedMs:
      sessionClosedAt !== undefined && sessionClosedAt - t0 <= SESSION_WINDOW_MS
        ? sessionClosedAt - t0
        : undefined,
    sessionCloseHow,
    commandMs,
    commandCode,
    errors,
    loadavg1: os.loadavg()[0] ?? 0,
    foreignProcesses: foreign,
    startedAt,
  };
}

function client(s: StackUnderTest): pg.Client {
  return new pg.Client({
    host: '127.0.0.1',
    port: s.writePort,
    user: SUPERUSER.username,
    password: s.password,
    database: 'postgres',
    connectionTimeoutMillis: ATTEMPT_TIMEOUT_MS,
    query_timeout: ATTEMPT_TIMEOUT_MS,
  });
}

async function query(s: StackUnderTest, text: string): Promise<void> {
  const c = client(s);
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query(text);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** One new connection through the write port, one insert (mode 0: on a primary), 2 s in all. */
async function attempt(s: StackUnderTest, mode: 0 | 1): Promise<Attempt> {
  const startMs = performance.now();
  const c = client(s);
  c.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await c.connect();
        if (mode === 1) await c.query('INSERT INTO bench_failover DEFAULT VALUES');
        else if ((await c.query('select pg_is_in_recovery() as r')).rows[0]?.r !== false) {
          throw new Error('not a primary');
        }
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('attempt timed out after 2 s')), ATTEMPT_TIMEOUT_MS);
      }),
    ]);
    return { startMs, endMs: performance.now(), ok: true };
  } catch (err) {
    return { startMs, endMs: performance.now(), ok: false, error: (err as Error).message };
  } finally {
    clearTimeout(timer);
    // end() waits for the server; a stuck connection is destroyed instead.
    const ended = c.end().catch(() => undefined);
    await Promise.race([ended, sleep(500)]);
  }
}

async function startPgfleetStack(etcd: EtcdTestCluster, opts: Options): Promise<StackUnderTest> {
  const scope = `bench-failover-${process.pid}`;
  const agents = await startAgentCluster({
    etcd,
    scope,
    ttl: opts.ttl,
    loopWait: opts.loopWait,
    retryTimeout: opts.retryTimeout,
  });
  const { nodes, named } = agents;

  // The proxy's defaults (routing on the etcd watch, no REST health checks, wait_timeout derived
  // from ttl + loop_wait; the figures in docs/benchmarks.md were taken when the default was 5s).
  const proxy = await startPgfleetProxy({
    scope,
    etcdEndpoint: etcd.endpoints[0]!,
    etcdHosts: etcd.endpoints,
    env: { PGFLEET_FROM_SOURCE: '1' },
  });
  const writePort = proxy.port;
  const proxyDir = path.dirname(proxy.configPath);
  log(`pgfleet proxy pid ${proxy.process.pid} on 127.0.0.1:${writePort}`);

  return {
    stack: 'pgfleet',
    writePort,
    password: SUPERUSER.password,
    dirs: [proxyDir, ...nodes.map((n) => n.dir)],
    leader: agents.leader,
    replica: agents.replica,
    kill: (name) => {
      const n = named(name);
      const pmPid = readPidFile(path.join(n.dir, 'data', 'postmaster.pid'));
      const watchdogPid = readPidFile(path.join(n.dir, 'data.watchdog.sock.pid'));
      n.process.kill('SIGKILL');
      if (watchdogPid !== undefined) killQuietly(watchdogPid);
      if (pmPid !== undefined) killQuietly(pmPid);
    },
    killAgent: (name) => named(name).process.kill('SIGKILL'),
    handOver: async (name) => {
      const n = named(name);
      n.process.kill('SIGUSR2');
      await n.process.exited;
    },
    restartAgent: agents.restartAgent,
    switchover: agents.switchover,
    restart: agents.restartAgent,
    heal: async () => await agents.heal(HEAL_TIMEOUT_MS),
    describe: async () => JSON.stringify((await agents.cluster()).members),
  };
}

async function startPatroniStack(etcd: EtcdTestCluster, opts: Options): Promise<StackUnderTest> {
  const cluster: PatroniCluster = await startPatroniCluster({
    etcd,
    size: 3,
    ttl: opts.ttl,
    loopWait: opts.loopWait,
    retryTimeout: opts.retryTimeout,
    startTimeoutMs: 120_000,
  });
  const writePort = await freePort();
  const haproxy = await startHaproxy(
    patroniHaproxyConfig({ members: cluster.members, writePort, inter: '3s', fall: 3, rise: 2 }),
  );
  log(`HAProxy pid ${haproxy.pid} on 127.0.0.1:${writePort}`);
  return {
    stack: 'patroni',
    writePort,
    password: 'unused (pg_hba trust)',
    dirs: [path.dirname(haproxy.configPath), ...cluster.members.map((m) => m.dir)],
    leader: async () => await cluster.leader(),
    replica: async () => {
      const r = (await cluster.clusterJson()).members.find(
        (m) => m.role !== 'leader' && ['running', 'streaming'].includes(m.state),
      );
      if (r === undefined) throw new Error('patroni: no replica');
      return r.name;
    },
    kill: (name) => {
      const pmPid = readPidFile(
        path.join(cluster.members.find((m) => m.name === name)!.dataDir, 'postmaster.pid'),
      );
      cluster.killMember(name, 'SIGKILL');
      if (pmPid !== undefined) killQuietly(pmPid);
    },
    killAgent: (name) => cluster.killMember(name, 'SIGKILL'),
    handOver: undefined,
    restartAgent: async (name) => {
      await waitFor(`patroni ${name} to exit`, async () => {
        try {
          await cluster.restartMember(name);
          return true;
        } catch {
          return false;
        }
      });
    },
    switchover: async (candidate) => {
      const r = await cluster.patronictl(['switchover', '--candidate', candidate, '--force']);
      return { code: r.code, output: r.stdout + r.stderr };
    },
    restart: async (name) => {
      // The harness runs Postgres with full_page_writes off, so pg_rewind cannot bring the crashed
      // old primary back: start it from an empty data dir instead (Patroni takes a basebackup).
      const member = cluster.members.find((m) => m.name === name)!;
      await waitFor(
        `postmaster of ${name} to exit`,
        () => !isAlive(readPidFile(path.join(member.dataDir, 'postmaster.pid'))),
      );
      await rm(member.dataDir, { recursive: true, force: true });
      await waitFor(`patroni ${name} to exit`, async () => {
        try {
          await cluster.restartMember(name);
          return true;
        } catch {
          return false;
        }
      });
    },
    heal: async () =>
      void (await waitFor(
        'Patroni cluster to heal',
        async () => isClusterReady(await cluster.clusterJson(), 3),
        HEAL_TIMEOUT_MS,
        500,
      )),
    describe: async () => JSON.stringify((await cluster.clusterJson()).members),
  };
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

interface Summary {
  readonly scenario: Scenario;
  readonly stack: Stack;
  readonly events: number;
  readonly rtoMedianMs: number;
  readonly rtoMaxMs: number;
  readonly failedAttemptsMedian: number;
  readonly failedAttemptsMax: number;
  readonly sessionClosedMedianMs: number | undefined;
  readonly sessionStayedOpen: number;
  readonly leaderKept: number;
}

function summarise(results: readonly EventResult[], opts: Options): Summary[] {
  const out: Summary[] = [];
  for (const scenario of opts.scenarios) {
    for (const stack of opts.stacks) {
      const rs = results.filter((r) => r.scenario === scenario && r.stack === stack);
      if (rs.length === 0) continue;
      const closedMs = rs.flatMap((r) => (r.sessionClosedMs === undefined ? [] : [r.sessionClosedMs]));
      out.push({
        scenario,
        stack,
        events: rs.length,
        rtoMedianMs: median(rs.map((r) => r.rtoMs)),
        rtoMaxMs: Math.max(...rs.map((r) => r.rtoMs)),
        failedAttemptsMedian: median(rs.map((r) => r.failedAttempts)),
        failedAttemptsMax: Math.max(...rs.map((r) => r.failedAttempts)),
        sessionClosedMedianMs: closedMs.length > 0 ? median(closedMs) : undefined,
        sessionStayedOpen: rs.length - closedMs.length,
        leaderKept: rs.filter((r) => r.leaderKept).length,
      });
    }
  }
  return out;
}

function fmtS(ms: number): string {
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'never';
}

function renderTable(results: readonly EventResult[], opts: Options): string {
  const header = [
    'scenario',
    'stack',
    'median RTO',
    'max RTO',
    'failed attempts (median, max)',
    'old session closed after',
    'leader kept (etcd, agent-restart/upgrade)',
  ];
  const rows = summarise(results, opts).map((s) => [
    s.scenario,
    STACK_LABEL[s.stack],
    fmtS(s.rtoMedianMs),
    fmtS(s.rtoMaxMs),
    `${s.failedAttemptsMedian}, ${s.failedAttemptsMax}`,
    (s.sessionClosedMedianMs === undefined ? '' : `${fmtS(s.sessionClosedMedianMs)} (median)`) +
      (s.sessionStayedOpen > 0
        ? `${s.sessionClosedMedianMs === undefined ? '' : '; '}stayed open ${s.sessionStayedOpen}/${s.events}`
        : ''),
    LEADER_STAYS.includes(s.scenario) ? `${s.leaderKept}/${s.events}` : '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [
    `ttl ${opts.ttl}, loop_wait ${opts.loopWait}, retry_timeout ${opts.retryTimeout}; ${opts.rounds} round(s); ` +
      `new connection + insert every ${WRITE_EVERY_MS} ms (${ATTEMPT_TIMEOUT_MS / 1000} s timeout)`,
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ].join('\n');
}

runMain(main);
