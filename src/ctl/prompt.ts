/**
 * patronictl's prompts (click.prompt / click.confirm): a question on stdout, one line read from
 * standard input, whether or not it is a terminal, so scripts can pipe answers in. End of input
 * before an answer aborts, as click does.
 */
import { createInterface, type Interface } from 'node:readline';
import { PgfleetError } from '../errors.js';

export interface Prompter {
  /** Asks; resolves with the trimmed answer, or `fallback` for an empty one. */
  ask(question: string, fallback?: string): Promise<string>;
  /** Asks a yes/no question; the default is no. */
  confirm(question: string): Promise<boolean>;
  close(): void;
}

export function stdinPrompter(input: NodeJS.ReadableStream, output: NodeJS.WritableStream): Prompter {
  let rl: Interface | undefined;
  const lines: string[] = [];
  const waiting: ((line: string | undefined) => void)[] = [];
  let ended = false;
  const open = (): void => {
    if (rl) return;
    rl = createInterface({ input, terminal: false });
    rl.on('line', (line) => {
      const w = waiting.shift();
      if (w) w(line);
      else lines.push(line);
    });
    rl.on('close', () => {
      ended = true;
      for (const w of waiting.splice(0)) w(undefined);
    });
  };
  const nextLine = (): Promise<string | undefined> => {
    open();
    if (lines.length > 0) return Promise.resolve(lines.shift());
    if (ended) return Promise.resolve(undefined);
    return new Promise((resolve) => waiting.push(resolve));
  };
  const ask = async (question: string, fallback?: string): Promise<string> => {
    output.write(fallback === undefined || fallback === '' ? `${question}: ` : `${question} [${fallback}]: `);
    const line = await nextLine();
    if (line === undefined) {
      output.write('\n');
      throw new PgfleetError('ERR_CTL_REJECTED', 'Aborted! (no answer on standard input)');
    }
    const answer = line.trim();
    return answer === '' ? (fallback ?? '') : answer;
  };
  return {
    ask,
    async confirm(question) {
      return /^y(es)?$/i.test(await ask(`${question} [y/N]`));
    },
    close() {
      rl?.close();
    },
  };
}
