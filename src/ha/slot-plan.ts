/**
 * Replication slots on the leader, Patroni's rules (patroni/dcs/__init__.py get_replication_slots,
 * patroni/postgresql/slots.py) with one deliberate difference: a slot nobody asked for is dropped
 * only when it is a member's slot whose member left the cluster, never because it is unknown (a
 * Barman or pg_receivewal slot survives without an `ignore_slots` rule). Pure.
 *
 * Wanted slots: one physical slot per other member (`postgresql.use_slots`, default true), plus the
 * permanent `slots:` of the dynamic config — `name: {type: physical}` or `name: {type: logical,
 * database, plugin}` (a value without `type` is logical when it names a database and a plugin).
 * @see https://patroni.readthedocs.io/en/latest/dynamic_configuration.html (slots, ignore_slots)
 */

export type WantedSlot =
  | { readonly name: string; readonly type: 'physical' }
  | { readonly name: string; readonly type: 'logical'; readonly database: string; readonly plugin: string };

export interface ExistingSlot {
  readonly name: string;
  readonly type: string;
  readonly database: string | undefined;
  readonly plugin: string | undefined;
  readonly active: boolean;
}

/** An `ignore_slots` entry: a slot matches when every attribute the rule names matches. */
export interface IgnoreRule {
  readonly name?: string | undefined;
  readonly type?: string | undefined;
  readonly database?: string | undefined;
  readonly plugin?: string | undefined;
}

export interface SlotConfig {
  readonly useSlots: boolean;
  readonly permanent: readonly WantedSlot[];
  readonly ignore: readonly IgnoreRule[];
  /** Values of the DCS config ignored, with why (logged by the caller when they change). */
  readonly problems: readonly string[];
}

export interface SlotPlan {
  readonly create: readonly WantedSlot[];
  readonly drop: readonly { readonly name: string; readonly reason: string }[];
  /** Slots left alone that no rule asked for: named in the log, never dropped silently. */
  readonly unknown: readonly string[];
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function optString(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function permanentSlot(name: string, raw: unknown, problems: string[]): WantedSlot | undefined {
  if (!SLOT_NAME.test(name)) {
    problems.push(`config.slots.${name}: ignored, a slot name is lower case letters, digits and "_"`);
    return undefined;
  }
  const v = isRecord(raw) ? raw : raw === null || raw === undefined ? {} : undefined;
  if (v === undefined) {
    problems.push(`config.slots.${name}: ignored, not an object`);
    return undefined;
  }
  const database = optString(v.database);
  const plugin = optString(v.plugin);
  const type = v.type ?? (database && plugin ? 'logical' : 'physical');
  if (type === 'physical') return { name, type };
  if (type === 'logical' && database && plugin) return { name, type, database, plugin };
  problems.push(
    type === 'logical'
      ? `config.slots.${name}: ignored, a logical slot needs database and plugin`
      : `config.slots.${name}.type: ignored, must be physical or logical (got ${JSON.stringify(type)})`,
  );
  return undefined;
}

/** `slots`, `ignore_slots` and `postgresql.use_slots` from the dynamic config (`config` key). */
export function slotConfig(config: Readonly<Record<string, unknown>>): SlotConfig {
  const problems: string[] = [];
  const pg = config.postgresql;
  const useSlots = !(isRecord(pg) && (pg.use_slots === false || pg.use_slots === 'false'));
  const permanent: WantedSlot[] = [];
  if (isRecord(config.slots)) {
    for (const [name, raw] of Object.entries(config.slots)) {
      const slot = permanentSlot(name, raw, problems);
      if (slot) permanent.push(slot);
    }
  } else if (config.slots !== undefined && config.slots !== null) {
    problems.push('config.slots: ignored, not an object');
  }
  const ignore: IgnoreRule[] = [];
  if (Array.isArray(config.ignore_slots)) {
    config.ignore_slots.forEach((r: unknown, i) => {
      if (!isRecord(r)) problems.push(`config.ignore_slots[${i}]: ignored, not an object`);
      else
        ignore.push({
          name: optString(r.name),
          type: optString(r.type),
          database: optString(r.database),
          plugin: optString(r.plugin),
        });
    });
  } else if (config.ignore_slots !== undefined && config.ignore_slots !== null) {
    problems.push('config.ignore_slots: ignored, not a list');
  }
  return { useSlots, permanent, ignore, problems };
}

/**
 * The slots the leader keeps: members' physical slots (not its own), then the permanent ones. A
 * permanent slot named like a member's slot is the member's (physical); a logical one is refused.
 */
export function wantedSlots(
  memberSlots: readonly string[],
  ownSlot: string,
  cfg: SlotConfig,
  problems: string[] = [],
): WantedSlot[] {
  const out = new Map<string, WantedSlot>();
  if (cfg.useSlots) for (const s of memberSlots) if (s !== ownSlot) out.set(s, { name: s, type: 'physical' });
  if (!cfg.useSlots) return [...out.values()];
  for (const p of cfg.permanent) {
    if (p.type === 'physical') {
      if (p.name !== ownSlot) out.set(p.name, p);
    } else if (out.has(p.name)) {
      problems.push(`config.slots.${p.name}: ignored, conflicts with a member's physical slot`);
    } else {
      out.set(p.name, p);
    }
  }
  return [...out.values()];
}

export function matchesIgnore(slot: ExistingSlot, rules: readonly IgnoreRule[]): boolean {
  return rules.some(
    (r) =>
      (r.name === undefined || r.name === slot.name) &&
      (r.type === undefined || r.type === slot.type) &&
      (r.database === undefined || r.database === slot.database) &&
      (r.plugin === undefined || r.plugin === slot.plugin),
  );
}

function sameSlot(w: WantedSlot, e: ExistingSlot): boolean {
  if (w.type !== e.type) return false;
  return w.type === 'physical' || (w.database === e.database && w.plugin === e.plugin);
}

function describe(s: WantedSlot | ExistingSlot): string {
  return s.type === 'logical' ? `logical ${s.database ?? '?'}/${s.plugin ?? '?'}` : s.type;
}

export interface SlotPlanInput {
  readonly existing: readonly ExistingSlot[];
  readonly wanted: readonly WantedSlot[];
  readonly ignore: readonly IgnoreRule[];
  /** Slots this leader has kept for members (now or earlier): droppable once their member left. */
  readonly formerMemberSlots: ReadonlySet<string>;
  /** Slots this leader has seen in `slots:` that are no longer there: droppable (Patroni drops them). */
  readonly formerPermanentSlots?: ReadonlySet<string>;
  /** Maintenance mode: nothing is dropped (Patroni's `paused`). */
  readonly paused: boolean;
}

/** What to create and drop. An active slot is never dropped (PostgreSQL refuses anyway). */
export function planSlots(input: SlotPlanInput): SlotPlan {
  const wanted = new Map(input.wanted.map((w) => [w.name, w]));
  const create: WantedSlot[] = [];
  const drop: { name: string; reason: string }[] = [];
  const unknown: string[] = [];
  const existing = new Map(input.existing.map((e) => [e.name, e]));
  for (const e of input.existing) {
    if (matchesIgnore(e, input.ignore)) continue;
    const w = wanted.get(e.name);
    if (w !== undefined) {
      if (sameSlot(w, e) || input.paused || e.active) continue;
      drop.push({ name: e.name, reason: `changing from ${describe(e)} to ${describe(w)}` });
      create.push(w);
    } else if (input.formerMemberSlots.has(e.name) && e.type === 'physical' && !e.active && !input.paused) {
      drop.push({ name: e.name, reason: 'its member left the cluster' });
    } else if (input.formerPermanentSlots?.has(e.name) && !e.active && !input.paused) {
      drop.push({ name: e.name, reason: 'it was removed from the permanent slots (slots:)' });
    } else {
      unknown.push(e.name);
    }
  }
  for (const w of input.wanted) if (!existing.has(w.name)) create.push(w);
  return { create, drop, unknown };
}
