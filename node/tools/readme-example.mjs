// The ```js blocks of one `## ` section of a README: the usage examples that readme.test.js
// runs against the in-repo package and install-test.sh runs against the installed tarball (the
// repository README's "Embedding from Node", this package's README "Usage"), so they cannot rot.
//
//   node tools/readme-example.mjs README.md HEADING OUT_DIR NAME
//       writes OUT_DIR/NAME-<i>.mjs, one per block, and prints their paths; fails when the
//       section or its ```js blocks are missing
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The ```js blocks of one `## ` section of a Markdown text; throws when there are none. */
export function jsBlocks(markdown, heading) {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`no "## ${heading}" section`);
  const rest = markdown.slice(start + 1);
  const next = rest.indexOf('\n## ');
  const section = next < 0 ? rest : rest.slice(0, next);
  const blocks = [...section.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  if (blocks.length === 0) throw new Error(`the "## ${heading}" section has no \`\`\`js block`);
  return blocks;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [readme, heading, outDir, name] = process.argv.slice(2);
  if (!name) {
    console.error('usage: node tools/readme-example.mjs README.md HEADING OUT_DIR NAME');
    process.exit(2);
  }
  try {
    jsBlocks(readFileSync(readme, 'utf8'), heading).forEach((code, i) => {
      const file = join(outDir, `${name}-${i}.mjs`);
      writeFileSync(file, code);
      console.log(file);
    });
  } catch (e) {
    console.error(`${readme}: ${e.message}`);
    process.exit(1);
  }
}
