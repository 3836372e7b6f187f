/**
 * `proxy.auth.file`: pgbouncer's userlist.txt. One user a line, two double-quoted fields:
 *
 *   "alice" "SCRAM-SHA-256$4096:c2FsdA==$…:…"
 *   "bob"   "md5d9f9c3ea1a7bd4c6a3f0a1d4b6a8e2f1"
 *   "o""brien" "plain text password"        ; "" is a quote inside a field
 *
 * Blank lines and lines starting with ';' or '#' are comments; fields after the second are ignored
 * (pgbouncer reads only two). Parsing is a pure function from text to a map and a list of errors,
 * each naming the file and line, so a reload can report every problem and keep the old map.
 *
 * @see https://www.pgbouncer.org/config.html#authentication-file-format
 */
import { readFile } from 'node:fs/promises';
import { errorMessage, PgfleetError } from '../../errors.js';
import { parseSecret, type StoredSecret } from '../../protocol/auth/secret.js';

export interface AuthFileError {
  readonly file: string;
  /** 1-based. */
  readonly line: number;
  readonly message: string;
}

export interface AuthFile {
  readonly users: ReadonlyMap<string, StoredSecret>;
  readonly errors: readonly AuthFileError[];
}

export function formatAuthFileError(e: AuthFileError): string {
  return `${e.file}:${e.line}: ${e.message}`;
}

/** Reads one double-quoted field at `from`; `""` inside is a quote. */
function readQuoted(line: string, from: number): { value: string; end: number } | string {
  if (line[from] !== '"') return 'expected a double-quoted field';
  let value = '';
  let i = from + 1;
  for (;;) {
    const quote = line.indexOf('"', i);
    if (quote < 0) return 'a quoted field is not closed';
    value += line.slice(i, quote);
    if (line[quote + 1] !== '"') return { value, end: quote + 1 };
    value += '"';
    i = quote + 2;
  }
}

function skipSpaces(line: string, from: number): number {
  let i = from;
  while (line[i] === ' ' || line[i] === '\t') i++;
  return i;
}

/** One line: undefined for a comment or blank line, else the user and secret or a problem. */
export function parseAuthFileLine(line: string): { user: string; secret: StoredSecret } | string | undefined {
  const start = skipSpaces(line, 0);
  const first = line[start];
  if (first === undefined || first === ';' || first === '#' || first === '\r') return undefined;
  const user = readQuoted(line, start);
  if (typeof user === 'string') return `user name: ${user}`;
  if (user.value === '') return 'user name is empty';
  const secretStart = skipSpaces(line, user.end);
  if (secretStart === user.end && line[secretStart] !== undefined)
    return 'expected white space after the user name';
  const secret = readQuoted(line, secretStart);
  if (typeof secret === 'string') return `secret of user "${user.value}": ${secret}`;
  const parsed = parseSecret(secret.value);
  if (typeof parsed === 'string') return `secret of user "${user.value}": ${parsed}`;
  return { user: user.value, secret: parsed };
}

/** `file` names the source in errors. A user listed twice keeps its first line; the second is an error. */
export function parseAuthFile(text: string, file: string): AuthFile {
  const users = new Map<string, StoredSecret>();
  const firstLine = new Map<string, number>();
  const errors: AuthFileError[] = [];
  // A byte-order mark some editors write is not part of the first line.
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  body.split('\n').forEach((raw, index) => {
    const line = index + 1;
    const parsed = parseAuthFileLine(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
    if (parsed === undefined) return;
    if (typeof parsed === 'string') {
      errors.push({ file, line, message: parsed });
      return;
    }
    const earlier = firstLine.get(parsed.user);
    if (earlier !== undefined) {
      errors.push({ file, line, message: `user "${parsed.user}" is already listed on line ${earlier}` });
      return;
    }
    users.set(parsed.user, parsed.secret);
    firstLine.set(parsed.user, line);
  });
  return { users, errors };
}

/** Reads and parses the file; a file that cannot be read is ERR_CONFIG_READ naming it. */
export async function loadAuthFile(path: string): Promise<AuthFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new PgfleetError('ERR_CONFIG_READ', `proxy.auth.file ${path}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  return parseAuthFile(text, path);
}
