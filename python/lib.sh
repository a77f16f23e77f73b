# Shared by run-tests.sh, dist.sh and install-test.sh (sourced, not run): logging, a Python
# 3.10 or newer ($PYTHON, default python3), and virtualenvs, also on a fresh Debian machine where
# python3 has no venv module until python3-venv is installed.

PYTHON=${PYTHON:-python3}

log() { printf '[python] %s\n' "$*" >&2; }
die() { printf '[python] error: %s\n' "$*" >&2; exit 1; }

require_python() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON on PATH (install python3, 3.10 or newer)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); the Python host needs 3.10 or newer"
}

# Debian's python3 has no `venv`/`ensurepip` until python3-venv is installed.
ensure_venv_module() {
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null && return
    command -v apt-get >/dev/null 2>&1 || die "$PYTHON cannot create virtualenvs (no venv/ensurepip)"
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install python3-venv"
        sudo=(sudo)
    fi
    log "installing python3-venv"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
}

# make_venv DIR: a new virtualenv at DIR (removed first if it exists).
make_venv() {
    require_python
    ensure_venv_module
    rm -rf "$1"
    "$PYTHON" -m venv "$1"
}

# ensure_venv DIR: the virtualenv at DIR, made when missing; rebuilt when its interpreter is gone
# (a moved or upgraded Python).
ensure_venv() {
    if [[ ! -x $1/bin/python ]] || ! "$1/bin/python" -c 'import sys' 2>/dev/null; then
        log "creating $1"
        make_venv "$1"
    fi
}

# now: seconds since the epoch, with a fraction.
now() { if [[ -n ${EPOCHREALTIME:-} ]]; then printf '%s' "${EPOCHREALTIME/,/.}"; else date +%s.%N; fi; }
