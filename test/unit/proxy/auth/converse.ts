/**
 * Test helpers: split a byte string of whole messages, and run a server-side exchange against a
 * client-side login in memory, message by message.
 */
import type { ClientLogin, ClientLoginStep } from '../../../../src/protocol/auth/client-login.js';
import type { ServerAuthExchange } from '../../../../src/proxy/auth/server-auth.js';
import type { ServerAuthStep } from '../../../../src/protocol/auth/auth-types.js';

export interface Framed {
  type: string;
  body: Buffer;
}

/** Whole messages (Byte1 type, Int32 length including itself, body), in order. */
export function frames(bytes: Buffer): Framed[] {
  const out: Framed[] = [];
  let i = 0;
  while (i < bytes.length) {
    const length = bytes.readUInt32BE(i + 1);
    out.push({ type: String.fromCharCode(bytes[i]!), body: bytes.subarray(i + 5, i + 1 + length) });
    i += 1 + length;
  }
  assert(i === bytes.length, 'trailing bytes');
  return out;
}

function assert(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

/** The body of the one message in `bytes` (a frontend 'p' message). */
export function body(bytes: Buffer): Buffer {
  const [only, ...rest] = frames(bytes);
  assert(only !== undefined && rest.length === 0, 'expected exactly one message');
  return only.body;
}

export interface Conversation {
  server: ServerAuthStep;
  client: ClientLoginStep | undefined;
}

/** Runs both sides until the server lets the client in or refuses it, or the client gives up. */
export function converse(server: ServerAuthExchange, client: ClientLogin): Conversation {
  let serverStep = server.start();
  let clientStep: ClientLoginStep | undefined;
  for (let round = 0; round < 10; round++) {
    let reply: Buffer | undefined;
    for (const m of frames(serverStep.send)) {
      if (m.type !== 'R') continue;
      clientStep = client.receive(m.body);
      if (clientStep.type === 'failed') return { server: serverStep, client: clientStep };
      if (clientStep.type === 'send') reply = clientStep.send;
    }
    if (serverStep.type !== 'continue') return { server: serverStep, client: clientStep };
    assert(reply !== undefined, 'the client did not answer');
    serverStep = server.receive(body(reply));
  }
  throw new Error('no end after 10 rounds');
}

/** The fields of an ErrorResponse body. */
export function errorFields(bytes: Buffer): Record<string, string> {
  const [m] = frames(bytes);
  assert(m !== undefined && m.type === 'E', 'expected an ErrorResponse');
  const fields: Record<string, string> = {};
  let i = 0;
  while (m.body[i] !== 0) {
    const end = m.body.indexOf(0, i + 1);
    fields[String.fromCharCode(m.body[i]!)] = m.body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return fields;
}

/** Deterministic "random" bytes: 0, 1, 2, … from a counter. */
export function countingRandom(): (n: number) => Buffer {
  let next = 0;
  return (n) => Buffer.from(Array.from({ length: n }, () => next++ & 0xff));
}
