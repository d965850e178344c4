#!/usr/bin/env bash
# Install what the tests need into .venv and run the whole suite.
# Extra arguments go to pytest (for example: bash tools/run-tests.sh tests/unit -x).
#
# The functional suite runs on three backend sets: sqlite-file always, and
# postgres-swift and postgres-s3 when PostgreSQL and Swift (with S3) are
# reachable. This script provides them: a backend whose variables are
# already exported (PG_SQLALCHEMY_URL, SWIFT_AUTH_URL, ...) is used as it
# is; otherwise, when we are root or its packages are installed, it is
# started with tools/backends/start-*.sh into a temp state dir and stopped
# again on exit. Otherwise those sets are not run, and both this script
# and pytest say which ones.
set -euo pipefail
cd "$(dirname "$0")/.."
B=tools/backends

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'

say() { echo "run-tests: $*" >&2; }
root() { [ "$(id -u)" = 0 ]; }
have() { local p; for p in "$@"; do command -v "$p" >/dev/null || return 1; done; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

state=
started=()
cleanup() {
    local rc=$? s stopped=1
    for s in "${started[@]}"; do
        bash "$B/stop-$s.sh" "$state" || { stopped=0; say "stopping $s failed"; }
    done
    if [ -n "$state" ] && [ $stopped = 1 ]; then rm -rf "$state"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

want_pg=0 want_swift=0
if [ -z "${PG_SQLALCHEMY_URL:-}" ]; then
    if root || have /usr/lib/postgresql/15/bin/pg_ctl psql; then want_pg=1
    else say "cannot start PostgreSQL: not root and postgresql-15 is not installed"; fi
fi
if [ -z "${SWIFT_AUTH_URL:-}" ] || [ -z "${S3_ENDPOINT_URL:-}" ]; then
    if [ $want_pg = 0 ] && [ -z "${PG_SQLALCHEMY_URL:-}" ]; then
        :   # every set with Swift or S3 also needs PostgreSQL
    elif root || have swift-proxy-server swift-object-server swift-container-server \
                      swift-account-server memcached curl openssl; then want_swift=1
    else say "cannot start Swift: not root and its packages are not installed"; fi
fi

if [ $want_pg = 1 ] || [ $want_swift = 1 ]; then
    state=$(mktemp -d -t glance-backends.XXXXXX)
    jobs_=()
    # Default ports unless something holds them (another run, a developer's servers).
    if [ $want_pg = 1 ]; then
        export PG_PORT=${PG_PORT:-5433}
        port_free "$PG_PORT" || PG_PORT=$(.venv/bin/python -c \
            'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        started+=(postgres)
        bash "$B/start-postgres.sh" "$state" >"$state/postgres.env" 2>"$state/postgres.log" &
        jobs_+=($!)
        # Two apt-get runs at once would fight over apt's locks: when both
        # need packages, let PostgreSQL (the quicker) finish first.
        if ! have /usr/lib/postgresql/15/bin/pg_ctl psql && ! have swift-proxy-server; then
            wait "${jobs_[0]}" || true   # its status is read again below
        fi
    fi
    if [ $want_swift = 1 ]; then
        base=${SWIFT_PORT_BASE:-16000}
        until port_free $((base + 10)) && port_free $((base + 11)) && port_free $((base + 12)) &&
              port_free $((base + 80)) && port_free $((base + 211)); do
            base=$((base + 1000))
            [ $base -lt 30000 ] || { say "ERROR: no free ports for Swift"; exit 1; }
        done
        export SWIFT_PORT_BASE=$base
        started+=(swift)
        bash "$B/start-swift.sh" "$state" >"$state/swift.env" 2>"$state/swift.log" &
        jobs_+=($!)
    fi
    # Both start at once. A failure is fatal: CI must run every set.
    failed=0
    for i in "${!started[@]}"; do
        s=${started[$i]}
        if wait "${jobs_[$i]}"; then
            set -a
            # shellcheck disable=SC1090
            . "$state/$s.env"
            set +a
            say "$s is up ($(tail -n 1 "$state/$s.log"))"
        else
            tail -n 40 "$state/$s.log" >&2
            say "ERROR: starting $s failed (its log above)"
            failed=1
        fi
    done
    [ $failed = 0 ] || exit 1
fi

missing=()
[ -n "${PG_SQLALCHEMY_URL:-}" ] || missing+=("PostgreSQL")
[ -n "${SWIFT_AUTH_URL:-}" ] && [ -n "${S3_ENDPOINT_URL:-}" ] || missing+=("Swift/S3")
if [ ${#missing[@]} -gt 0 ]; then
    printf -v without '%s and ' "${missing[@]}"
    say "without ${without% and }: the postgres-swift and postgres-s3 backend sets are NOT run"
fi

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "ERROR: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
