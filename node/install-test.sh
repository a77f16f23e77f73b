#!/usr/bin/env bash
# Installs the npm tarball as a user would and uses it: `bash node/install-test.sh TARBALL`.
#
# In an empty temporary directory outside the repository: `npm init -y`, `npm install TARBALL`,
# `npm install --save-dev typescript@<pinned>`, then
#   (a) runs the ```js blocks of the repository README's "## Embedding from Node" section as
#       .mjs files (extracted now, so the README cannot drift from the package), and those of
#       the installed package's own README ("## Usage"), and
#   (b) type-checks node/test/types-check.ts (a user's TypeScript: open, write, resumePoint,
#       typed errors with payloads, a custom store, a driver, the faults entry point) with
#       `tsc --noEmit --strict --module nodenext`.
# The installed package must not mention the repository's path, nor depend on anything. Prints
# the time of each step. Needs Node 20+ with npm, and the registry for typescript.
set -euo pipefail

TYPESCRIPT=5.9.3 # the version node/package.json pins for the in-repo check

node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$node_dir")"
[ $# -eq 1 ] || { echo "usage: bash node/install-test.sh TARBALL" >&2; exit 2; }
[ -f "$1" ] || { echo "node/install-test.sh: no tarball at $1" >&2; exit 1; }
tarball="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

work="$(mktemp -d "${TMPDIR:-/tmp}/pipeline-checkpoint-npm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
case "$work/" in "$repo"/*) echo "node/install-test.sh: $work is inside the repository" >&2; exit 1 ;; esac

total_start=$EPOCHREALTIME
# step NAME COMMAND...: runs COMMAND in the scratch project, output to a log shown on failure.
step() {
  local name="$1"; shift
  local start=$EPOCHREALTIME log="$work/.step.log"
  if ! (cd "$work/project" && "$@") >"$log" 2>&1; then
    echo "node/install-test.sh: step '$name' failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  local ms=$(( (${EPOCHREALTIME//[.,]/} - ${start//[.,]/}) / 1000 ))
  printf 'node install-test: %-48s %6d ms\n' "$name" "$ms"
}

mkdir "$work/project"
echo "node install-test: $tarball in $work/project"
step "npm init -y" npm init -y
step "npm pkg set type=module" npm pkg set type=module
step "npm install <tarball>" npm install --no-audit --no-fund --loglevel=error "$tarball"
step "npm install --save-dev typescript@$TYPESCRIPT" \
  npm install --no-audit --no-fund --loglevel=error --save-dev --save-exact "typescript@$TYPESCRIPT"

pkg="$work/project/node_modules/pipeline-checkpoint"
# The package runs from its own files: no path into the repository, no dependencies, no
# install-time scripts.
if grep -rqF "$repo" "$pkg"; then
  echo "node/install-test.sh: the installed package mentions the repository path $repo:" >&2
  grep -rlF "$repo" "$pkg" >&2
  exit 1
fi
node -e '
  const p = require(process.argv[1]);
  const bad = [
    ...Object.keys(p.dependencies ?? {}).map((d) => `dependency ${d}`),
    ...["preinstall", "install", "postinstall", "prepare"].filter((s) => p.scripts?.[s]).map((s) => `script ${s}`),
  ];
  if (bad.length) { console.error(`node/install-test.sh: the package has ${bad.join(", ")}`); process.exit(1); }
' "$pkg/package.json"

# (a) The README examples: the repository README's, as it reads now, and the one in the
# installed package's own README.
mapfile -t examples < <(
  node "$node_dir/tools/readme-example.mjs" "$repo/README.md" "Embedding from Node" "$work/project" readme-example
  node "$node_dir/tools/readme-example.mjs" "$pkg/README.md" "Usage" "$work/project" package-readme-example
)
[ "${#examples[@]}" -ge 2 ] || { echo "node/install-test.sh: README examples missing" >&2; exit 1; }
for example in "${examples[@]}"; do
  step "node $(basename "$example")" node "$example"
done

# (b) A user's TypeScript against the installed declarations.
cp "$node_dir/test/types-check.ts" "$work/project/types-check.ts"
step "tsc --noEmit --strict --module nodenext" \
  npx --no-install tsc --noEmit --strict --module nodenext --moduleResolution nodenext types-check.ts

total_ms=$(( (${EPOCHREALTIME//[.,]/} - ${total_start//[.,]/}) / 1000 ))
echo "node install-test: ok, $(basename "$tarball") installed and used outside the repository in ${total_ms} ms"
