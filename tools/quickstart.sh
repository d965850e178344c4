#!/usr/bin/env bash
# Install glance_clone into .venv and start glance-registry and glance-api on
# the embedded defaults: SQLite, the file store, everything under ./data.
# Run from the project's root. Stop with:
#   .venv/bin/glance-control api stop --pid-file "$PWD/data/run/glance-api.pid"
#   .venv/bin/glance-control registry stop --pid-file "$PWD/data/run/glance-registry.pid"
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e .
mkdir -p data/run data/log data/images
.venv/bin/glance-manage --config-file etc/glance-registry.conf db_sync
for server in registry api; do
    .venv/bin/glance-control --pid-file "$PWD/data/run/glance-$server.pid" \
        "$server" start "etc/glance-$server.conf"
done
# Ready when both answer their health check (the app is loaded, not just the port).
for port in 9191 9292; do
    for _ in $(seq 1 300); do
        if .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthcheck', timeout=1)" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
done
.venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9292/healthcheck', timeout=2)" \
    || { echo "glance-api did not come up; see data/log/" >&2; exit 1; }
echo "glance-api is ready on http://127.0.0.1:9292 (registry on 9191; data in ./data)"
