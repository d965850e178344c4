#!/usr/bin/env bash
# Start a throwaway Keystone 30 (identity v3) on 127.0.0.1 for the tests of
# the keystone flavors: SQLite, fernet tokens, one uWSGI process, all state
# under a state directory. Keystone comes from PyPI into a venv of its own
# (tools/backends/keystone-requirements.txt), made when missing.
#   usage: start-keystone.sh [STATE_DIR]      (default: a new temp dir)
# Progress goes to stderr; stdout gets only `export NAME=value` lines, so
#   eval "$(bash start-keystone.sh "$dir")"   works. Safe to run again.
# Overridable: KEYSTONE_PORT (35357), KEYSTONE_VENV (STATE_DIR/keystone/venv;
# point it somewhere lasting to install once), KEYSTONE_PYTHON (python3),
# KEYSTONE_TIMEOUT (seconds to wait for the server, 60).
#
# Bootstrapped: user admin / password keystone-admin on project admin
# (role admin; roles reader, member, manager exist), and the service user
# glance / keystone-service on project service with role service, which
# lets it validate other users' tokens (what keystonemiddleware does).
set -euo pipefail
STATE=                          # set below, once the state dir is known
HERE=$(cd "$(dirname "$0")" && pwd)

PORT=${KEYSTONE_PORT:-35357}
PY=${KEYSTONE_PYTHON:-python3}
TIMEOUT=${KEYSTONE_TIMEOUT:-60}
ADMIN_USER=admin ADMIN_PASSWORD=keystone-admin ADMIN_PROJECT=admin
SERVICE_USER=glance SERVICE_PASSWORD=keystone-service SERVICE_PROJECT=service
REGION=RegionOne
URL=http://127.0.0.1:$PORT/v3

die() {
    echo "start-keystone: ERROR: $*" >&2
    [ -z "${STATE:-}" ] || echo "start-keystone: clean up with: stop-keystone.sh $STATE" >&2
    exit 1
}
say() { echo "start-keystone: $*" >&2; }
# A process counts as alive until it is a zombie (PID 1 may be slow to reap).
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

STATE=${1:-$(mktemp -d -t keystone-state.XXXXXX)}
mkdir -p "$STATE" && STATE=$(cd "$STATE" && pwd)
DIR=$STATE/keystone
VENV=${KEYSTONE_VENV:-$DIR/venv}
PIDFILE=$DIR/run/uwsgi.pid LOG=$DIR/log/keystone.log
mkdir -p "$DIR/etc" "$DIR/run" "$DIR/log" "$DIR/fernet-keys" "$DIR/credential-keys"

# Keystone's venv, only when missing (keystone-manage and uwsgi are its marks).
if [ ! -x "$VENV/bin/keystone-manage" ] || [ ! -x "$VENV/bin/uwsgi" ]; then
    say "installing $(grep -v '^#' "$HERE/keystone-requirements.txt" | xargs) into $VENV"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || die "$PY -m venv $VENV failed"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        -r "$HERE/keystone-requirements.txt" >"$DIR/log/pip.log" 2>&1 \
        || { grep -v '^WARNING: Location' "$DIR/log/pip.log" | tail -n 20 >&2; die "pip install failed"; }
fi

running=0
if [ -f "$PIDFILE" ] && alive "$(cat "$PIDFILE")" &&
   [[ $(tr '\0' ' ' <"/proc/$(cat "$PIDFILE")/cmdline") == *"$DIR/etc/uwsgi.ini"* ]]; then
    running=1
    say "already running"
fi

if [ $running = 0 ]; then
    port_free "$PORT" || die "port 127.0.0.1:$PORT is in use (set KEYSTONE_PORT)"
    cat >"$DIR/etc/keystone.conf" <<CONF
# Written by start-keystone.sh.
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$DIR/keystone.sqlite?timeout=30
# Throwaway test data: no fsync per commit.
sqlite_synchronous = false
[fernet_tokens]
key_repository = $DIR/fernet-keys
[fernet_receipts]
key_repository = $DIR/fernet-keys
[credential]
key_repository = $DIR/credential-keys
[token]
provider = fernet
[identity]
# Cheap bcrypt: the tests create and log in many users.
password_hash_rounds = 4
[cache]
# In-process cache, coherent because there is one uWSGI process; without it
# every request re-reads role assignments (about 0.4 s of CPU each).
enabled = true
backend = dogpile.cache.memory
[oslo_messaging_notifications]
driver = noop
CONF
    # One process, one thread: keystone's SQLite then never has two writers
    # ("database is locked" with two processes).
    cat >"$DIR/etc/uwsgi.ini" <<INI
[uwsgi]
http-socket = 127.0.0.1:$PORT
module = keystone.wsgi.api:application
master = true
processes = 1
threads = 1
lazy-apps = true
die-on-term = true
http-keepalive = false
add-header = Connection: close
buffer-size = 65535
listen = 128
socket-timeout = 30
logto = $LOG
disable-logging = true
INI
    owner=$(id -un) group=$(id -gn)
    KM=("$VENV/bin/keystone-manage" --config-file "$DIR/etc/keystone.conf")
    {
        "${KM[@]}" db_sync
        # WAL journal: readers never wait for the writer (it persists in the file).
        "$VENV/bin/python" -c 'import sqlite3, sys
sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$DIR/keystone.sqlite"
        [ -f "$DIR/fernet-keys/0" ] ||
            "${KM[@]}" fernet_setup --keystone-user "$owner" --keystone-group "$group"
        [ -f "$DIR/credential-keys/0" ] ||
            "${KM[@]}" credential_setup --keystone-user "$owner" --keystone-group "$group"
        "${KM[@]}" bootstrap --bootstrap-username "$ADMIN_USER" \
            --bootstrap-password "$ADMIN_PASSWORD" --bootstrap-project-name "$ADMIN_PROJECT" \
            --bootstrap-role-name admin --bootstrap-service-name keystone \
            --bootstrap-region-id "$REGION" --bootstrap-public-url "$URL"
    } >"$DIR/log/manage.log" 2>&1 || { tail -n 20 "$DIR/log/manage.log" >&2; die "keystone-manage failed"; }

    say "starting on 127.0.0.1:$PORT (log: $LOG)"
    # In the environment, not uWSGI's `env =`: pyuwsgi's Python is up before
    # uWSGI reads its options, so os.environ would never see that one.
    OS_KEYSTONE_CONFIG_DIR=$DIR/etc \
        setsid "$VENV/bin/uwsgi" --ini "$DIR/etc/uwsgi.ini" </dev/null >>"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
fi

# Readiness (keystone-setup.py): the API answers, the service user exists,
# and it validates the admin's token, as keystonemiddleware will.
KEYSTONE_URL=$URL KEYSTONE_ADMIN_USER=$ADMIN_USER KEYSTONE_ADMIN_PASSWORD=$ADMIN_PASSWORD \
KEYSTONE_ADMIN_PROJECT=$ADMIN_PROJECT KEYSTONE_SERVICE_USER=$SERVICE_USER \
KEYSTONE_SERVICE_PASSWORD=$SERVICE_PASSWORD KEYSTONE_SERVICE_PROJECT=$SERVICE_PROJECT \
    "$VENV/bin/python" "$HERE/keystone-setup.py" "$(cat "$PIDFILE")" "$TIMEOUT" >&2 \
    || { tail -n 30 "$LOG" >&2; die "Keystone is not ready (its log above)"; }
say "ready"

cat <<EOF
export KEYSTONE_STATE_DIR=$STATE
export KEYSTONE_URL=$URL KEYSTONE_REGION=$REGION
export KEYSTONE_ADMIN_USER=$ADMIN_USER KEYSTONE_ADMIN_PASSWORD=$ADMIN_PASSWORD KEYSTONE_ADMIN_PROJECT=$ADMIN_PROJECT
export KEYSTONE_SERVICE_USER=$SERVICE_USER KEYSTONE_SERVICE_PASSWORD=$SERVICE_PASSWORD KEYSTONE_SERVICE_PROJECT=$SERVICE_PROJECT
EOF
