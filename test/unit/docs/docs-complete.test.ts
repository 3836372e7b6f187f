/**
 * The reference docs cover what the code has: every configuration key of the agent and proxy
 * schemas is a row of docs/configuration.md, and every metric name registered in src/ is in
 * docs/metrics.md. Adding a key or a metric without documenting it fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { agentConfigSchema } from '../../../src/config/agent-schema.js';
import { proxyConfigSchema } from '../../../src/config/proxy-schema.js';
import { schemaKeys } from './schema-keys.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..', '..');
const read = (p: string) => readFileSync(path.join(ROOT, p), 'utf8');

/** The rows of the markdown table under `## <heading>` (up to the next heading), first cells. */
function tableKeys(doc: string, heading: string): Set<string> {
  const start = doc.indexOf(`\n## ${heading}`);
  assert.ok(start >= 0, `no section ${heading}`);
  const end = doc.indexOf('\n## ', start + 1);
  const rows = doc.slice(start, end < 0 ? undefined : end).split('\n');
  return new Set(
    rows.map((r) => /^\| `([^`]+)` \|/.exec(r)?.[1]).filter((k): k is string => k !== undefined),
  );
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sourceFiles(path.join(dir, e.name))
      : e.name.endsWith('.ts')
        ? [path.join(dir, e.name)]
        : [],
  );
}

void describe('reference docs', () => {
  const config = read('docs/configuration.md');

  void it('every agent configuration key has its row, with default, unit and reload columns', () => {
    const rows = tableKeys(config, 'Agent');
    const missing = schemaKeys(agentConfigSchema).filter((k) => !rows.has(k));
    assert.deepEqual(missing, []);
    assert.match(config, /\| key \| default \| unit \| meaning \| reload \|/);
  });

  void it('every proxy configuration key has its row', () => {
    const rows = tableKeys(config, 'Proxy');
    const missing = schemaKeys(proxyConfigSchema).filter((k) => !rows.has(k));
    assert.deepEqual(missing, []);
  });

  void it('no row names a key the schemas do not have', () => {
    const known = new Set([...schemaKeys(agentConfigSchema), ...schemaKeys(proxyConfigSchema)]);
    const stale = [...tableKeys(config, 'Agent'), ...tableKeys(config, 'Proxy')].filter((k) => !known.has(k));
    assert.deepEqual(stale, []);
  });

  void it('every metric registered in src/ is in docs/metrics.md', () => {
    const metrics = read('docs/metrics.md');
    const names = new Set<string>();
    for (const file of sourceFiles('src')) {
      for (const m of read(file).matchAll(/['"`]((?:pgfleet|patroni)_[a-z_]+)['"`]/g)) names.add(m[1]!);
    }
    assert.ok(names.size > 30, `found ${names.size} metric names`);
    const missing = [...names].filter((n) => !metrics.includes(`\`${n}`));
    assert.deepEqual(missing, []);
  });
});
