#!/usr/bin/env bash
# Installs what building the guest component needs. Idempotent: when everything is in place
# it only checks (about a second) and changes nothing.
#
#  - rustup route (rustup has the wasm32-wasip2 std): nothing but wasm-tools.
#  - Debian route (no wasm32 std from rustup): Debian's rustc/cargo 1.96 + std source, lld-19,
#    wasi-libc (apt, only the missing ones), wasm-component-ld, wasm-tools, and a private
#    target/toolchain/bin with wasm-ld -> /usr/bin/wasm-ld-19.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v cargo >/dev/null 2>&1 \
    || die "no cargo on PATH and no ~/.cargo/env: this project needs rustup's stable toolchain (1.95)"

# Installs a crate binary at an exact version when it is missing or at another version.
cargo_install_pinned() {
    local crate=$1 version=$2 bin=$3 have
    have=$(tool_version "$bin")
    if [[ $have == "$version" ]]; then
        log "$crate $version: present"
        return
    fi
    log "$crate: ${have:-not installed}; installing $version (cargo install --locked, a few minutes)"
    local start=$SECONDS
    cargo install --locked --force "$crate@$version"
    have=$(tool_version "$bin")
    [[ $have == "$version" ]] || die "$crate installed but $bin reports '${have:-nothing}', expected $version"
    log "$crate $version: installed in $((SECONDS - start)) s"
}

apt_install_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) != installed ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        log "Debian packages present: $*"
        return
    fi
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    local start=$SECONDS
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    log "Debian packages installed in $((SECONDS - start)) s"
}

route=$(guest_route)
log "guest build route: $route"

if [[ $route == debian ]]; then
    apt_install_missing "${DEBIAN_PACKAGES[@]}"

    # -Zbuild-std needs the std source of exactly this compiler.
    rustc_v=$("$DEBIAN_RUSTC" --version | awk '{print $2}')
    src_v=$(dpkg-query -W -f='${Version}' rust-web-src | sed 's/+.*//')
    [[ $rustc_v == "$src_v" ]] \
        || die "$DEBIAN_RUSTC is $rustc_v but rust-web-src is $src_v; they must match (apt-get install rustc-web rust-web-src)"
    sysroot=$("$DEBIAN_RUSTC" --print sysroot)
    [[ -d $sysroot/lib/rustlib/src/rust/library/std ]] \
        || die "std source missing under $sysroot/lib/rustlib/src/rust/library (package rust-web-src)"
    [[ -f $WASI_LIBC_DIR/libc.a ]] || die "$WASI_LIBC_DIR/libc.a missing (package wasi-libc)"
    [[ -x $DEBIAN_WASM_LD ]] || die "$DEBIAN_WASM_LD missing (package lld-19)"
    log "Debian rustc $rustc_v with std source; wasi-libc; $("$DEBIAN_WASM_LD" --version | head -1)"

    mkdir -p "$TOOLCHAIN_BIN_DIR"
    if [[ $(readlink "$TOOLCHAIN_BIN_DIR/wasm-ld" 2>/dev/null) != "$DEBIAN_WASM_LD" ]]; then
        ln -sfn "$DEBIAN_WASM_LD" "$TOOLCHAIN_BIN_DIR/wasm-ld"
        log "linked $TOOLCHAIN_BIN_DIR/wasm-ld -> $DEBIAN_WASM_LD"
    fi

    cargo_install_pinned wasm-component-ld "$WASM_COMPONENT_LD_VERSION" "$WASM_COMPONENT_LD"
fi

cargo_install_pinned wasm-tools "$WASM_TOOLS_VERSION" "$WASM_TOOLS"
log "ready"
