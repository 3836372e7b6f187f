/**
 * Assembles decide()'s input from what the agent holds: the cluster read this cycle, its own
 * PostgreSQL, the lease deadline, the peers' answers and the settings in force.
 */
import { performance } from 'node:perf_hooks';
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import type { HaSettings } from '../ha/dynamic-config.js';
import type { PeerStatus } from '../ha/peer-status.js';
import { parseFailover } from '../ha/switchover.js';
import type { Observation } from '../ha/types.js';
import { parseHistoryKey } from '../postgres/timeline-history.js';
import type { ClusterKnowledge } from './cluster-knowledge.js';
import type { LocalPostgres } from './local-postgres.js';

export interface ObservationSources {
  readonly cfg: AgentConfig;
  readonly settings: HaSettings;
  readonly cluster: ClusterKnowledge;
  readonly local: LocalPostgres;
  readonly leaseDeadlineMs: number | undefined;
  readonly failsafeActive: boolean;
}

export function buildObservation(
  src: ObservationSources,
  view: ClusterView | undefined,
  peers: readonly PeerStatus[],
): Observation {
  const values = src.cluster.snapshot?.values;
  const history = parseHistoryKey(values?.get('history'));
  const lastSwitch = history[history.length - 1];
  return {
    nowMs: performance.now(),
    wallNowMs: Date.now(),
    name: src.cfg.name,
    view,
    leaseDeadlineMs: src.leaseDeadlineMs,
    pg: src.local.observation(),
    failover: parseFailover(values?.get('failover')),
    following: src.local.following,
    peers,
    formerLeader: src.cluster.lastSeenLeader,
    failsafeActive: src.failsafeActive,
    clusterTimeline: lastSwitch === undefined ? undefined : lastSwitch[0] + 1,
    timelineEnds: new Map(history.map((e) => [e[0], e[1]])),
    settings: {
      loopWaitMs: src.settings.loopWaitMs,
      maximumLagOnFailoverBytes: src.settings.maximumLagOnFailoverBytes,
      primaryStartTimeoutMs: src.settings.primaryStartTimeoutMs,
      nofailover: src.cfg.tags.nofailover,
      failoverPriority: src.cfg.tags.failover_priority ?? 1,
      fencing: src.cfg.agent.fencing,
      sync: src.settings.sync,
      checkTimeline: src.settings.checkTimeline,
    },
  };
}
