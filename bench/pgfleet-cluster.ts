/**
 * The benchmarks' pgfleet cluster: three agents (a1, a2, a3) on one etcd (member or cluster), each
 * with its PostgreSQL, waited on until healthy; what the failover benches do to it (read the
 * cluster from any agent's REST API, switch over with `pgfleet ctl`, restart an agent).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { trackPidFile, type EtcdCluster, type EtcdServer } from '../test/harness/index.js';
import {
  getJson,
  spawnAgentProcess,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from '../test/integration/agent-helpers.js';
import { ROOT } from './lib.js';

export interface AgentClusterBenchOptions {
  readonly etcd: EtcdServer | EtcdCluster;
  readonly scope: string;
  readonly ttl: number;
  readonly loopWait: number;
  readonly retryTimeout: number;
  /** `postgresql.pg_hba` of every node (default the agent's: SCRAM over TCP). */
  readonly pgHba?: readonly string[];
  /** More `agent` settings of every node (pgfleet's section), e.g. `{ switchover_drain_timeout: 0 }`. */
  readonly agentSection?: Readonly<Record<string, unknown>>;
}

export interface AgentClusterBench {
  readonly nodes: readonly AgentNode[];
  readonly named: (name: string) => AgentNode;
  /** The cluster as the first agent that answers shows it (GET /cluster). */
  readonly cluster: () => Promise<ClusterJson>;
  /** The running leader's name. */
  readonly leader: () => Promise<string | undefined>;
  /** A replica's name (not stopped). */
  readonly replica: () => Promise<string>;
  /** `pgfleet ctl switchover --candidate X --force`, through a running agent's config. */
  readonly switchover: (candidate: string) => Promise<{ code: number | null; output: string }>;
  /** Starts the member's agent again once its process exited. */
  readonly restartAgent: (name: string) => Promise<void>;
  /** Waits for three running members with one leader. */
  readonly heal: (timeoutMs: number) => Promise<void>;
}

export async function startAgentCluster(opts: AgentClusterBenchOptions): Promise<AgentClusterBench> {
  const nodes: AgentNode[] = [];
  for (const name of ['a1', 'a2', 'a3']) {
    const node = await startAgent(
      {
        etcd: opts.etcd,
        scope: opts.scope,
        ttlSeconds: opts.ttl,
        loopWaitSeconds: opts.loopWait,
        retryTimeoutSeconds: opts.retryTimeout,
        ...(opts.pgHba === undefined ? {} : { pgHba: opts.pgHba }),
        ...(opts.agentSection === undefined ? {} : { agentSection: opts.agentSection }),
      },
      name,
    );
    trackPidFile(path.join(node.dir, 'data', 'postmaster.pid'));
    nodes.push(node);
  }
  await waitForHealthyCluster(nodes, 120_000);

  const cluster = async (): Promise<ClusterJson> => {
    let lastError: unknown;
    for (const n of nodes) {
      try {
        return (await getJson<ClusterJson>(n.apiPort, '/cluster')).body;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  };
  const named = (name: string): AgentNode => {
    const n = nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no agent ${name}`);
    return n;
  };
  return {
    nodes,
    named,
    cluster,
    leader: async () =>
      (await cluster()).members.find((m) => m.role === 'leader' && m.state === 'running')?.name,
    replica: async () => {
      const r = (await cluster()).members.find((m) => m.role !== 'leader' && m.state !== 'stopped');
      if (r === undefined) throw new Error('pgfleet: no replica');
      return r.name;
    },
    switchover: async (candidate) => {
      const leaderNode = nodes.find((n) => n.process.isRunning) ?? nodes[0]!;
      return await runForOutput(process.execPath, [
        path.join(ROOT, 'bin', 'pgfleet'),
        'ctl',
        '-c',
        leaderNode.configFile,
        'switchover',
        '--candidate',
        candidate,
        '--force',
      ]);
    },
    restartAgent: async (name) => {
      const n = named(name);
      await n.process.exited;
      n.process = await spawnAgentProcess(n);
    },
    heal: async (timeoutMs) => void (await waitForHealthyCluster(nodes, timeoutMs)),
  };
}

/** Runs a command (stdin not a terminal), 60 s at most: its exit code and its output, both streams. */
export function runForOutput(
  command: string,
  args: string[],
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, output });
    });
  });
}
