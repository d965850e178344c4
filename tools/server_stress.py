#!/usr/bin/env python3
"""Two figures of the servers under stress, on loopback (SQLite, file store).

``restart``
    16 clients send HEADs to glance-api (2 workers) while
    ``glance-control registry restart`` restarts glance-registry
    (2 workers). Prints how long the api answered 503 (from the first
    failed request to the end of the last), the slowest request, and the
    longest time without any successful answer.
``slow-clients``
    N connections (1000) send a request line and then one header byte a
    second, while one client lists images every 0.2 s for 20 s. Prints the
    list requests' latency (median, 90th percentile, max) and errors.

On a shared machine the figures follow its load; the load average is
printed with them. Usage:
python tools/server_stress.py restart | slow-clients [--clients 1000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.functional import harness  # noqa: E402

LOAD_CLIENTS = 16
SETTLE_SECONDS = 3.0


def restart(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="server-stress-"))
    dep = harness.Deployment(base, registry_options={"DEFAULT": {"workers": 2}},
                             api_options={"DEFAULT": {"workers": 2}})
    dep.start()
    pid_file = base / "glance-registry.pid"
    pid_file.write_text("%d\n" % dep.registry.process.pid)
    env = dict(harness.server_env(), GLANCE_CONTROL_SERVER_CMD_REGISTRY="%s -m %s" % (
        sys.executable, "glance_clone.cmd.registry"))
    control = [sys.executable, "-m", "glance_clone.cmd.control", "--pid-file", str(pid_file),
               "registry"]
    try:
        image = requests.post(dep.url + "/v1/images", headers=dict(
            harness.identity("t1"), **{"x-image-meta-name": "stress"})).json()["image"]
        results: list[tuple[float, float, bool]] = []
        stop = threading.Event()

        def load() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    sent = time.monotonic()
                    try:
                        ok = session.head(dep.url + "/v1/images/" + image["id"],
                                          headers=harness.identity("t1"),
                                          timeout=60).status_code == 200
                    except requests.RequestException:
                        ok = False
                    results.append((sent, time.monotonic(), ok))

        threads = [threading.Thread(target=load) for _ in range(LOAD_CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(SETTLE_SECONDS)
        began = time.monotonic()
        subprocess.run(control + ["restart", str(dep.registry.conf_path)], env=env,
                       check=True, capture_output=True, timeout=120)
        time.sleep(SETTLE_SECONDS * 2)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        subprocess.run(control + ["stop"], env=env, capture_output=True, timeout=120)
        dep.stop()
    failed = [r for r in results if not r[2]]
    answered = sorted(end for _, end, ok in results if ok)
    print("%d requests, %d failed (load average %.1f)"
          % (len(results), len(failed), os.getloadavg()[0]))
    if failed:
        print("503s for %.2f s" % (max(r[1] for r in failed) - min(r[0] for r in failed)))
    print("slowest request after the restart began: %.2f s"
          % max(end - sent for sent, end, _ in results if sent >= began))
    print("longest time without a successful answer: %.2f s"
          % max(b - a for a, b in zip(answered, answered[1:], strict=False)))


def slow_clients(args: argparse.Namespace) -> None:
    dep = harness.Deployment(Path(tempfile.mkdtemp(prefix="server-stress-")))
    dep.start()
    stop = threading.Event()
    opened = threading.Event()
    closed = [0]

    def trickle() -> None:
        clients = []
        for _ in range(args.clients):
            sock = socket.create_connection(("127.0.0.1", dep.api.port))
            sock.sendall(b"GET /v1/images HTTP/1.1\r\nHost: glance\r\n")
            sock.setblocking(False)
            clients.append(sock)
        opened.set()
        while not stop.wait(1.0):
            for sock in list(clients):
                try:
                    sock.send(b"X")
                except OSError:         # closed by the server
                    clients.remove(sock)
                    closed[0] += 1
        for sock in clients:
            sock.close()

    thread = threading.Thread(target=trickle)
    thread.start()
    latencies, errors = [], 0
    try:
        opened.wait()
        end = time.monotonic() + 20
        while time.monotonic() < end:
            sent = time.monotonic()
            try:
                ok = requests.get(dep.url + "/v1/images", headers=harness.identity("t1"),
                                  timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            latencies.append(time.monotonic() - sent)
            errors += not ok
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
        dep.stop()
    latencies.sort()
    print("%d slow clients (load average %.1f): %d requests, %d errors; latency median "
          "%.3f s, p90 %.3f s, max %.3f s; %d slow connections closed by the server"
          % (args.clients, os.getloadavg()[0], len(latencies), errors,
             statistics.median(latencies), latencies[int(len(latencies) * 0.9)],
             latencies[-1], closed[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("restart").set_defaults(run=restart)
    slow = commands.add_parser("slow-clients")
    slow.add_argument("--clients", type=int, default=1000)
    slow.set_defaults(run=slow_clients)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
