/**
 * A server's replies as bytes, read back (tests of what the proxy answers itself, e.g. the admin
 * console's): message types, result columns and rows, CommandComplete tags, ErrorResponse fields.
 */
import { readErrorFields } from '../../src/protocol/index.js';

export interface Replies {
  /** Every message's type, e.g. "TDCZ". */
  readonly types: string;
  /** The RowDescriptions' column names, in order. */
  readonly columns: string[];
  /** The DataRows' values (NULL: null), in order. */
  readonly rows: (string | null)[][];
  readonly tags: string[];
  readonly errors: Map<string, string>[];
}

/** Whole messages only: a partial one at the end is left out. */
export function readReplies(b: Buffer): Replies {
  const out = {
    types: '',
    columns: [] as string[],
    rows: [] as (string | null)[][],
    tags: [] as string[],
    errors: [] as Map<string, string>[],
  };
  for (
    let at = 0;
    at + 5 <= b.length && at + 1 + b.readUInt32BE(at + 1) <= b.length;
    at += 1 + b.readUInt32BE(at + 1)
  ) {
    const msg = b.subarray(at, at + 1 + b.readUInt32BE(at + 1));
    out.types += String.fromCharCode(msg[0]!);
    let p = 7;
    if (msg[0] === 0x54 /* T */)
      for (let i = 0; i < msg.readInt16BE(5); i++) {
        const end = msg.indexOf(0, p);
        out.columns.push(msg.toString('utf8', p, end));
        p = end + 1 + 18;
      }
    else if (msg[0] === 0x44 /* D */) {
      const row: (string | null)[] = [];
      for (let i = 0; i < msg.readInt16BE(5); i++) {
        const len = msg.readInt32BE(p);
        row.push(len < 0 ? null : msg.toString('utf8', p + 4, p + 4 + len));
        p += 4 + Math.max(len, 0);
      }
      out.rows.push(row);
    } else if (msg[0] === 0x43 /* C */) out.tags.push(msg.toString('utf8', 5, msg.length - 1));
    else if (msg[0] === 0x45 /* E */) out.errors.push(readErrorFields(msg));
  }
  return out;
}
