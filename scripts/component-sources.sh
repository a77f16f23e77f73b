#!/usr/bin/env bash
# Prints the manifest of what the shipped component is built from: one `sha256  path` line per
# file, sorted. `make component` stores it as component/SOURCES and puts its SHA-256 in the
# component's metadata (`revision`); scripts/check-component-current.sh compares both.
#
# The inputs: the WIT package, the guest crate, the lockfile (the guest's dependency
# versions), the workspace manifest (profile settings) and the guest build script (flags).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Tracked files and new ones not ignored, so that an uncommitted change counts too.
git ls-files -z --cached --others --exclude-standard -- \
    wit guest Cargo.lock Cargo.toml scripts/build-guest.sh \
    | LC_ALL=C sort -z \
    | while IFS= read -r -d '' file; do
        [[ -f $file ]] && sha256sum -- "$file"
    done
