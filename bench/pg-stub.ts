/**
 * A PostgreSQL wire stub for the idle-sessions benchmark: 10,000 real backends would take 10–30 GB
 * on their own, and what is measured is the proxy's memory per session, not the server's. It
 * answers every StartupMessage as a trusting PostgreSQL 15 primary (AuthenticationOk, the
 * ParameterStatus set a client expects including in_hot_standby, BackendKeyData, ReadyForQuery),
 * refuses SSL and GSS encryption with 'N', answers a simple Query with EmptyQueryResponse +
 * ReadyForQuery, and closes on Terminate. Not used by any test.
 *
 *   node --import tsx bench/pg-stub.ts --port 5999 [--standby]
 *
 * Prints `listening <port>` on stdout once it accepts connections.
 */
import { createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function cstrings(...parts: string[]): Buffer {
  return Buffer.from(parts.map((p) => `${p}\0`).join(''), 'utf8');
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function startupReply(standby: boolean, pid: number): Buffer {
  const params: [string, string][] = [
    ['server_version', '15.0 (pg-stub)'],
    ['server_encoding', 'UTF8'],
    ['client_encoding', 'UTF8'],
    ['DateStyle', 'ISO, MDY'],
    ['integer_datetimes', 'on'],
    ['standard_conforming_strings', 'on'],
    ['TimeZone', 'UTC'],
    ['in_hot_standby', standby ? 'on' : 'off'],
  ];
  return Buffer.concat([
    message('R', int32(0)),
    ...params.map(([k, v]) => message('S', cstrings(k, v))),
    message('K', Buffer.concat([int32(pid), int32(pid * 7919)])),
    message('Z', Buffer.from('I')),
  ]);
}

const EMPTY_QUERY = Buffer.concat([message('I', Buffer.alloc(0)), message('Z', Buffer.from('I'))]);
const SSL_CODE = 80877103;
const GSS_CODE = 80877104;
const CANCEL_CODE = 80877102;

function serve(socket: Socket, standby: boolean, pid: number): void {
  let buf: Buffer = Buffer.alloc(0);
  let started = false;
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    for (;;) {
      if (!started) {
        if (buf.length < 8) return;
        const len = buf.readInt32BE(0);
        if (buf.length < len) return;
        const code = buf.readInt32BE(4);
        buf = buf.subarray(len);
        if (code === SSL_CODE || code === GSS_CODE) socket.write('N');
        else if (code === CANCEL_CODE) socket.end();
        else {
          started = true;
          socket.write(startupReply(standby, pid));
        }
        continue;
      }
      if (buf.length < 5) return;
      const len = buf.readInt32BE(1);
      if (buf.length < len + 1) return;
      const type = String.fromCharCode(buf[0]!);
      buf = buf.subarray(len + 1);
      if (type === 'X') socket.end();
      else if (type === 'Q') socket.write(EMPTY_QUERY);
    }
  });
}

const { values } = parseArgs({
  options: { port: { type: 'string' }, standby: { type: 'boolean', default: false } },
  strict: true,
});
const port = Number(values.port ?? '0');
let nextPid = 1000;
const server = createServer((s) => serve(s, values.standby, nextPid++));
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  const a = server.address();
  process.stdout.write(`listening ${typeof a === 'object' && a !== null ? a.port : port}\n`);
});
process.once('SIGTERM', () => process.exit(0));
