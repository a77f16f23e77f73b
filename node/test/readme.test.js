// Runs the ```js blocks of README.md's "Embedding from Node" section, so the example cannot
// rot. Each block is written into the package (node/generated/) and run as its own module, so
// its `import ... from 'pipeline-checkpoint'` resolves to this package by self-reference.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/** The ```js blocks of one `## ` section of the README. */
function jsBlocks(markdown, heading) {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README.md has no "## ${heading}" section`);
  const rest = markdown.slice(start + 1);
  const next = rest.indexOf('\n## ');
  const section = next < 0 ? rest : rest.slice(0, next);
  return [...section.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

test('the README Node example runs', () => {
  const blocks = jsBlocks(readFileSync(README, 'utf8'), 'Embedding from Node');
  assert.ok(blocks.length > 0, 'the "Embedding from Node" section has no ```js block');
  blocks.forEach((code, i) => {
    const file = fileURLToPath(new URL(`../generated/readme-example-${i}.mjs`, import.meta.url));
    writeFileSync(file, code);
    try {
      const run = spawnSync(process.execPath, [file], { encoding: 'utf8' });
      assert.equal(run.status, 0, `README block ${i} failed:\n${run.stderr}${run.stdout}`);
    } finally {
      rmSync(file, { force: true });
    }
  });
});
