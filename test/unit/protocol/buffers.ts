/**
 * Fixture builders for protocol tests, written from the spec (not from src/protocol), so that a
 * mistake in the code under test is not silently repeated here.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

export function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

export function cstring(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

/** An untyped startup-phase packet: Int32 length (including itself), Int32 code, body. */
export function packet(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([int32(8 + body.length), int32(code), body]);
}

/** A typed backend message: Byte1 type, Int32 length (including itself, not the type), body. */
export function message(type: string, ...body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  return Buffer.concat([Buffer.from(type, 'latin1'), int32(4 + payload.length), payload]);
}

export function version(major: number, minor: number): number {
  return major * 65536 + minor;
}

export const buffers = {
  // Frontend, startup phase.
  startup(parameters: Record<string, string>, protocolVersion = version(3, 0)): Buffer {
    const pairs = Object.entries(parameters).flatMap(([name, value]) => [cstring(name), cstring(value)]);
    return packet(protocolVersion, Buffer.concat([...pairs, Buffer.from([0])]));
  },
  sslRequest: (): Buffer => packet(version(1234, 5679)),
  gssencRequest: (): Buffer => packet(version(1234, 5680)),
  cancelRequest: (processId: number, secretKey: Buffer): Buffer =>
    packet(version(1234, 5678), Buffer.concat([int32(processId), secretKey])),

  // Backend.
  authenticationOk: (): Buffer => message('R', int32(0)),
  authenticationSASL: (...mechanisms: string[]): Buffer =>
    message('R', int32(10), ...mechanisms.map(cstring), Buffer.from([0])),
  authenticationSASLFinal: (data: string): Buffer => message('R', int32(12), Buffer.from(data)),
  parameterStatus: (name: string, value: string): Buffer => message('S', cstring(name), cstring(value)),
  backendKeyData: (processId: number, secretKey: Buffer): Buffer => message('K', int32(processId), secretKey),
  negotiateProtocolVersion: (protocolVersion: number, options: string[]): Buffer =>
    message('v', int32(protocolVersion), int32(options.length), ...options.map(cstring)),
  errorResponse: (fields: Record<string, string>): Buffer =>
    message(
      'E',
      ...Object.entries(fields).flatMap(([type, value]) => [Buffer.from(type, 'latin1'), cstring(value)]),
      Buffer.from([0]),
    ),
  notice: (text: string): Buffer =>
    message('N', Buffer.from('S'), cstring('NOTICE'), Buffer.from('M'), cstring(text), Buffer.from([0])),
  readyForQuery: (status: 'I' | 'T' | 'E'): Buffer => message('Z', Buffer.from(status, 'latin1')),
  parseComplete: (): Buffer => message('1'),
  commandComplete: (tag: string): Buffer => message('C', cstring(tag)),
  dataRow: (...values: string[]): Buffer => {
    const count = Buffer.alloc(2);
    count.writeInt16BE(values.length);
    const cols = values.flatMap((v) => [int32(Buffer.byteLength(v)), Buffer.from(v)]);
    return message('D', count, ...cols);
  },
};

/** Every way to cut `buf` in two: [0,n], [1,n-1], …, [n,0]. */
export function* splits(buf: Buffer): Generator<[number, Buffer, Buffer]> {
  for (let at = 0; at <= buf.length; at++) yield [at, buf.subarray(0, at), buf.subarray(at)];
}

/** `buf` one byte per chunk. */
export function bytewise(buf: Buffer): Buffer[] {
  return [...buf].map((byte) => Buffer.from([byte]));
}
