/**
 * `pgfleet ctl -c FILE <command>` (patronictl's subset): parse arguments, load FILE, connect to
 * etcd, ask for confirmation on a terminal (switchover, failover; like patronictl, not pause and
 * resume), print the outcome. Exit codes: 0 done, 1 refused or
 * failed (etcd unreachable, unknown candidate, the agent said no), 2 FILE is unreadable or invalid.
 */
import { createInterface } from 'node:readline/promises';
import { loadCtlConfig, type CtlConfig } from '../ctl/ctl-config.js';
import { formatClusterTable } from '../ctl/cluster-table.js';
import {
  parseScheduleOption,
  planManualFailover,
  runManualFailover,
  type ManualAction,
} from '../ctl/manual-failover.js';
import { EtcdAgentDcs } from '../dcs/agent-store.js';
import { updateClusterConfig } from '../dcs/cluster-config.js';
import { EtcdCluster } from '../dcs/etcd-cluster.js';
import { PgfleetError, errorMessage, isPgfleetError } from '../errors.js';
import { isPaused } from '../ha/dynamic-config.js';
import { parseFailover } from '../ha/switchover.js';
import { silentLogger } from '../observability/logger.js';

/** The agent answers /switchover within about 20 s; leave room for that. */
const MANUAL_FAILOVER_TIMEOUT_MS = 60_000;

export interface CtlCommand {
  readonly config: string;
  readonly command: 'list' | 'pause' | 'resume' | ManualAction;
  readonly candidate?: string | undefined;
  readonly scheduled?: string | undefined;
  readonly force?: boolean | undefined;
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function fail(message: string, code = 1): number {
  process.stderr.write(`pgfleet ctl: ${message}\n`);
  return code;
}

/** Asks on the terminal; false when declined. Throws when there is no terminal to ask on. */
async function confirm(question: string, what: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new Error(`refusing to ${what} without --force (no terminal to confirm)`);
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N]: `)).trim());
  } finally {
    rl.close();
  }
}

export async function runCtl(cmd: CtlCommand): Promise<number> {
  let config: CtlConfig;
  try {
    config = loadCtlConfig(cmd.config);
  } catch (err) {
    return fail(errorMessage(err), isPgfleetError(err) ? 2 : 1);
  }
  let scheduledAt: string | undefined;
  try {
    scheduledAt = parseScheduleOption(cmd.scheduled, Date.now());
  } catch (err) {
    return fail(errorMessage(err));
  }
  const etcd = new EtcdCluster(config.etcd3, { log: silentLogger() });
  // The agent's DCS adapter, used only for reads and the `failover` key (never a lease).
  const dcs = new EtcdAgentDcs({
    cluster: etcd,
    namespace: config.namespace,
    scope: config.scope,
    name: 'pgfleet-ctl',
    ttlMs: 30_000,
    log: silentLogger(),
  });
  try {
    const { view, values } = await dcs.load();
    const failover = parseFailover(values.get('failover'));
    if (cmd.command === 'list') {
      if (view.members.size === 0)
        return fail(`no members in cluster '${config.scope}' (${config.namespace})`);
      print(formatClusterTable(view, failover));
      return 0;
    }
    if (cmd.command === 'pause' || cmd.command === 'resume') {
      const pause = cmd.command === 'pause';
      await updateClusterConfig(etcd, dcs.keys, (current) => {
        if (isPaused(current) === pause) {
          throw new PgfleetError('ERR_CTL_REJECTED', `cluster is ${pause ? 'already' : 'not'} paused`);
        }
        const { pause: _, ...rest } = current;
        return pause ? { ...rest, pause: true } : rest;
      });
      print(`Success: cluster management is ${pause ? 'paused' : 'resumed'}`);
      return 0;
    }
    const plan = planManualFailover(view, cmd.command, cmd.candidate, scheduledAt);
    print(formatClusterTable(view, failover));
    if (!cmd.force) {
      const target = plan.candidate ?? 'the healthiest replica';
      const when = scheduledAt === undefined ? '' : ` at ${scheduledAt}`;
      const question =
        cmd.command === 'switchover'
          ? `Are you sure you want to switchover cluster ${view.scope}${when}, demoting current leader ${plan.leader} in favour of ${target}?`
          : `Are you sure you want to failover cluster ${view.scope} to ${target}?`;
      if (!(await confirm(question, cmd.command))) return fail('aborted');
    }
    const sentence = await runManualFailover(plan, {
      dcs,
      auth: config.restapi?.authentication,
      timeoutMs: MANUAL_FAILOVER_TIMEOUT_MS,
      say: print,
    });
    print(sentence);
    return 0;
  } catch (err) {
    return fail(errorMessage(err));
  } finally {
    dcs.close();
    etcd.close();
  }
}
