#!/usr/bin/env bash
# Runs a command with real PostgreSQL and Redis servers on loopback, then stops them.
#
#   scripts/with-test-servers.sh CMD [ARGS...]
#
# Each server gets a free port and a data directory in a fresh directory under
# target/test-servers/ (one per run, removed at the end, so runs side by side never meet);
# the command sees their URLs in CKPT_TEST_POSTGRES_URL and CKPT_TEST_REDIS_URL (superuser and
# default user, plain TCP), and the URLs of their TLS-only logins (verify-full against a CA made
# for this run, with client certificates) in CKPT_TEST_POSTGRES_TLS_URL and
# CKPT_TEST_REDIS_TLS_URL.
# The servers are installed from Debian packages when missing (scripts/{postgres,redis}-server.sh).
#
# CKPT_SKIP_SERVER_TESTS=1 starts no server: the server tests then skip, loudly. CI (CI=1)
# refuses that variable, so server tests never skip there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${CKPT_SKIP_SERVER_TESTS:-}" == 1 ]]; then
    if [[ -n "${CI:-}" ]]; then
        echo "with-test-servers: CKPT_SKIP_SERVER_TESTS=1 is not allowed in CI" >&2
        exit 2
    fi
    printf '\n\033[1;33m%s\033[0m\n\n' \
        "!!! CKPT_SKIP_SERVER_TESTS=1: NO PostgreSQL/Redis server started; their tests are SKIPPED !!!" >&2
    exec "$@"
fi

mkdir -p target/test-servers
root="$(mktemp -d "$PWD/target/test-servers/run-XXXXXX")"
# The postgres server runs as the `postgres` user, which must reach its data directory.
chmod 755 "$root"

stop_all() {
    bash scripts/postgres-server.sh stop "$root/postgres" >/dev/null 2>&1 || true
    bash scripts/redis-server.sh stop "$root/redis" >/dev/null 2>&1 || true
    rm -rf "$root"
}
trap stop_all EXIT

CKPT_TEST_POSTGRES_URL="$(bash scripts/postgres-server.sh start "$root/postgres")"
CKPT_TEST_REDIS_URL="$(bash scripts/redis-server.sh start "$root/redis")"
CKPT_TEST_POSTGRES_TLS_URL="$(bash scripts/postgres-server.sh tls-url "$root/postgres")"
CKPT_TEST_REDIS_TLS_URL="$(bash scripts/redis-server.sh tls-url "$root/redis")"
export CKPT_TEST_POSTGRES_URL CKPT_TEST_REDIS_URL CKPT_TEST_POSTGRES_TLS_URL CKPT_TEST_REDIS_TLS_URL
echo "with-test-servers: PostgreSQL at $CKPT_TEST_POSTGRES_URL, Redis at $CKPT_TEST_REDIS_URL" >&2
echo "with-test-servers: over TLS: $CKPT_TEST_POSTGRES_TLS_URL, $CKPT_TEST_REDIS_TLS_URL" >&2

"$@"
