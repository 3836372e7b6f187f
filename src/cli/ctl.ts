/**
 * `pgfleet ctl -c FILE <command>` (patronictl's commands): load FILE (plus PGFLEET__ overrides),
 * connect to etcd, run one command from src/ctl, print its outcome. Exit codes: 0 done, 1 refused
 * or failed (etcd unreachable, unknown member, the agent said no), 2 FILE is unreadable or invalid.
 */
import { restDispatcher, restTlsSettings } from '../api/rest-tls.js';
import { createInterface } from 'node:readline/promises';
import { loadCtlConfig, type CtlConfig } from '../ctl/ctl-config.js';
import { formatClusterTable } from '../ctl/cluster-table.js';
import { loadCluster, openDcs, scopeOf, type CtlContext } from '../ctl/context.js';
import {
  parseScheduleOption,
  planManualFailover,
  runManualFailover,
  type ManualAction,
} from '../ctl/manual-failover.js';
import { stdinPrompter } from '../ctl/prompt.js';
import { updateClusterConfig } from '../dcs/cluster-config.js';
import { EtcdCluster } from '../dcs/etcd-cluster.js';
import { PgfleetError, errorMessage, isPgfleetError } from '../errors.js';
import { isPaused } from '../ha/dynamic-config.js';
import { silentLogger } from '../observability/logger.js';

/** The agent answers /switchover within about 20 s; leave room for that. */
const MANUAL_FAILOVER_TIMEOUT_MS = 60_000;
/** restart and reinitialize answer when done: PostgreSQL's start or a base backup. */
const REST_TIMEOUT_MS = 120_000;

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function fail(message: string, code = 1): number {
  process.stderr.write(`pgfleet ctl: ${message}\n`);
  return code;
}

/** Resolves on the first SIGINT or SIGTERM (ends `-W` watching). */
function stopSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

/** Loads FILE, builds the context, runs `fn`, closes everything. */
export async function withCtl(
  file: string,
  fn: (ctx: CtlContext, stop: Promise<void>) => Promise<number>,
  insecure = false,
): Promise<number> {
  let config: CtlConfig;
  try {
    config = loadCtlConfig(file, process.env);
  } catch (err) {
    return fail(errorMessage(err), isPgfleetError(err) ? 2 : 1);
  }
  const etcd = new EtcdCluster(config.etcd3, { log: silentLogger() });
  const prompter = stdinPrompter(process.stdin, process.stdout);
  const ctx: CtlContext = {
    config,
    etcd,
    prompter,
    print,
    restAuth: config.restapi?.authentication,
    restDispatcher: restDispatcher(
      restTlsSettings(insecure ? { ...config.ctl, insecure } : config.ctl, config.restapi),
    ),
    restTimeoutMs: REST_TIMEOUT_MS,
    stdoutIsTty: process.stdout.isTTY === true,
    env: process.env,
  };
  // grpc-js's call deadlines do not keep the process alive: with etcd's TLS handshake failing
  // (a wrong CA) the event loop emptied and Node exited 13 in silence. This timer holds it open
  // until the command settles, so the deadline fires and the error is printed.
  const keepAlive = setInterval(() => undefined, 60_000);
  try {
    return await fn(ctx, stopSignal());
  } catch (err) {
    return fail(errorMessage(err));
  } finally {
    clearInterval(keepAlive);
    prompter.close();
    etcd.close();
  }
}

/** Asks on the terminal; false when declined. Throws when there is no terminal to ask on. */
async function confirmOnTerminal(question: string, what: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new Error(`refusing to ${what} without --force (no terminal to confirm)`);
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N]: `)).trim());
  } finally {
    rl.close();
  }
}

export async function pauseCommand(
  ctx: CtlContext,
  cluster: string | undefined,
  pause: boolean,
): Promise<number> {
  const snap = await loadCluster(ctx, scopeOf(ctx, cluster));
  await updateClusterConfig(ctx.etcd, snap.keys, (current) => {
    if (isPaused(current) === pause) {
      throw new PgfleetError('ERR_CTL_REJECTED', `cluster is ${pause ? 'already' : 'not'} paused`);
    }
    const { pause: _, ...rest } = current;
    return pause ? { ...rest, pause: true } : rest;
  });
  print(`Success: cluster management is ${pause ? 'paused' : 'resumed'}`);
  return 0;
}

export interface ManualFailoverOptions {
  readonly cluster: string | undefined;
  readonly leader?: string | undefined;
  readonly candidate?: string | undefined;
  readonly scheduled?: string | undefined;
  readonly force?: boolean | undefined;
}

export async function manualFailoverCommand(
  ctx: CtlContext,
  action: ManualAction,
  o: ManualFailoverOptions,
): Promise<number> {
  const scheduledAt = parseScheduleOption(o.scheduled, Date.now());
  const scope = scopeOf(ctx, o.cluster);
  const dcs = openDcs(ctx, scope);
  try {
    const { view, failover } = await loadCluster(ctx, scope);
    if (o.leader !== undefined && o.leader !== view.leader) {
      return fail(`Member ${o.leader} is not the leader of cluster ${scope}`);
    }
    const plan = planManualFailover(view, action, o.candidate, scheduledAt);
    print(formatClusterTable(view, failover));
    if (!o.force) {
      const target = plan.candidate ?? 'the healthiest replica';
      const when = scheduledAt === undefined ? '' : ` at ${scheduledAt}`;
      const question =
        action === 'switchover'
          ? `Are you sure you want to switchover cluster ${view.scope}${when}, demoting current leader ${plan.leader} in favour of ${target}?`
          : `Are you sure you want to failover cluster ${view.scope} to ${target}?`;
      if (!(await confirmOnTerminal(question, action))) return fail('aborted');
    }
    const sentence = await runManualFailover(plan, {
      dcs,
      auth: ctx.restAuth,
      dispatcher: ctx.restDispatcher,
      timeoutMs: MANUAL_FAILOVER_TIMEOUT_MS,
      say: print,
    });
    print(sentence);
    return 0;
  } finally {
    dcs.close();
  }
}
