// Post-processes the code jco generated, before anything imports it.
//
// jco 1.35 emits a `_debugLog` helper that reads `globalThis.process.env.JCO_DEBUG` on every
// call, and calls it several times per component call (entering and leaving every export and
// every import). In Node, `process.env` is an interceptor that calls getenv(3) on each read.
// No transpile option removes the helper, so this replaces the per-call read with a constant
// read once when the generated module loads: setting JCO_DEBUG before starting the process
// still turns the debug output on.
//
// The patch is checked, not hoped for: the build fails if the expected text is not found
// exactly once or if any other environment read is left.

import { readFileSync, writeFileSync } from 'node:fs';

const ENV_READ = 'globalThis?.process?.env?.JCO_DEBUG';
const CACHED = 'JCO_DEBUG_AT_LOAD';

const path = process.argv[2];
if (!path) {
  console.error('usage: node tools/patch-generated.mjs <generated checkpoint.js>');
  process.exit(2);
}
const source = readFileSync(path, 'utf8');
const reads = source.split(ENV_READ).length - 1;
if (reads !== 1) {
  console.error(`${path}: expected the JCO_DEBUG read exactly once, found it ${reads} times; ` +
    'the jco version changed: review tools/patch-generated.mjs');
  process.exit(1);
}
const header =
  `// Patched by node/tools/patch-generated.mjs: JCO_DEBUG is read once, at load.\n` +
  `const ${CACHED} = Boolean(${ENV_READ});\n`;
const body = source.replace(ENV_READ, CACHED);
// Keep jco's leading "use components" line first.
const firstLineEnd = body.startsWith('"use components";') ? body.indexOf('\n') + 1 : 0;
const patched = body.slice(0, firstLineEnd) + header + body.slice(firstLineEnd);
// Anything else that reaches for the environment per call would defeat the point.
const leftover = patched.split('\n').filter((line) => /process\??\.env/.test(line) && !line.includes(`const ${CACHED}`));
if (leftover.length > 0) {
  console.error(`${path}: environment reads left after patching:\n${leftover.join('\n')}`);
  process.exit(1);
}
writeFileSync(path, patched);
