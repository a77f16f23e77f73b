#!/usr/bin/env bash
# The Rust crates in dist/ used as a user uses them: a new project in an empty temporary
# directory outside the repository depends on the unpacked `checkpoint-host` .crate (by path,
# with `checkpoint-component` from its own .crate, as the registry would give it) and runs the
# README's Rust example as its main. It shares target/ with the workspace and starts from the
# workspace's lockfile, so wasmtime and the other dependencies are not compiled again.
#
#   scripts/test-rust-package.sh [DIST_DIR]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dist=${1:-$REPO_ROOT/dist}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/Cargo.toml" | head -1)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-rust-package-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
start=$SECONDS

mkdir -p "$scratch/crates"
for crate in checkpoint-component checkpoint-host; do
    file=$dist/$crate-$version.crate
    [[ -f $file ]] || die "$file missing: run 'make dist'"
    tar -xzf "$file" -C "$scratch/crates"
done

# The README's example, from the fenced block under "## Embedding from Rust": lines hidden
# from readers with `# ` are doctest scaffolding and are dropped; the rest becomes main.
example=$(awk '
    /^## / { in_section = ($0 == "## Embedding from Rust") }
    in_section && /^```rust/ { in_block = 1; next }
    in_block && /^```/ { exit }
    in_block { print }
' "$REPO_ROOT/README.md" | grep -v '^# ')
[[ -n $example ]] || die "no rust block under '## Embedding from Rust' in README.md"

mkdir -p "$scratch/app/src"
cat >"$scratch/app/Cargo.toml" <<TOML
[package]
name = "readme-example"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
checkpoint-host = "$version"
tempfile = "3"

# The workspace's release profile, so that the shared target/ is reused as it is.
[profile.release]
debug = "line-tables-only"

# The unpacked crates stand in for the registry (they are not published yet).
[patch.crates-io]
checkpoint-host = { path = "../crates/checkpoint-host-$version" }
checkpoint-component = { path = "../crates/checkpoint-component-$version" }
TOML
{
    echo 'fn main() -> Result<(), Box<dyn std::error::Error>> {'
    printf '%s\n' "$example"
    echo '    println!("README Rust example: ok");'
    echo '    Ok(())'
    echo '}'
} >"$scratch/app/src/main.rs"
# Same dependency versions as the workspace, so the shared target/ already holds them.
cp "$REPO_ROOT/Cargo.lock" "$scratch/app/Cargo.lock"

log "building the README example against the unpacked crates in $scratch/app"
(cd "$scratch/app" && CARGO_TARGET_DIR=$REPO_ROOT/target cargo run --release --quiet)

# The library's normal dependencies (default features) leave out the CLI's and the servers'.
tree=$(cd "$scratch/app" && CARGO_TARGET_DIR=$REPO_ROOT/target cargo tree -e normal -p checkpoint-host --prefix none)
for banned in clap indicatif tracing-subscriber postgres redis; do
    if grep -q "^$banned v" <<<"$tree"; then
        die "checkpoint-host (default features) depends on $banned"
    fi
done
log "checkpoint-host from its .crate: README example ran, $(sort -u <<<"$tree" | wc -l) crates in its normal tree, no CLI or server crates ($((SECONDS - start)) s)"
