/** pgbouncer's operator commands on a pooled listener: their verdicts and targets. Tables. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  RUNNING,
  admitsClient,
  commandTargets,
  decideCommand,
  type ListenerAdminState,
  type ListenerCommand,
} from '../../../../src/proxy/pool/listener-commands.js';

const PAUSED: ListenerAdminState = { paused: true, disabled: false };
const DISABLED: ListenerAdminState = { paused: false, disabled: true };
const BOTH: ListenerAdminState = { paused: true, disabled: true };

/** What a verdict drops: `clients`, `servers`, `retire`, joined; '' for nothing. */
const acts = (v: ReturnType<typeof decideCommand>): string =>
  [v.dropClients && 'clients', v.dropServers && 'servers', v.retireServers && 'retire']
    .filter(Boolean)
    .join('+');

describe('listener commands', () => {
  it('each command moves the listener state as pgbouncer does, and says what goes now', () => {
    // [name, from, command, to, acts]
    const table: [string, ListenerAdminState, ListenerCommand, ListenerAdminState, string][] = [
      ['PAUSE a running listener', RUNNING, 'pause', PAUSED, ''],
      ['PAUSE again: still paused', PAUSED, 'pause', PAUSED, ''],
      ['RESUME a paused listener', PAUSED, 'resume', RUNNING, ''],
      ['RESUME a running listener: nothing', RUNNING, 'resume', RUNNING, ''],
      ['KILL: clients and servers dropped, left paused', RUNNING, 'kill', PAUSED, 'clients+servers'],
      ['KILL a paused listener: dropped, still paused', PAUSED, 'kill', PAUSED, 'clients+servers'],
      ['KILL keeps DISABLE', DISABLED, 'kill', BOTH, 'clients+servers'],
      ['RESUME after KILL lets clients on; DISABLE stays', BOTH, 'resume', DISABLED, ''],
      ['RECONNECT: servers retired, state unchanged', RUNNING, 'reconnect', RUNNING, 'retire'],
      ['RECONNECT while paused: still paused', PAUSED, 'reconnect', PAUSED, 'retire'],
      ['DISABLE: new clients refused, open sessions go on', RUNNING, 'disable', DISABLED, ''],
      ['DISABLE keeps PAUSE', PAUSED, 'disable', BOTH, ''],
      ['ENABLE', DISABLED, 'enable', RUNNING, ''],
      ['ENABLE keeps PAUSE', BOTH, 'enable', PAUSED, ''],
      ['ENABLE an enabled listener: nothing', RUNNING, 'enable', RUNNING, ''],
    ];
    for (const [name, from, command, to, what] of table) {
      const v = decideCommand(from, command);
      assert.deepEqual(v.state, to, name);
      assert.equal(acts(v), what, name);
    }
  });

  it('a disabled listener refuses new clients but the admin console', () => {
    const table: [string, boolean, boolean, boolean][] = [
      ['enabled, a client', false, false, true],
      ['enabled, the console', false, true, true],
      ['disabled, a client', true, false, false],
      ['disabled, the console', true, true, true],
    ];
    for (const [name, disabled, adminConsole, admitted] of table)
      assert.equal(admitsClient(disabled, adminConsole), admitted, name);
  });

  it('targets: the listener named, or every pooled one; DISABLE and ENABLE must name one', () => {
    const pooled = ['tx', 'sess'];
    // [name, command, listener, expected listeners or problem]
    const table: [string, ListenerCommand, string | undefined, string[] | string][] = [
      ['KILL tx', 'kill', 'tx', ['tx']],
      ['KILL (every one)', 'kill', undefined, ['tx', 'sess']],
      ['RECONNECT (an empty name: every one)', 'reconnect', '', ['tx', 'sess']],
      ['PAUSE (every one)', 'pause', undefined, ['tx', 'sess']],
      ['RESUME sess', 'resume', 'sess', ['sess']],
      ['DISABLE tx', 'disable', 'tx', ['tx']],
      ['DISABLE without a name', 'disable', undefined, "missing: DISABLE needs a listener's name"],
      ['ENABLE with an empty name', 'enable', '', "missing: ENABLE needs a listener's name"],
      ['KILL an unknown listener', 'kill', 'nope', 'unknown: no pooled listener "nope"'],
      ['ENABLE an unknown listener', 'enable', 'relayed', 'unknown: no pooled listener "relayed"'],
    ];
    for (const [name, command, listener, expected] of table) {
      const t = commandTargets(command, listener, pooled);
      assert.deepEqual(t.ok ? t.listeners : `${t.problem}: ${t.message}`, expected, name);
    }
  });
});
