#!/usr/bin/env node
// npm `install` hook of the pgfleet package: builds the native relay addon when a C compiler is
// there; otherwise says so in one line and pgfleet relays in JavaScript (`proxy.relay: auto`).
// Never fails the install: the addon is an accelerator, not a requirement.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const cc = process.env.CC || 'cc';
const found = spawnSync(cc, ['--version'], { stdio: 'ignore' });
if (found.error || found.status !== 0) {
  console.log(
    `pgfleet: no C compiler (${cc}); the proxy will relay in JavaScript (install gcc and run \`npm rebuild pgfleet\` for the native relay)`,
  );
  process.exit(0);
}
try {
  execFileSync('bash', [path.join(root, 'scripts', 'build-native.sh')], { cwd: root, stdio: 'inherit' });
} catch {
  console.log(
    'pgfleet: the native relay addon did not build (see above; it needs OpenSSL headers: libssl-dev); the proxy will relay in JavaScript',
  );
}
