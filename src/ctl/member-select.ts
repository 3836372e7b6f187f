/**
 * Which members a patronictl-style command acts on: `get_all_members` (by role) and
 * `get_members` (named members, or a prompt) of patroni/ctl.py.
 */
import { PgfleetError } from '../errors.js';
import { formatMembers, type MemberJson, clusterMembers } from './members-output.js';
import type { ClusterSnapshot, CtlContext } from './context.js';

export const ROLES = ['leader', 'primary', 'standby-leader', 'replica', 'standby', 'any', 'master'] as const;
export type RoleChoice = (typeof ROLES)[number];

const rejected = (message: string) => new PgfleetError('ERR_CTL_REJECTED', message);

/** Members with `role`: the leader for leader/primary/master/standby-leader, else replicas or all. */
export function membersWithRole(snap: ClusterSnapshot, role: RoleChoice): MemberJson[] {
  const members = clusterMembers(snap.view, snap.values);
  if (role === 'leader' || role === 'primary' || role === 'master' || role === 'standby-leader') {
    const leader = members.find((m) => m.name === snap.view.leader);
    if (!leader) return [];
    if (role === 'leader') return [leader];
    return (role === 'standby-leader') === (leader.role === 'standby_leader') ? [leader] : [];
  }
  return members.filter((m) => role === 'any' || m.name !== snap.view.leader);
}

/** The leader first (when it has an API), then every other member with an API. */
export function membersLeaderFirst(snap: ClusterSnapshot): MemberJson[] {
  const members = clusterMembers(snap.view, snap.values).filter((m) => m.api_url !== undefined);
  const leader = members.filter((m) => m.name === snap.view.leader);
  return [...leader, ...members.filter((m) => m.name !== snap.view.leader)];
}

export interface SelectOptions {
  readonly names: readonly string[];
  readonly role: RoleChoice;
  readonly force: boolean;
  /** The verb of the prompts: restart, reload, reinitialize, flush. */
  readonly action: string;
  readonly askConfirmation: boolean;
}

/** patronictl's get_members: prints the cluster, resolves names or asks, confirms. */
export async function selectMembers(
  ctx: CtlContext,
  snap: ClusterSnapshot,
  o: SelectOptions,
): Promise<MemberJson[]> {
  const members = membersWithRole(snap, o.role);
  const candidates = members.map((m) => m.name);
  if (o.names.length === 0 && candidates.length === 0)
    throw rejected(`${snap.scope} cluster doesn't have any members`);
  ctx.print(formatMembers(snap.view, snap.values, snap.failover, { fmt: 'pretty' }));
  let names: string[];
  if (o.names.length > 0) {
    names = o.names.filter((n) => candidates.includes(n));
    if (names.length === 0) throw rejected(`No ${o.role} among provided members`);
  } else names = o.action === 'reinitialize' ? [] : candidates;
  if (names.length === 0 && !o.force) {
    names = [
      await ctx.prompter.ask(`Which member do you want to ${o.action} [${candidates.join(', ')}]?`, ''),
    ];
  }
  for (const n of names) if (!candidates.includes(n)) throw rejected(`${n} is not a member of cluster`);
  const chosen = members.filter((m) => names.includes(m.name));
  if (o.askConfirmation) await confirmAction(ctx, chosen, o.force, o.action);
  return chosen;
}

export async function confirmAction(
  ctx: CtlContext,
  members: readonly MemberJson[],
  force: boolean,
  action: string,
  scheduledAt?: string,
): Promise<void> {
  if (force) return;
  const names = members.map((m) => m.name).join(', ');
  if (scheduledAt !== undefined) {
    if (
      !(await ctx.prompter.confirm(
        `Are you sure you want to schedule ${action} of members ${names} at ${scheduledAt}?`,
      ))
    )
      throw rejected(`Aborted scheduled ${action}`);
  } else if (!(await ctx.prompter.confirm(`Are you sure you want to ${action} members ${names}?`))) {
    throw rejected(`Aborted ${action}`);
  }
}
