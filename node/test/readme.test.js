// Runs the ```js blocks of the repository README's "Embedding from Node" section and of this
// package's README "Usage" section, so the examples cannot rot. Each block is written into the
// package (node/generated/) and run as its own module, so its `import ... from
// 'pipeline-checkpoint'` resolves to this package by self-reference. (install-test.sh runs the
// same blocks against the installed tarball.)

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { jsBlocks } from '../tools/readme-example.mjs';

const READMES = [
  ['the repository README', '../../README.md', 'Embedding from Node', 'readme-example'],
  ['the package README', '../README.md', 'Usage', 'package-readme-example'],
];

for (const [what, path, heading, name] of READMES) {
  test(`${what}'s example (section ${heading}) runs`, () => {
    const blocks = jsBlocks(readFileSync(new URL(path, import.meta.url), 'utf8'), heading);
    blocks.forEach((code, i) => {
      const file = fileURLToPath(new URL(`../generated/${name}-${i}.mjs`, import.meta.url));
      writeFileSync(file, code);
      try {
        const run = spawnSync(process.execPath, [file], { encoding: 'utf8' });
        assert.equal(run.status, 0, `${path} block ${i} failed:\n${run.stderr}${run.stdout}`);
      } finally {
        rmSync(file, { force: true });
      }
    });
  });
}
