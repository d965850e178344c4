#!/usr/bin/env bash
# Install what the tests need into .venv and run the whole suite.
# Extra arguments go to pytest (for example: bash tools/run-tests.sh tests/unit -x).
#
# The functional suite runs on four backend sets: sqlite-file always, and
# postgres-swift, postgres-s3 and postgres-rbd when PostgreSQL, Swift (with
# S3) and Ceph are reachable. This script provides them: a backend whose
# variables are already exported (PG_SQLALCHEMY_URL, SWIFT_AUTH_URL,
# CEPH_CONF, ...) is used as it is; otherwise, when we are root or its
# packages are installed, it is started with tools/backends/start-*.sh into
# a temp state dir and stopped again on exit. Otherwise those sets are not
# run, and both this script and pytest say which ones. Ceph's python
# bindings come from Debian and are linked into .venv. The keystone tests
# need a Keystone (KEYSTONE_URL, ...): it needs no packages, only PyPI,
# and its venv is .venv-keystone, made once.
set -euo pipefail
cd "$(dirname "$0")/.."
B=tools/backends

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'

say() { echo "run-tests: $*" >&2; }
root() { [ "$(id -u)" = 0 ]; }
have() { local p; for p in "$@"; do command -v "$p" >/dev/null || return 1; done; }

# The disk-format tests build real images with qemu-img.
if ! have qemu-img; then
    if root; then
        apt-get update -qq && apt-get install -y -qq qemu-utils >/dev/null
    else
        say "ERROR: qemu-img is missing: apt-get install qemu-utils"; exit 1
    fi
fi
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

want_pg=0 want_swift=0 want_ceph=0 want_keystone=0
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
if [ -z "${CEPH_CONF:-}" ]; then
    if [ $want_pg = 0 ] && [ -z "${PG_SQLALCHEMY_URL:-}" ]; then
        :   # the rbd set also needs PostgreSQL
    elif root || have ceph-mon ceph-osd ceph-mgr ceph rbd; then want_ceph=1
    else say "cannot start Ceph: not root and its packages are not installed"; fi
fi

[ -n "${KEYSTONE_URL:-}" ] || want_keystone=1

if [ $want_pg = 1 ] || [ $want_swift = 1 ] || [ $want_ceph = 1 ] || [ $want_keystone = 1 ]; then
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
    if [ $want_ceph = 1 ]; then
        if ! have ceph-mon ceph-osd ceph-mgr ceph rbd; then
            wait "${jobs_[@]}" || true   # one apt-get at a time (see above)
        fi
        mon=${CEPH_MON_PORT:-3300} mon1=${CEPH_MON_V1_PORT:-6789}
        # (downwards for v1: the OSD and the manager bind from 6800 up)
        until port_free "$mon" && port_free "$mon1"; do
            mon=$((mon + 1)) mon1=$((mon1 - 1))
            [ $mon -lt 3350 ] || { say "ERROR: no free ports for Ceph's monitor"; exit 1; }
        done
        export CEPH_MON_PORT=$mon CEPH_MON_V1_PORT=$mon1
        # A manager, because only it reports pool usage, which the monitor
        # needs to enforce the pool quota one fault test sets.
        export CEPH_MGR=1
        started+=(ceph)
        bash "$B/start-ceph.sh" "$state" >"$state/ceph.env" 2>"$state/ceph.log" &
        jobs_+=($!)
    fi
    if [ $want_keystone = 1 ]; then
        export KEYSTONE_PORT=${KEYSTONE_PORT:-35357}
        port_free "$KEYSTONE_PORT" || KEYSTONE_PORT=$(.venv/bin/python -c \
            'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        export KEYSTONE_VENV=${KEYSTONE_VENV:-$PWD/.venv-keystone}
        started+=(keystone)
        bash "$B/start-keystone.sh" "$state" >"$state/keystone.env" 2>"$state/keystone.log" &
        jobs_+=($!)
    fi
    # All start at once. A failure is fatal, as CI (root) must run every
    # test; only Keystone, which needs PyPI, may fail for another user.
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
            if [ "$s" = keystone ] && ! root; then
                say "starting keystone failed (its log above)"
            else
                say "ERROR: starting $s failed (its log above)"
                failed=1
            fi
        fi
    done
    [ $failed = 0 ] || exit 1
fi
if [ -n "${CEPH_CONF:-}" ]; then
    bash "$B/link-ceph-python.sh" .venv   # Debian's rados and rbd modules into .venv
fi

not_run=()
[ -n "${PG_SQLALCHEMY_URL:-}" ] && [ -n "${SWIFT_AUTH_URL:-}" ] || not_run+=(postgres-swift)
[ -n "${PG_SQLALCHEMY_URL:-}" ] && [ -n "${S3_ENDPOINT_URL:-}" ] || not_run+=(postgres-s3)
[ -n "${PG_SQLALCHEMY_URL:-}" ] && [ -n "${CEPH_CONF:-}" ] || not_run+=(postgres-rbd)
if [ ${#not_run[@]} -gt 0 ]; then
    say "without their backends, these backend sets are NOT run: ${not_run[*]}"
fi
[ -n "${KEYSTONE_URL:-}" ] ||
    say "without Keystone: the keystone tests (tests/functional/test_keystone*.py) are NOT run"

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "ERROR: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
