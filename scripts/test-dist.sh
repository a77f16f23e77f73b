#!/usr/bin/env bash
# `make test-dist`: each package in dist/ installed the way a user installs it, in an empty
# directory outside the repository, running the README's example for its language:
# the Rust crates (scripts/test-rust-package.sh), the wheel (python/install-test.sh) and the
# npm tarball (node/install-test.sh). `make dist` first.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dist=${DIST_DIR:-$REPO_ROOT/dist}
[[ -f $dist/SHA256SUMS ]] || die "no $dist/SHA256SUMS: run 'make dist' first"
(cd "$dist" && sha256sum --quiet -c SHA256SUMS) || die "dist/ does not match its SHA256SUMS"

timings=()
run() {
    local name=$1 start=$SECONDS
    shift
    log "$name"
    "$@"
    timings+=("$(printf '%-8s %4d s' "$name" $((SECONDS - start)))")
}

shopt -s nullglob
wheels=("$dist"/*.whl)
tarballs=("$dist"/*.tgz)
((${#wheels[@]} == 1)) || die "expected one wheel in $dist, found ${#wheels[@]}"
((${#tarballs[@]} == 1)) || die "expected one npm tarball in $dist, found ${#tarballs[@]}"

run rust bash "$REPO_ROOT/scripts/test-rust-package.sh" "$dist"
run python bash "$REPO_ROOT/python/install-test.sh" "${wheels[0]}"
run node bash "$REPO_ROOT/node/install-test.sh" "${tarballs[0]}"

log "every package installed from dist/ ran its README example:"
printf '  %s\n' "${timings[@]}" >&2
