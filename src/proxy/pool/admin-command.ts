/**
 * The admin console's commands (admin-console.ts): parsed from a simple Query's text, any case,
 * an optional `;`, words separated by white space; a listener's name may be double-quoted. Pure.
 */
import { NEEDS_LISTENER, isListenerCommand, type ListenerCommand } from './listener-commands.js';

/** The views by listener (the admin HTTP port's too). */
export const SHOWABLE = ['pools', 'clients', 'servers', 'stats'] as const;
export type Showable = (typeof SHOWABLE)[number];
export const SHOW_WHAT = [...SHOWABLE, 'databases', 'config', 'version', 'help'] as const;
export type ShowWhat = (typeof SHOW_WHAT)[number];

export type AdminCommand =
  | { readonly kind: 'show'; readonly what: ShowWhat }
  /** On the listener named, or (undefined) every pooled listener; DISABLE and ENABLE name one. */
  | { readonly kind: ListenerCommand; readonly listener: string | undefined }
  | { readonly kind: 'reload' }
  | { readonly kind: 'invalid'; readonly message: string };

/** SHOW HELP's rows. */
export const HELP: readonly string[] = [
  'SHOW POOLS',
  'SHOW CLIENTS',
  'SHOW SERVERS',
  'SHOW STATS',
  'SHOW DATABASES',
  'SHOW CONFIG',
  'SHOW VERSION',
  'SHOW HELP',
  'PAUSE [listener]',
  'RESUME [listener]',
  'KILL [listener]',
  'RECONNECT [listener]',
  'DISABLE listener',
  'ENABLE listener',
  'RELOAD',
];

const invalid = (message: string): AdminCommand => ({
  kind: 'invalid',
  message: `pgfleet admin console: ${message}`,
});

const unquoted = (name: string): string => name.replace(/^"(.*)"$/, '$1');

function listenerCommand(verb: ListenerCommand, args: readonly string[]): AdminCommand {
  const upper = verb.toUpperCase();
  if (NEEDS_LISTENER.has(verb)) {
    if (args.length !== 1) return invalid(`${upper} takes one listener`);
  } else if (args.length > 1) return invalid(`${upper} takes at most one listener`);
  return { kind: verb, listener: args[0] === undefined ? undefined : unquoted(args[0]) };
}

/** One command of the console: words, any case, an optional `;`. */
export function parseAdminCommand(sql: string): AdminCommand {
  const words = sql.trim().replace(/;\s*$/, '').trim().split(/\s+/);
  const verb = (words[0] ?? '').toLowerCase();
  const args = words.slice(1);
  if (isListenerCommand(verb)) return listenerCommand(verb, args);
  switch (verb) {
    case 'show': {
      const what = (args[0] ?? '').toLowerCase();
      if (!(SHOW_WHAT as readonly string[]).includes(what))
        return invalid(
          `SHOW takes one of ${SHOW_WHAT.map((w) => w.toUpperCase()).join(', ')} (got ${JSON.stringify(args.join(' '))})`,
        );
      if (args.length > 1) return invalid(`SHOW ${what.toUpperCase()} takes no argument`);
      return { kind: 'show', what: what as ShowWhat };
    }
    case 'reload':
      if (args.length > 0) return invalid('RELOAD takes no argument');
      return { kind: 'reload' };
  }
  return invalid(`unknown command ${JSON.stringify(sql.trim())}; SHOW HELP lists them`);
}
