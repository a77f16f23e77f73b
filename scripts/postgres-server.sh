#!/usr/bin/env bash
# A private PostgreSQL server for tests: loopback only, a free port, cluster and logs in one
# directory.
#
#   scripts/postgres-server.sh install      install PostgreSQL (Debian package) when missing
#   scripts/postgres-server.sh start DIR    start (or find running) the server of DIR; prints its URL
#   scripts/postgres-server.sh stop DIR     stop the server of DIR (fast shutdown; no error if down)
#
# `start` prints `postgres://postgres@127.0.0.1:PORT/postgres` as the last (and only) line of
# stdout; everything else goes to stderr. The first start of DIR runs initdb into DIR/data and
# picks a free port, saved in DIR/data/port.conf and DIR/port, so a restart of the same DIR
# gets the same URL and the same data. The server listens on 127.0.0.1 only, its unix socket is
# in DIR/socket, its log is DIR/server.log, and it is durable (fsync and synchronous_commit on,
# full_page_writes on). Authentication is `trust`: this is a test server on loopback.
#
# initdb and postgres refuse to run as root; as root the script runs them as the `postgres`
# system user that the Debian package creates, and hands DIR to that user.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# How long `start` waits for the server to accept connections, in seconds.
START_WAIT_SECONDS=60
# The server-side user, and the database the URL names (both created by initdb).
SUPERUSER=postgres
DATABASE=postgres

usage() {
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
}

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

# Runs a server binary as the user that owns the cluster: `postgres` when we are root.
as_server_user() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The newest installed server's bin dir (Debian: /usr/lib/postgresql/<ver>/bin), or nothing.
find_bindir() {
    local dir
    while read -r dir; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            echo "$dir"
            return
        fi
    done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r)
}

install_postgres() {
    if [[ -n $(find_bindir) ]] && { [[ $(id -u) != 0 ]] || id postgres >/dev/null 2>&1; }; then
        return
    fi
    log "PostgreSQL server missing: installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y postgresql >&2; then
        log "install failed; refreshing the package lists and trying again"
        as_root apt-get update >&2
        as_root apt-get install -y postgresql >&2
    fi
    [[ -n $(find_bindir) ]] || die "no initdb/pg_ctl/postgres under /usr/lib/postgresql/*/bin after the install"
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "the package created no 'postgres' user to run the server as"
    fi
}

url() {
    echo "postgres://$SUPERUSER@127.0.0.1:$1/$DATABASE"
}

# The unix socket directory, or '' (TCP only) when DIR is too deep for a socket path: the
# kernel limits it to 107 bytes, and the server fails to start rather than shorten it.
socket_dir() {
    local dir=$1 socket="$1/socket/.s.PGSQL.65535"
    if (( ${#socket} <= 107 )); then
        echo "$dir/socket"
    fi
}

# Creates the cluster in DIR/data with the settings the tests rely on; the port comes later.
init_cluster() {
    local dir=$1 bindir=$2 sockets
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$dir"
        # The server user must reach DIR: every parent needs search permission for it.
        runuser -u postgres -- test -w "$dir" \
            || die "user postgres cannot reach $dir (a parent directory is not searchable by it)"
    fi
    log "creating a cluster in $dir/data"
    (cd "$dir" && as_server_user "$bindir/initdb" -D "$dir/data" -U "$SUPERUSER" --auth=trust \
        -E UTF8 --locale=C --data-checksums >&2)
    sockets=$(socket_dir "$dir")
    if [[ -n $sockets ]]; then
        as_server_user mkdir -p "$sockets"
    fi
    # Appended last, so these win over initdb's defaults.
    as_server_user tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF

# Written by scripts/postgres-server.sh at the first start of this directory.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockets'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
logging_collector = off
# The port, chosen once at the first start (this script rewrites only that file).
include 'port.conf'
EOF
}

set_port() {
    local dir=$1 port=$2
    as_server_user tee "$dir/data/port.conf" >/dev/null <<<"port = $port"
    echo "$port" >"$dir/port"
}

# pg_ctl prints to stdout; this script keeps stdout for the URL.
pg_ctl_start() {
    local dir=$1 bindir=$2
    (cd "$dir" && as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
        -w -t "$START_WAIT_SECONDS" start >&2)
}

running() {
    local dir=$1 bindir=$2
    [[ -f $dir/data/PG_VERSION ]] || return 1
    (cd "$dir" && as_server_user "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1)
}

# Waits until the server accepts TCP connections on PORT; prints the log when it gives up.
wait_ready() {
    local dir=$1 bindir=$2 port=$3 i
    for ((i = 0; i < START_WAIT_SECONDS * 10; i++)); do
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -d "$DATABASE" -U "$SUPERUSER" -t 1; then
            return 0
        fi
        sleep 0.1
    done
    log "PostgreSQL of $dir does not accept connections on port $port; the log says:"
    tail -n 50 "$dir/server.log" >&2 || true
    return 1
}

start() {
    local dir=$1 bindir port tries
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    install_postgres
    bindir=$(find_bindir)
    if [[ -f $dir/data/PG_VERSION && -f $dir/port ]]; then
        port=$(<"$dir/port")
        [[ $port =~ ^[0-9]+$ ]] || die "$dir/port holds no port number"
        if running "$dir" "$bindir"; then
            wait_ready "$dir" "$bindir" "$port" || die "PostgreSQL of $dir runs but is not ready"
            log "already running on port $port (data in $dir/data)"
            url "$port"
            return
        fi
        pg_ctl_start "$dir" "$bindir" || {
            tail -n 50 "$dir/server.log" >&2 || true
            die "PostgreSQL of $dir did not start again on port $port"
        }
        wait_ready "$dir" "$bindir" "$port" || die "PostgreSQL of $dir is not ready"
        log "restarted on port $port (data in $dir/data)"
        url "$port"
        return
    fi
    # A cluster without a saved port is a half-done first start: begin again.
    [[ ! -e $dir/data ]] || rm -rf "$dir/data"
    init_cluster "$dir" "$bindir"
    # A port can be taken between the check and the bind; then try another one.
    for ((tries = 0; ; tries++)); do
        port=$(pick_port)
        set_port "$dir" "$port"
        as_server_user tee "$dir/server.log" </dev/null >/dev/null
        if pg_ctl_start "$dir" "$bindir" && wait_ready "$dir" "$bindir" "$port"; then
            log "started on port $port (data in $dir/data)"
            url "$port"
            return
        fi
        if ((tries >= 4)) || ! grep -q 'could not bind\|Address already in use' "$dir/server.log"; then
            tail -n 50 "$dir/server.log" >&2 || true
            rm -f "$dir/port"
            die "PostgreSQL did not start on port $port"
        fi
        log "port $port was taken meanwhile; trying another one"
    done
}

stop() {
    local dir=$1 bindir
    [[ -f $dir/data/PG_VERSION ]] || return 0
    bindir=$(find_bindir)
    [[ -n $bindir ]] || return 0
    running "$dir" "$bindir" || return 0
    # Fast: open transactions are rolled back, clients are disconnected, then a checkpoint.
    (cd "$dir" && as_server_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 120 stop >&2)
    log "stopped (data in $dir/data)"
}

case ${1:-} in
    install) [[ $# == 1 ]] || usage; install_postgres ;;
    start) [[ $# == 2 ]] || usage; start "$2" ;;
    stop) [[ $# == 2 ]] || usage; stop "$2" ;;
    *) usage ;;
esac
