/**
 * The messages a pooling proxy writes itself (its own startup answers to a client, the statements
 * it prepares again on another server connection) and the few fields it reads of a client's
 * extended-protocol messages (statement names). Pure; one small function per message.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

function message(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstring(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

export function parameterStatus(name: string, value: string): Buffer {
  return message('S', Buffer.concat([cstring(name), cstring(value)]));
}

export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeInt32BE(processId, 0);
  return message('K', Buffer.concat([head, secretKey]));
}

export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return message('Z', Buffer.from(status, 'latin1'));
}

export function simpleQuery(sql: string): Buffer {
  return message('Q', cstring(sql));
}

/** Close ('S' statement or 'P' portal) `name`. */
export function closeMessage(kind: 'S' | 'P', name: string): Buffer {
  return message('C', Buffer.concat([Buffer.from(kind, 'latin1'), cstring(name)]));
}

/** Parse named `name`, with the body (query, parameter types) of another Parse after its name. */
export function parseMessage(name: string, afterName: Buffer): Buffer {
  return message('P', Buffer.concat([cstring(name), afterName]));
}

/** Where the NUL that ends a C string starting at `from` is; -1 when there is none. */
function cstringEnd(msg: Buffer, from: number): number {
  return msg.indexOf(0, from);
}

/** Parse: its statement name and the bytes after it (query, parameter types). */
export function readParse(msg: Buffer): { name: string; afterName: Buffer } | undefined {
  const end = cstringEnd(msg, 5);
  if (end < 0) return undefined;
  return { name: msg.toString('utf8', 5, end), afterName: msg.subarray(end + 1) };
}

/** Bind: its portal, its statement name, and the bytes after them. */
export function readBind(msg: Buffer): { portal: string; statement: string; rest: Buffer } | undefined {
  const p = cstringEnd(msg, 5);
  if (p < 0) return undefined;
  const s = cstringEnd(msg, p + 1);
  if (s < 0) return undefined;
  return {
    portal: msg.toString('utf8', 5, p),
    statement: msg.toString('utf8', p + 1, s),
    rest: msg.subarray(s + 1),
  };
}

export function bindMessage(portal: string, statement: string, rest: Buffer): Buffer {
  return message('B', Buffer.concat([cstring(portal), cstring(statement), rest]));
}

/** Describe or Close: 'S' (statement) or 'P' (portal), and the name. */
export function readTarget(msg: Buffer): { kind: string; name: string } | undefined {
  if (msg.length < 7) return undefined;
  const end = cstringEnd(msg, 6);
  if (end < 0) return undefined;
  return { kind: String.fromCharCode(msg[5]!), name: msg.toString('utf8', 6, end) };
}

export function describeMessage(kind: 'S' | 'P', name: string): Buffer {
  return message('D', Buffer.concat([Buffer.from(kind, 'latin1'), cstring(name)]));
}

/** The fields of an ErrorResponse or NoticeResponse by their type letter (C: SQLSTATE, M, S …). */
export function readErrorFields(msg: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 5;
  while (at < msg.length && msg[at] !== 0) {
    const end = msg.indexOf(0, at + 1);
    if (end < 0) break;
    out.set(String.fromCharCode(msg[at]!), msg.toString('utf8', at + 1, end));
    at = end + 1;
  }
  return out;
}

/** ParameterStatus: name and value. */
export function readParameterStatus(msg: Buffer): { name: string; value: string } | undefined {
  const n = cstringEnd(msg, 5);
  if (n < 0) return undefined;
  const v = cstringEnd(msg, n + 1);
  if (v < 0) return undefined;
  return { name: msg.toString('utf8', 5, n), value: msg.toString('utf8', n + 1, v) };
}

/** StartupMessage, protocol 3.0, with `parameters` (user, database, …) in order. */
export function startupMessage(parameters: readonly (readonly [string, string])[]): Buffer {
  const body = Buffer.concat([...parameters.flatMap(([k, v]) => [cstring(k), cstring(v)]), Buffer.from([0])]);
  const out = Buffer.alloc(8 + body.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(196608, 4);
  body.copy(out, 8);
  return out;
}

/** RowDescription of text columns (type text, OID 25; text format). */
export function rowDescription(columns: readonly string[]): Buffer {
  const count = Buffer.alloc(2);
  count.writeInt16BE(columns.length, 0);
  const fields = columns.map((c) => {
    const meta = Buffer.alloc(18);
    meta.writeInt32BE(0, 0); // table OID
    meta.writeInt16BE(0, 4); // column number
    meta.writeInt32BE(25, 6); // type OID: text
    meta.writeInt16BE(-1, 10); // type size: variable
    meta.writeInt32BE(-1, 12); // type modifier
    meta.writeInt16BE(0, 16); // format: text
    return Buffer.concat([cstring(c), meta]);
  });
  return message('T', Buffer.concat([count, ...fields]));
}

/** DataRow of text values (null: SQL NULL). */
export function dataRow(values: readonly (string | null)[]): Buffer {
  const count = Buffer.alloc(2);
  count.writeInt16BE(values.length, 0);
  const parts = values.map((v) => {
    const len = Buffer.alloc(4);
    if (v === null) {
      len.writeInt32BE(-1, 0);
      return len;
    }
    const bytes = Buffer.from(v, 'utf8');
    len.writeInt32BE(bytes.length, 0);
    return Buffer.concat([len, bytes]);
  });
  return message('D', Buffer.concat([count, ...parts]));
}

export function commandComplete(tag: string): Buffer {
  return message('C', cstring(tag));
}
