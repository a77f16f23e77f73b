#!/usr/bin/env bash
# A private Redis server for tests: loopback only, a free port, data and logs in one directory.
#
#   scripts/redis-server.sh install      install redis-server (Debian package) when missing
#   scripts/redis-server.sh start DIR    start (or find running) the server of DIR; prints its URL
#   scripts/redis-server.sh stop DIR     stop the server of DIR (waits until it is gone)
#   scripts/redis-server.sh tls-url DIR  print the rediss:// URL of DIR's TLS-only port
#
# `start` prints `redis://127.0.0.1:PORT/` as the last (and only) line of stdout; everything
# else goes to stderr. The port is chosen at the first start of DIR and saved in DIR/redis.conf,
# so a restart of the same DIR gets the same URL and the same data. The server is durable the
# way the store's `durability=strict` requires: appendonly yes, appendfsync always (every
# acknowledged write is in the AOF and fsynced). Protected mode stays on and it binds
# 127.0.0.1 only. The Debian package's own service (port 6379) is never used.
#
# The same server also listens on a second, TLS-only port (`tls-port`, saved in DIR/redis.conf),
# with a CA and certificates made at the first start (scripts/test-certs.sh, in DIR/tls); it
# requires a client certificate signed by that CA. `tls-url DIR` prints its URL, with the CA,
# client certificate and key as the store's parameters.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# How long `start` waits for PING and `stop` for the process to exit (tenths of a second).
WAIT_TENTHS=300

usage() {
    echo "usage: $0 install | start DIR | stop DIR | tls-url DIR" >&2
    exit 2
}

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

install_redis() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return
    fi
    log "redis-server missing: installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y redis-server >&2; then
        log "install failed; refreshing the package lists and trying again"
        as_root apt-get update >&2
        as_root apt-get install -y redis-server >&2
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after the install"
    command -v redis-cli >/dev/null 2>&1 || die "redis-cli missing after installing redis-server"
}

# The pid of DIR's server when it runs, else nothing.
running_pid() {
    local dir=$1 pid
    [[ -f $dir/redis.pid ]] || return 0
    pid=$(<"$dir/redis.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    # A stale pid file may name a reused pid: only a live redis-server process counts.
    if alive "$pid" && grep -q '^redis-server' "/proc/$pid/comm" 2>/dev/null; then
        echo "$pid"
    fi
}

# True while PID runs. A zombie counts as gone: in a container nobody may reap the daemon.
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

conf_port() {
    awk '$1 == "port" {print $2}' "$1/redis.conf"
}

conf_tls_port() {
    awk '$1 == "tls-port" {print $2}' "$1/redis.conf"
}

# %-escapes what would end a URL parameter early.
escape() {
    local s=$1
    s=${s//\%/%25}; s=${s// /%20}; s=${s//\&/%26}; s=${s//\#/%23}; s=${s//\?/%3F}
    echo "$s"
}

tls_url() {
    local dir tls_port tls
    dir=$(cd "$1" && pwd)
    [[ -f $dir/redis.conf && -f $dir/tls/ca.crt ]] || die "no TLS test server in $dir (start it first)"
    tls_port=$(conf_tls_port "$dir")
    [[ $tls_port =~ ^[0-9]+$ ]] || die "$dir/redis.conf names no tls-port"
    tls=$(escape "$dir/tls")
    echo "rediss://127.0.0.1:$tls_port/?tls_ca_file=$tls/ca.crt&tls_cert_file=$tls/client.crt&tls_key_file=$tls/client.key"
}

write_conf() {
    local dir=$1 port=$2 tls_port=$3
    # Quoted paths: Redis's config parser accepts "..." strings, so spaces are fine.
    cat >"$dir/redis.conf" <<EOF
# Written by scripts/redis-server.sh at the first start of this directory.
port $port
bind 127.0.0.1
protected-mode yes
daemonize yes
dir "$dir"
pidfile "$dir/redis.pid"
logfile "$dir/redis.log"
appendonly yes
appendfsync always
# The AOF is the only persistence; no RDB snapshots.
save ""
# Checkpoints are never evicted: a full server refuses writes instead.
maxmemory-policy noeviction
# TLS only on this second port; clients must show a certificate the test CA signed.
tls-port $tls_port
tls-cert-file "$dir/tls/server.crt"
tls-key-file "$dir/tls/server.key"
tls-ca-cert-file "$dir/tls/ca.crt"
tls-auth-clients yes
EOF
}

ping() {
    redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null
}

start() {
    local dir=$1 port tls_port pid tries
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    install_redis
    if [[ -f $dir/redis.conf ]]; then
        port=$(conf_port "$dir")
        [[ $port =~ ^[0-9]+$ ]] || die "$dir/redis.conf names no port"
        pid=$(running_pid "$dir")
        if [[ -n $pid && $(ping "$port") == PONG ]]; then
            log "already running (pid $pid) on port $port"
            echo "redis://127.0.0.1:$port/"
            return
        fi
        [[ -z $pid ]] || die "redis-server (pid $pid) of $dir runs but does not answer PING on port $port"
        redis-server "$dir/redis.conf" >&2 || die "redis-server did not start; log: $dir/redis.log"
    else
        # A port can be taken between the check and the bind; then try another one.
        bash "$(dirname "${BASH_SOURCE[0]}")/test-certs.sh" "$dir/tls" ckpt_tls
        for ((tries = 0; ; tries++)); do
            port=$(pick_port)
            tls_port=$(pick_port)
            [[ $tls_port != "$port" ]] || continue
            write_conf "$dir" "$port" "$tls_port"
            : >"$dir/redis.log"
            if redis-server "$dir/redis.conf" >&2 && wait_started "$dir" "$port" quiet; then
                log "started on port $port (data in $dir)"
                echo "redis://127.0.0.1:$port/"
                return
            fi
            if ((tries >= 4)) || ! grep -q 'Address already in use' "$dir/redis.log"; then
                cat "$dir/redis.log" >&2
                rm -f "$dir/redis.conf"
                die "redis-server did not start on port $port"
            fi
            log "port $port was taken meanwhile; trying another one"
        done
    fi
    wait_started "$dir" "$port" || die "redis-server of $dir did not answer PING"
    log "restarted on port $port (data in $dir)"
    echo "redis://127.0.0.1:$port/"
}

# Waits until the server answers PONG (it answers LOADING while it replays the AOF). Prints the
# log when it gives up, unless asked to stay quiet.
wait_started() {
    local dir=$1 port=$2 quiet=${3:-} i
    for ((i = 0; i < WAIT_TENTHS; i++)); do
        if [[ $(ping "$port") == PONG ]]; then
            return 0
        fi
        # Daemonized: the pid file appears once it forked; a process that exited will not answer.
        if ((i > 20)) && [[ -z $(running_pid "$dir") ]]; then
            break
        fi
        sleep 0.1
    done
    if [[ -z $quiet ]]; then
        log "no PONG from port $port; the log says:"
        cat "$dir/redis.log" >&2 || true
    fi
    return 1
}

stop() {
    local dir=$1 pid i
    [[ -d $dir ]] || return 0
    pid=$(running_pid "$dir")
    [[ -n $pid ]] || return 0
    # SIGTERM is Redis's clean shutdown: it fsyncs the AOF and removes its pid file. Redis
    # refuses it while it writes its first AOF (appendonly just switched on), so ask again
    # each second.
    for ((i = 0; i < WAIT_TENTHS; i++)); do
        if ((i % 10 == 0)); then
            kill -TERM "$pid" 2>/dev/null || true
        fi
        alive "$pid" || { log "stopped (pid $pid)"; return 0; }
        sleep 0.1
    done
    log "pid $pid still running after SIGTERM; killing it (appendfsync always: nothing acked is lost)"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < WAIT_TENTHS; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    die "redis-server pid $pid does not exit"
}

case ${1:-} in
    install) [[ $# == 1 ]] || usage; install_redis ;;
    start) [[ $# == 2 ]] || usage; start "$2" ;;
    stop) [[ $# == 2 ]] || usage; stop "$2" ;;
    tls-url) [[ $# == 2 ]] || usage; tls_url "$2" ;;
    *) usage ;;
esac
