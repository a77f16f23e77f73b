#!/usr/bin/env bash
# Builds the guest crate as a wasm32-wasip2 component, copies it to one stable path and
# validates it.
#
#   scripts/build-guest.sh [--manifest-path Cargo.toml] [--package checkpoint-guest]
#                          [--target-dir target/guest] [--out target/checkpoint.wasm]
#                          [--panic immediate-abort|abort]
#
# `--panic immediate-abort` (the default, Debian route) drops std's panic machinery and with it
# every WASI import; `--panic abort` keeps them (the hostile test guest needs them to probe).
#
# The guest gets its own target dir so Debian's cargo 1.96 (Debian route) and rustup's cargo
# 1.95 (host) never share artifacts. Extra cargo flags (e.g. --locked) come from CKPT_CARGO_FLAGS.
# The output is rewritten only when its bytes change, so the host's build script is not re-run
# by a no-op guest build.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

manifest=$REPO_ROOT/Cargo.toml
package=checkpoint-guest
target_dir=$REPO_ROOT/target/guest
out=$REPO_ROOT/target/checkpoint.wasm
panic=immediate-abort
while (($#)); do
    case $1 in
        --manifest-path) manifest=$2; shift 2 ;;
        --package) package=$2; shift 2 ;;
        --target-dir) target_dir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --panic) panic=$2; shift 2 ;;
        *) die "unknown argument '$1' (see the header of $0)" ;;
    esac
done
read -r -a extra_flags <<<"${CKPT_CARGO_FLAGS:-}"
case $panic in
    immediate-abort) panic_flags="-Zunstable-options -Cpanic=immediate-abort" ;;
    abort) panic_flags="" ;;
    *) die "--panic takes immediate-abort or abort, not '$panic'" ;;
esac

[[ -x $WASM_TOOLS ]] || die "$WASM_TOOLS missing: run 'make setup' (scripts/setup.sh) first"

# Size over speed for the component: one LTO'd codegen unit, no debug info, stripped.
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_STRIP=true

# simd128 (fixed-width SIMD, part of WebAssembly 2.0; wasmtime, V8/jco and Python wasmtime run
# it) lets LLVM vectorise the CRC32C reduction in guest/src/crc.rs: 16 bytes per XOR instead of
# 8, about 2x on 1 MiB inside the component. CKPT_GUEST_SIMD=0 builds without it, for a runtime
# that lacks SIMD or to compare.
target_features="-C target-feature=+simd128"
if [[ ${CKPT_GUEST_SIMD:-1} == 0 ]]; then target_features=""; fi

route=$(guest_route)
start=$SECONDS
if [[ $route == rustup ]]; then
    log "building $package for wasm32-wasip2 with rustup's toolchain ($(rustc --version))"
    RUSTFLAGS="${RUSTFLAGS:-} $target_features" \
        cargo build --release --target wasm32-wasip2 "${extra_flags[@]}" \
        --manifest-path "$manifest" -p "$package" --target-dir "$target_dir"
else
    [[ -x $WASM_COMPONENT_LD && -L $TOOLCHAIN_BIN_DIR/wasm-ld ]] \
        || die "Debian-route tools missing: run 'make setup' (scripts/setup.sh) first"
    log "building $package for wasm32-wasip2 with Debian's $("$DEBIAN_RUSTC" --version | awk '{print $1, $2}') (-Zbuild-std, panic=$panic)"
    # RUSTC_BOOTSTRAP=1 lets this stable compiler take -Z flags, for this command only.
    env -u CARGO_ENCODED_RUSTFLAGS -u RUSTUP_TOOLCHAIN \
        RUSTC_BOOTSTRAP=1 \
        RUSTC="$DEBIAN_RUSTC" \
        RUSTFLAGS="-C link-self-contained=no -L $WASI_LIBC_DIR $panic_flags $target_features" \
        CARGO_TARGET_WASM32_WASIP2_LINKER="$WASM_COMPONENT_LD" \
        PATH="$TOOLCHAIN_BIN_DIR:/usr/bin:$PATH" \
        "$DEBIAN_CARGO" build --release --target wasm32-wasip2 -Zbuild-std=std,panic_abort "${extra_flags[@]}" \
        --manifest-path "$manifest" -p "$package" --target-dir "$target_dir"
fi

artifact=$target_dir/wasm32-wasip2/release/${package//-/_}.wasm
[[ -f $artifact ]] || die "cargo succeeded but $artifact is missing (is $package a cdylib?)"
"$WASM_TOOLS" validate "$artifact" || die "$artifact is not a valid component (wasm-tools validate)"
mkdir -p "$(dirname "$out")"
if cmp -s "$artifact" "$out"; then
    log "$out unchanged ($(stat -c %s "$out") bytes, $((SECONDS - start)) s)"
else
    cp "$artifact" "$out.tmp" && mv "$out.tmp" "$out"
    log "wrote $out ($(stat -c %s "$out") bytes, valid component, $((SECONDS - start)) s)"
fi
