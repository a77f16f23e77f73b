// Post-processes the code jco generated, before anything imports it.
//
// jco 1.35 emits a `_debugLog` helper that reads `globalThis.process.env.JCO_DEBUG` on every
// call, and calls it several times per component call (entering and leaving every export and
// every import). In Node, `process.env` is an interceptor that calls getenv(3) on each read.
// No transpile option removes the helper, so this replaces the per-call read with a constant
// read once when the generated module loads: setting JCO_DEBUG before starting the process
// still turns the debug output on.
//
// Node 20 has no JSPI, so each of jco's `xAsync = WebAssembly.promising(f)` (13 per instance,
// each inside try/catch with a synchronous fallback) throws a TypeError. V8 words that error
// by re-parsing the calling function, jco's ~7,000-line instantiation generator: about 3 ms
// per throw, 35-45 ms per instance. The calls go through `jcoPromising`, which throws a
// ready-made error when JSPI is missing: the same fallback without the cost.
//
// The patches are checked, not hoped for: the build fails if the expected text is not found
// (exactly once for the env read, only in the try/catch form for `promising`) or if any other
// environment read is left.

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
const PROMISING = 'WebAssembly.promising(';
const promisingCalls = source.split(PROMISING).length - 1;
const fallbackForm = /(\w+Async) = WebAssembly\.promising\(/g;
const inFallbackForm = [...source.matchAll(fallbackForm)].length;
if (promisingCalls === 0 || inFallbackForm !== promisingCalls) {
  console.error(`${path}: expected every WebAssembly.promising call as \`xAsync = WebAssembly.promising(\` ` +
    `(found ${promisingCalls}, ${inFallbackForm} in that form); review tools/patch-generated.mjs`);
  process.exit(1);
}

const header =
  `// Patched by node/tools/patch-generated.mjs: JCO_DEBUG is read once, at load; without JSPI,\n` +
  `// WebAssembly.promising fails with a ready-made error (see the patch script for why).\n` +
  `const ${CACHED} = Boolean(${ENV_READ});\n` +
  `const NO_JSPI = new TypeError('WebAssembly.promising is not available (no JSPI)');\n` +
  `const jcoPromising = typeof WebAssembly.promising === 'function'\n` +
  `  ? (f) => WebAssembly.promising(f)\n` +
  `  : () => { throw NO_JSPI; };\n`;
const body = source.replace(ENV_READ, CACHED).split(PROMISING).join('jcoPromising(');
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
