#!/usr/bin/env bash
# A private PostgreSQL server for tests: loopback only, a free port, cluster and logs in one
# directory.
#
#   scripts/postgres-server.sh install      install PostgreSQL (Debian package) when missing
#   scripts/postgres-server.sh start DIR    start (or find running) the server of DIR; prints its URL
#   scripts/postgres-server.sh stop DIR     stop the server of DIR (fast shutdown; no error if down)
#   scripts/postgres-server.sh tls-url DIR  print the URL of the TLS-only test login of DIR
#
# `start` prints `postgres://postgres@127.0.0.1:PORT/postgres` as the last (and only) line of
# stdout; everything else goes to stderr. The first start of DIR runs initdb into DIR/data and
# picks a free port, saved in DIR/data/port.conf and DIR/port, so a restart of the same DIR
# gets the same URL and the same data. The server listens on 127.0.0.1 only, its unix socket is
# in DIR/socket, its log is DIR/server.log, and it is durable (fsync and synchronous_commit on,
# full_page_writes on). Authentication is `trust` for the superuser: this is a test server on
# loopback.
#
# TLS on the same port, with a CA and certificates made at the first start
# (scripts/test-certs.sh, in DIR/tls). pg_hba.conf also has the rules the TLS and least-privilege
# tests need, matched through two group roles that the first start creates:
#   - members of ckpt_tls_only log in over TLS only (a plain connection is rejected), with a
#     client certificate whose CN is their name and a SCRAM password; `ckpt_tls` is one, its
#     password in DIR/tls/ckpt_tls.password. `tls-url DIR` prints its URL (sslmode=verify-full);
#   - members of ckpt_password_login log in with a SCRAM password (the tests' restricted roles).
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
# The TLS-only login the first start creates (its client certificate's CN).
TLS_ROLE=ckpt_tls

usage() {
    echo "usage: $0 install | start DIR | stop DIR | tls-url DIR" >&2
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
    make_certs "$dir"
    write_hba "$dir"
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
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
ssl_ca_file = '$dir/tls/ca.crt'
# The port, chosen once at the first start (this script rewrites only that file).
include 'port.conf'
EOF
}

set_port() {
    local dir=$1 port=$2
    as_server_user tee "$dir/data/port.conf" >/dev/null <<<"port = $port"
    echo "$port" >"$dir/port"
}

# DIR/tls: the CA and certificates; the server's key must belong to the server's user.
make_certs() {
    local dir=$1
    bash "$(dirname "${BASH_SOURCE[0]}")/test-certs.sh" "$dir/tls" "$TLS_ROLE"
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$dir/tls/server.key"
    fi
    if [[ ! -f $dir/tls/$TLS_ROLE.password ]]; then
        (umask 077 && openssl rand -hex 16 >"$dir/tls/$TLS_ROLE.password")
    fi
}

# Who may log in how (first match wins); see the header.
write_hba() {
    local dir=$1
    as_server_user tee "$dir/data/pg_hba.conf" >/dev/null <<EOF
# Written by scripts/postgres-server.sh at the first start of this directory.
local     all  all                  trust
hostnossl all  +ckpt_tls_only       127.0.0.1/32  reject
hostssl   all  +ckpt_tls_only       127.0.0.1/32  scram-sha-256 clientcert=verify-full
host      all  +ckpt_password_login 127.0.0.1/32  scram-sha-256
host      all  all                  127.0.0.1/32  trust
host      all  all                  ::1/128       trust
EOF
}

# The roles the rules above name, made once after the first start.
create_roles() {
    local dir=$1 bindir=$2 port=$3 password
    password=$(<"$dir/tls/$TLS_ROLE.password")
    "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$SUPERUSER" \
        -d "$DATABASE" >&2 <<EOF
CREATE ROLE ckpt_password_login NOLOGIN;
CREATE ROLE ckpt_tls_only NOLOGIN;
CREATE ROLE $TLS_ROLE LOGIN PASSWORD '$password' IN ROLE ckpt_tls_only;
EOF
}

# %-escapes what would end a URL parameter early.
escape() {
    local s=$1
    s=${s//\%/%25}; s=${s// /%20}; s=${s//\&/%26}; s=${s//\#/%23}; s=${s//\?/%3F}
    echo "$s"
}

# The URL of the TLS-only login: verify-full against the test CA, with client certificate
# and a password file.
tls_url() {
    local dir port tls
    dir=$(cd "$1" && pwd)
    [[ -f $dir/port && -f $dir/tls/ca.crt ]] || die "no TLS test server in $dir (start it first)"
    port=$(<"$dir/port")
    tls=$(escape "$dir/tls")
    echo "postgres://$TLS_ROLE@127.0.0.1:$port/$DATABASE?sslmode=verify-full&sslrootcert=$tls/ca.crt&sslcert=$tls/client.crt&sslkey=$tls/client.key&password_file=$tls/$TLS_ROLE.password"
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
            create_roles "$dir" "$bindir" "$port" || die "could not create the test roles"
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
    tls-url) [[ $# == 2 ]] || usage; tls_url "$2" ;;
    *) usage ;;
esac
