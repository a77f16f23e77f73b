# shellcheck shell=bash
# Shared settings for scripts/setup.sh, scripts/build-guest.sh and scripts/check-component.sh.
# Sourced, not executed.

# Pinned tool versions (installed with `cargo install --locked`; both build with rustc 1.95).
WASM_COMPONENT_LD_VERSION=0.5.31
WASM_TOOLS_VERSION=1.263.0

# Debian packages for the guest build when rustup has no wasm32-wasip2 standard library:
# Debian's rustc/cargo 1.96 with the matching std source (built with -Zbuild-std), lld for
# wasm-ld, and wasi-libc for the C runtime std links against.
DEBIAN_PACKAGES=(rustc-web cargo-web rust-web-src lld-19 wasi-libc)
DEBIAN_RUSTC=/usr/bin/rustc
DEBIAN_CARGO=/usr/bin/cargo
DEBIAN_WASM_LD=/usr/bin/wasm-ld-19
WASI_LIBC_DIR=/usr/lib/wasm32-wasi

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARGO_BIN_DIR=${CARGO_HOME:-$HOME/.cargo}/bin
# Private bin dir put first on PATH for the Debian-route guest build only.
TOOLCHAIN_BIN_DIR=$REPO_ROOT/target/toolchain/bin
WASM_TOOLS=$CARGO_BIN_DIR/wasm-tools
WASM_COMPONENT_LD=$CARGO_BIN_DIR/wasm-component-ld

# rustup's cargo (installed by rustup in ~/.cargo/bin) is the one for the host and for installs.
if ! command -v cargo >/dev/null 2>&1 && [[ -f ${CARGO_HOME:-$HOME/.cargo}/env ]]; then
    # shellcheck disable=SC1091
    . "${CARGO_HOME:-$HOME/.cargo}/env"
fi

if [[ -t 2 ]]; then _b=$'\e[1m' _r=$'\e[1;31m' _n=$'\e[0m'; else _b='' _r='' _n=''; fi
log() { printf '%s[%s]%s %s\n' "$_b" "$(basename "$0" .sh)" "$_n" "$*" >&2; }
die() { printf '%s[%s] error:%s %s\n' "$_r" "$(basename "$0" .sh)" "$_n" "$*" >&2; exit 1; }

# Which way the guest is built: "rustup" when rustup has the wasm32-wasip2 std installed,
# otherwise "debian". CKPT_GUEST_ROUTE=rustup|debian overrides the detection.
guest_route() {
    if [[ -n ${CKPT_GUEST_ROUTE:-} ]]; then
        case $CKPT_GUEST_ROUTE in
            rustup|debian) echo "$CKPT_GUEST_ROUTE"; return ;;
            *) die "CKPT_GUEST_ROUTE must be 'rustup' or 'debian', not '$CKPT_GUEST_ROUTE'" ;;
        esac
    fi
    if command -v rustup >/dev/null 2>&1 \
        && rustup target list --installed 2>/dev/null | grep -qx 'wasm32-wasip2'; then
        echo rustup
    else
        echo debian
    fi
}

# Prints the version a `<tool> --version` reports ("wasm-tools 1.263.0 (abc 2026-01-01)" -> 1.263.0),
# or nothing when the tool is missing or broken.
tool_version() {
    [[ -x $1 ]] || return 0
    "$1" --version 2>/dev/null | awk 'NR==1 {print $2}'
}

# True when PORT on loopback accepts connections (someone listens there).
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port nobody listens on now, above the well-known range and the servers'
# default ports (for the test servers of scripts/{postgres,redis}-server.sh).
pick_port() {
    local port tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 40000))
        if ! port_in_use "$port"; then
            echo "$port"
            return
        fi
    done
    die "found no free port on 127.0.0.1 after 200 tries"
}
