#!/usr/bin/env bash
# Builds the hostile test component (tests/hostile-guest) to target/hostile.wasm, for
# host/tests/sandbox.rs. Same routes and flags as scripts/build-guest.sh, except plain
# panic=abort: std's panic machinery stays, and with it the WASI imports the sandbox
# tests probe (files, environment, sockets).
#
#   scripts/build-hostile.sh
#
# The crate is its own workspace with its own lockfile and target dir (target/hostile);
# extra cargo flags (e.g. --locked) come from CKPT_CARGO_FLAGS.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

manifest=$REPO_ROOT/tests/hostile-guest/Cargo.toml
target_dir=$REPO_ROOT/target/hostile
out=$REPO_ROOT/target/hostile.wasm
read -r -a extra_flags <<<"${CKPT_CARGO_FLAGS:-}"

[[ -x $WASM_TOOLS ]] || die "$WASM_TOOLS missing: run 'make setup' (scripts/setup.sh) first"

export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_STRIP=true

route=$(guest_route)
start=$SECONDS
if [[ $route == rustup ]]; then
    log "building the hostile guest with rustup's toolchain ($(rustc --version))"
    cargo build --release --target wasm32-wasip2 "${extra_flags[@]}" \
        --manifest-path "$manifest" --target-dir "$target_dir"
else
    [[ -x $WASM_COMPONENT_LD && -L $TOOLCHAIN_BIN_DIR/wasm-ld ]] \
        || die "Debian-route tools missing: run 'make setup' (scripts/setup.sh) first"
    log "building the hostile guest with Debian's $("$DEBIAN_RUSTC" --version | awk '{print $1, $2}') (-Zbuild-std, panic=abort)"
    # RUSTC_BOOTSTRAP=1 lets this stable compiler take -Z flags, for this command only.
    env -u CARGO_ENCODED_RUSTFLAGS -u RUSTUP_TOOLCHAIN \
        RUSTC_BOOTSTRAP=1 \
        RUSTC="$DEBIAN_RUSTC" \
        RUSTFLAGS="-C link-self-contained=no -L $WASI_LIBC_DIR" \
        CARGO_TARGET_WASM32_WASIP2_LINKER="$WASM_COMPONENT_LD" \
        PATH="$TOOLCHAIN_BIN_DIR:/usr/bin:$PATH" \
        "$DEBIAN_CARGO" build --release --target wasm32-wasip2 -Zbuild-std=std,panic_abort "${extra_flags[@]}" \
        --manifest-path "$manifest" --target-dir "$target_dir"
fi

artifact=$target_dir/wasm32-wasip2/release/hostile_guest.wasm
[[ -f $artifact ]] || die "cargo succeeded but $artifact is missing"
"$WASM_TOOLS" validate "$artifact" || die "$artifact is not a valid component (wasm-tools validate)"
if ! cmp -s "$artifact" "$out"; then
    cp "$artifact" "$out.tmp" && mv "$out.tmp" "$out"
fi
log "$out ready ($(stat -c %s "$out") bytes, $((SECONDS - start)) s)"
