// Makes the JS bindings of a component for the Node host: jco transpile (`--instantiation sync`,
// so each instance gets its own imports), the patches of tools/patch-generated.mjs, and the
// sandbox of tools/sandbox-core.mjs in every core module. node/build.sh runs it on the shipped
// component; test/sandbox.test.js on the hostile test component.
//
//   node tools/transpile.mjs <component.wasm> <out-dir>
//
// The output is named `checkpoint.*` whatever the component's file name, which is what
// src/component.js loads. <out-dir> is replaced.

import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { instrumentDir } from './sandbox-core.mjs';

const NODE_DIR = fileURLToPath(new URL('..', import.meta.url));

function run(command, args) {
  const result = spawnSync(command, args, { cwd: NODE_DIR, stdio: ['ignore', 2, 2] });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.error?.message ?? `status ${result.status}`})`);
  }
}

/**
 * Transpiles `component` into `outDir` (replaced) and sandboxes its core modules.
 * @returns {Promise<{name: string, functions: number, loops: number, grows: number, bulk: number}[]>}
 */
export async function transpile(component, outDir) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  run('npx', ['--no-install', 'jco', 'transpile', component, '-o', outDir,
    '--instantiation', 'sync', '--name', 'checkpoint', '--quiet']);
  run(process.execPath, ['tools/patch-generated.mjs', `${outDir}/checkpoint.js`]);
  return instrumentDir(outDir);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [component, outDir] = process.argv.slice(2);
  if (!component || !outDir) {
    console.error('usage: node tools/transpile.mjs <component.wasm> <out-dir>');
    process.exit(2);
  }
  for (const r of await transpile(component, outDir)) {
    console.error(`transpile: ${r.name}: ${r.functions} functions metered, ${r.loops} loops, ` +
      `${r.grows} memory.grow limited, ${r.bulk} bulk memory ops metered`);
  }
}
