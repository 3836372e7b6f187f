/**
 * Quorum commit (`synchronous_mode: quorum`): the safe order of changes between
 * `synchronous_standby_names` (`ANY numsync (sync)`) and the `sync` key (`quorum` of `voters`).
 * A port of Patroni 4's QuorumStateResolver (Patroni 3.0.2 has no quorum mode). Pure.
 *
 * Invariant: any set of nodes that can acknowledge a commit overlaps any set of voters that can
 * win a leader race, i.e. |voters ∪ sync| ≤ quorum + numsync + 1 (the leader counts as one).
 * Steady state for the eligible standbys `active`: sync = voters = active,
 * numsync = min(synchronous_node_count, |active|), quorum = |active| − numsync.
 * Raising numsync or quorum goes first; lowering goes last. Transitions:
 * | type      | means                                                           |
 * |-----------|-----------------------------------------------------------------|
 * | `sync`    | set synchronous_standby_names to ANY `num` (`names`)            |
 * | `quorum`  | write the `sync` key: `leader`, `quorum` = `num`, voters `names` |
 * | `restart` | stop here; observe again (standbys may confirm meanwhile)        |
 * Checked against the 47 scenarios of Patroni's tests/test_quorum.py (130 checks with the
 * interrupted transitions); one deviation, marked in addNewNodes, where Patroni cannot converge.
 * @see patroni/quorum.py (Patroni 4)
 */
import { NameSet } from './sync-names.js';

export interface Transition {
  readonly type: 'sync' | 'quorum' | 'restart';
  readonly leader: string;
  readonly num: number;
  readonly names: readonly string[];
}

export interface QuorumInput {
  /** `leader` of the `sync` key. */
  readonly leader: string;
  /** `quorum` of the `sync` key. */
  readonly quorum: number;
  /** `sync_standby` of the `sync` key. */
  readonly voters: Iterable<string>;
  /** The number in synchronous_standby_names. */
  readonly numsync: number;
  /** The names in synchronous_standby_names. */
  readonly sync: Iterable<string>;
  /** How many listed standbys are confirmed to have caught up. */
  readonly numsyncConfirmed: number;
  /** Streaming standbys eligible for synchronous replication. */
  readonly active: Iterable<string>;
  /** synchronous_node_count. */
  readonly syncWanted: number;
  /** The leader that should be in the `sync` key (this node). */
  readonly leaderWanted: string;
}

export class QuorumError extends Error {}

const sortedNames = (s: NameSet): string[] => s.sorted();

class Resolver {
  leader: string;
  quorum: number;
  voters: NameSet;
  numsync: number;
  sync: NameSet;
  numsyncConfirmed: number;
  readonly active: NameSet;
  readonly syncWanted: number;
  readonly leaderWanted: string;
  readonly out: Transition[] = [];

  constructor(i: QuorumInput) {
    this.leader = i.leader;
    this.quorum = i.quorum;
    this.voters = new NameSet(i.voters);
    this.sync = new NameSet(i.sync);
    this.numsync = Math.min(i.numsync, this.sync.size);
    this.numsyncConfirmed = i.numsyncConfirmed;
    this.active = new NameSet(i.active);
    this.syncWanted = i.syncWanted;
    this.leaderWanted = i.leaderWanted;
  }

  checkInvariants(): void {
    const voters = this.voters.union([this.leader]);
    const sync = this.sync.union([this.leaderWanted]);
    const nodes = voters.union(sync).size;
    if (this.voters.size > 0 && !(nodes <= this.quorum + this.numsync + 1)) {
      throw new QuorumError(
        `quorum and sync not guaranteed to overlap: nodes ${nodes} > quorum ${this.quorum} + sync ${this.numsync} + 1`,
      );
    }
    if (!(voters.isSubsetOf(sync) || sync.isSubsetOf(voters))) {
      throw new QuorumError(
        `mismatched sets: voters only ${sortedNames(voters.minus(sync)).join(',')}, sync only ${sortedNames(sync.minus(voters)).join(',')}`,
      );
    }
  }

  quorumUpdate(quorum: number, voters: NameSet, leader?: string, adjustQuorum = true): void {
    if (quorum < 0) throw new QuorumError(`quorum ${quorum} < 0`);
    if (quorum > 0 && quorum >= voters.size) throw new QuorumError(`quorum ${quorum} >= N of voters`);
    const oldLeader = this.leader;
    if (leader !== undefined) this.leader = leader;
    else if (this.numsyncConfirmed === 0 && this.voters.size === 0) {
      // Nobody is known to have caught up: reset quorum and voters in the `sync` key.
      quorum = 0;
      voters = new NameSet();
    } else if (adjustQuorum) {
      // Fewer confirmed than numsync: a higher quorum makes sure the race still finds one.
      quorum += Math.max(this.numsync - this.numsyncConfirmed, 0);
    }
    if (this.leader === oldLeader && quorum === this.quorum && voters.equals(this.voters)) {
      if (this.voters.size > 0) return;
      this.out.push({
        type: 'restart',
        leader: this.leader,
        num: this.quorum,
        names: sortedNames(this.voters),
      });
    }
    this.quorum = quorum;
    this.voters = voters;
    this.checkInvariants();
    this.out.push({ type: 'quorum', leader: this.leader, num: this.quorum, names: sortedNames(this.voters) });
  }

  syncUpdate(numsync: number, sync: NameSet): void {
    if (numsync < 0) throw new QuorumError(`sync ${numsync} < 0`);
    if (numsync > sync.size) throw new QuorumError(`sync ${numsync} > N of sync`);
    this.numsync = numsync;
    this.sync = sync;
    this.checkInvariants();
    this.out.push({ type: 'sync', leader: this.leader, num: this.numsync, names: sortedNames(this.sync) });
  }

  /** Finishes a change an earlier run started (the two sets differ). */
  handleNonSteady(): void {
    if (this.sync.isSubsetOf(this.voters) && !this.sync.equals(this.voters)) {
      // Case 1: voters ⊃ sync, in the middle of changing voters: evict dead voters not synced.
      const remove = this.voters.minus(this.sync.union(this.active));
      if (remove.size > 0) {
        this.quorumUpdate(
          this.voters.size - remove.size - this.numsync,
          this.voters.minus(remove),
          undefined,
          this.sync.minus(this.active).size === 0,
        );
      }
      const addToSync = this.voters.intersect(this.active).minus(this.sync);
      if (addToSync.size > 0) this.syncUpdate(this.numsync, this.sync.union(addToSync));
    } else if (this.voters.isSubsetOf(this.sync) && !this.sync.equals(this.voters)) {
      // Case 2: sync ⊃ voters, in the middle of changing the replication factor.
      let removeFromSync = this.sync.minus(this.active);
      const sync = this.sync.minus(removeFromSync);
      if (
        removeFromSync.size > 0 &&
        sync.size > 0 &&
        (this.voters.size === 0 || sync.intersect(this.voters).size > 0)
      ) {
        this.syncUpdate(Math.min(this.numsync, this.sync.size - removeFromSync.size), sync);
      }
      const addToVoters = this.sync.minus(this.voters).intersect(this.active);
      if (addToVoters.size > 0) {
        const voters = this.voters.union(addToVoters);
        this.quorumUpdate(voters.size - this.numsync, voters);
      }
      removeFromSync = this.sync.minus(this.voters);
      if (removeFromSync.size > 0) {
        this.syncUpdate(
          Math.min(this.numsync, this.sync.size - removeFromSync.size),
          this.sync.minus(removeFromSync),
        );
      }
    }
    if (!this.voters.equals(this.sync)) throw new QuorumError('voters and sync still differ');
    const margin =
      this.quorum + Math.min(this.numsync, this.numsyncConfirmed) - this.voters.union(this.sync).size;
    if (margin > 0) {
      if (this.numsync > this.syncWanted) {
        // Case 3: a replication factor higher than wanted.
        this.syncUpdate(Math.max(this.syncWanted, this.voters.size - this.quorum), this.sync);
      } else {
        // Case 4: a quorum higher than needed.
        this.quorumUpdate(this.sync.size - this.numsync, this.voters);
      }
    } else {
      const m = this.quorum + this.numsync - this.voters.union(this.sync).size;
      if (this.numsync === this.syncWanted && m > 0 && this.numsync > this.numsyncConfirmed) {
        this.quorumUpdate(this.sync.size - this.numsync, this.voters);
      }
    }
  }

  removeGoneNodes(): void {
    let toRemove = this.sync.minus(this.active);
    if (toRemove.size > 0 && this.sync.equals(toRemove)) {
      this.quorumUpdate(0, new NameSet(), undefined, false);
      this.syncUpdate(0, new NameSet());
      return;
    }
    if (toRemove.size === 0) return;
    if (this.quorum > 0) {
      // Lower the quorum first where it can be lowered.
      const remove = new NameSet(toRemove.sorted().reverse().slice(0, this.quorum));
      const sync = this.sync.minus(remove);
      const numsync = Math.min(this.syncWanted > this.numsync ? this.syncWanted : this.numsync, sync.size);
      this.syncUpdate(numsync, sync);
      const voters = this.voters.minus(remove);
      toRemove = toRemove.intersect(this.sync);
      this.quorumUpdate(voters.size - this.numsync, voters, undefined, toRemove.size === 0);
    }
    if (toRemove.size > 0) {
      if (this.quorum !== 0) throw new QuorumError('quorum should be 0 here');
      const numsync = this.numsync - toRemove.size;
      const sync = this.sync.minus(toRemove);
      const voters = this.voters.minus(toRemove);
      const decrease = numsync - Math.min(this.syncWanted, sync.size);
      const quorum = decrease > 0 ? Math.min(decrease, voters.size - 1) : 0;
      this.quorumUpdate(quorum, voters, undefined, false);
      this.syncUpdate(numsync, sync);
    }
  }

  addNewNodes(): void {
    let toAdd = this.active.minus(this.sync);
    if (toAdd.size === 0) return;
    const syncWanted = Math.min(this.syncWanted, this.sync.union(toAdd).size);
    let increase = syncWanted - this.numsync;
    if (increase > 0) {
      let add: NameSet;
      if (this.sync.size > 0) {
        add = new NameSet(toAdd.sorted().slice(0, increase));
        increase = add.size;
      } else add = toAdd; // only the leader so far: all may join at once
      this.syncUpdate(this.numsync + increase, this.sync.union(add));
      const voters = this.voters.union(add);
      // Deviation from Patroni 4.1 (which subtracts synchronous_node_count here): when fewer nodes
      // join than the replication factor grows by, that quorum breaks the invariant and Patroni
      // raises on every cycle, never converging (e.g. voters b,d,e, ANY 1, c joins, count 1 → 4).
      this.quorumUpdate(voters.size - this.numsync, voters);
      toAdd = toAdd.minus(this.sync);
    }
    if (toAdd.size > 0) {
      const voters = this.voters.union(toAdd);
      this.quorumUpdate(voters.size - syncWanted, voters, undefined, syncWanted > this.numsyncConfirmed);
      this.syncUpdate(syncWanted, this.sync.union(toAdd));
    }
  }

  handleReplicationFactorChange(): void {
    const increase = Math.min(this.syncWanted, this.sync.size) - this.numsync;
    if (increase > 0) {
      this.syncUpdate(this.numsync + increase, this.sync);
      this.quorumUpdate(this.voters.size - this.numsync, this.voters);
    } else if (increase < 0) {
      if (this.quorum - increase < this.voters.size) {
        this.quorumUpdate(
          this.voters.size - this.numsync - increase,
          this.voters,
          undefined,
          this.syncWanted > this.numsyncConfirmed,
        );
      }
      this.syncUpdate(this.numsync + increase, this.sync);
    }
  }

  /** After a failover: the new leader takes the key, the old one joins the voters. */
  private handleLeaderChange(): boolean {
    const voters = this.voters.minus(new NameSet([this.leaderWanted])).union([this.leader]);
    if (this.sync.size === 0) this.syncUpdate(voters.size - this.quorum, voters);
    this.quorumUpdate(this.quorum, voters, this.leaderWanted);
    // Right after a promotion no standby may be connected yet: give them a loop to come.
    return this.sync.intersect(this.active).size > 0;
  }

  generate(): void {
    try {
      if (this.leaderWanted.toLowerCase() !== this.leader.toLowerCase()) {
        if (!this.handleLeaderChange()) return;
      } else this.checkInvariants();
    } catch (err) {
      if (!(err instanceof QuorumError)) throw err;
      this.quorumUpdate(this.sync.size - this.numsync, this.sync);
    }
    if (this.numsyncConfirmed === 0 && this.sync.intersect(this.active).size > 0) {
      // After a restart or failover nothing is confirmed yet: derive it from the quorum.
      this.numsyncConfirmed = Math.min(this.sync.intersect(this.active).size, this.voters.size - this.quorum);
    }
    this.handleNonSteady();
    this.removeGoneNodes();
    this.addNewNodes();
    this.handleReplicationFactorChange();
  }
}

/**
 * The transitions from the current state towards the wanted one, in the order they must be
 * applied. Two consecutive transitions of the same type merge into the second (skipping the
 * first is the same as nobody observing it); a `restart` ends the list.
 */
export function quorumTransitions(input: QuorumInput): Transition[] {
  const r = new Resolver(input);
  r.generate();
  const merged: Transition[] = [];
  const all = r.out;
  for (let i = 0; i < all.length; i++) {
    const cur = all[i]!;
    if (all[i + 1]?.type === cur.type) continue;
    merged.push(cur);
    if (cur.type === 'restart') break;
  }
  return merged;
}
