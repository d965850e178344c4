#!/usr/bin/env bash
# Stop the Keystone that start-keystone.sh started (by the PID it recorded),
# and delete its database, keys, logs and (when it is there) its venv.
#   usage: stop-keystone.sh [STATE_DIR]   (default: $KEYSTONE_STATE_DIR)
# KEEP_STATE=1 keeps them. Safe to run again, or on nothing.
set -euo pipefail

die() { echo "stop-keystone: ERROR: $*" >&2; exit 1; }
STATE=${1:-${KEYSTONE_STATE_DIR:-}}
[ -n "$STATE" ] || die "usage: stop-keystone.sh STATE_DIR (or set KEYSTONE_STATE_DIR)"
[ -d "$STATE" ] || { echo "stop-keystone: no $STATE, nothing to stop" >&2; exit 0; }
DIR=$STATE/keystone PIDFILE=$STATE/keystone/run/uwsgi.pid

# A process counts as alive until it is a zombie (PID 1 may be slow to reap).
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }

# uWSGI's master leads its own session (setsid) with its worker; SIGTERM
# stops both (die-on-term). Signal it only while it is still ours.
if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if alive "$pid" && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *"$DIR/etc/uwsgi.ini"* ]]; then
        kill -TERM "$pid"
        deadline=$((SECONDS + 20))
        while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if alive "$pid"; then
            echo "stop-keystone: uwsgi ($pid) ignored SIGTERM; killing" >&2
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
fi

if [ "${KEEP_STATE:-0}" != 1 ]; then
    rm -rf "$DIR"
    rmdir "$STATE" 2>/dev/null || true   # only if nothing else lives there
fi
echo "stop-keystone: stopped" >&2
