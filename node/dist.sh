#!/usr/bin/env bash
# Builds the npm package and packs it: `bash node/dist.sh OUT_DIR` writes
# OUT_DIR/pipeline-checkpoint-<version>.tgz and prints its path and size on stdout.
#
# The tarball carries the jco bindings of component/checkpoint.wasm, generated here by build.sh
# (npm ci first when node_modules is missing or stale), so nothing is generated or built at
# install. `npm pack` runs build.sh again as `prepack` (a no-op once it is current). Fails if
# the tarball lacks a file the package needs at run time, holds anything it should not (tests,
# tools, scripts), or carries another component than component/checkpoint.wasm.
set -euo pipefail

node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -eq 1 ] || { echo "usage: bash node/dist.sh OUT_DIR" >&2; exit 2; }
mkdir -p "$1"
out="$(cd "$1" && pwd)"
cd "$node_dir"

bash build.sh

name="$(node -p 'const p = require("./package.json"); `${p.name}-${p.version}.tgz`')"
rm -f "$out/$name"
# --json: stdout is the pack report alone (build.sh, run as prepack, writes to stderr).
report="$(npm pack --json --loglevel=error --pack-destination "$out")"
tarball="$out/$name"
[ -f "$tarball" ] || { echo "node/dist.sh: npm pack did not write $tarball" >&2; exit 1; }

# What a user's install needs, and nothing of the repository's own.
listing="$(tar tzf "$tarball" | sort)"
missing=""
for f in package.json README.md LICENSE src/index.js src/index.d.ts src/faults.js src/faults.d.ts \
  src/checkpointer.d.ts src/errors.d.ts src/storage.d.ts src/consumer.d.ts src/component.js \
  src/values.js src/sources/redis-streams.js src/sources/redis-streams.d.ts \
  generated/checkpoint.js generated/checkpoint.wasm generated/component.json; do
  grep -qx "package/$f" <<<"$listing" || missing+=" $f"
done
grep -q '^package/generated/checkpoint\.core\.wasm$' <<<"$listing" || missing+=" generated/checkpoint.core.wasm"
[ -z "$missing" ] || { echo "node/dist.sh: $tarball lacks:$missing" >&2; exit 1; }
stray="$(grep -Ev '^package/(package\.json|README\.md|LICENSE|src/(sources/)?[a-z-]+\.(js|d\.ts)|generated/(checkpoint\.js|checkpoint\.wasm|component\.json|checkpoint\.core[0-9]*\.wasm))$' <<<"$listing" || true)"
[ -z "$stray" ] || { echo "node/dist.sh: unexpected files in $tarball:" >&2; echo "$stray" >&2; exit 1; }

# The tarball's component, and the one its bindings were generated from, is the shipped one.
shipped="$(sha256sum "$(dirname "$node_dir")/component/checkpoint.wasm" | cut -d' ' -f1)"
packed="$(tar xzOf "$tarball" package/generated/checkpoint.wasm | sha256sum | cut -d' ' -f1)"
generated_from="$(tar xzOf "$tarball" package/generated/component.json | node -p 'JSON.parse(require("fs").readFileSync(0, "utf8")).sha256')"
if [ "$packed" != "$shipped" ] || [ "$generated_from" != "$shipped" ]; then
  echo "node/dist.sh: $tarball does not carry component/checkpoint.wasm ($shipped): packed $packed, bindings from $generated_from" >&2
  exit 1
fi

node -e '
  const [report, tarball] = [JSON.parse(process.argv[1])[0], process.argv[2]];
  const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log(tarball);
  const sha256 = require("node:crypto").createHash("sha256").update(require("node:fs").readFileSync(tarball)).digest("hex");
  console.log(`${report.name}@${report.version}: ${report.size} bytes (${kib(report.size)}) packed, ` +
    `${kib(report.unpackedSize)} unpacked, ${report.entryCount} files, sha256 ${sha256}`);
' "$report" "$tarball"
