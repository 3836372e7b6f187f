/** Replication slot names derived from member names (pure; shared by ha/, agent/ and postgres/). */

/** Patroni's slot_name_from_member_name: lower case, [a-z0-9_] only, at most 63 bytes. */
export function slotNameFor(member: string): string {
  return member
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 63);
}
