#!/usr/bin/env python3
"""Time glance-registry's image calls in-process (no HTTP, one thread).

Builds the registry app like the unit tests do (SQLite file in a temporary
directory) and sends webob requests straight into it, then prints the
milliseconds per call (wall clock and process CPU, best round) of create,
get, list (limit 25), update (status deleted, location_data []) and
delete. ``--profile OP`` prints a cProfile of that operation instead of
timing all of them.

Usage: python tools/bench_registry.py [-n 300] [--rounds 3] [--profile get]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pathlib
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import webob

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.stack import make_stack  # noqa: E402

HEADERS = {"X-Identity-Status": "Confirmed", "X-Tenant-Id": "t1",
           "X-Roles": "member", "X-User-Id": "u"}
OPS = ("create", "get", "list", "update", "delete")


def call(app: Any, method: str, path: str, body: Any = None) -> Any:
    req = webob.Request.blank(path, method=method, headers=HEADERS)
    if body is not None:
        req.body = json.dumps(body).encode()
        req.content_type = "application/json"
    resp = req.get_response(app)
    if resp.status_int != 200:
        raise SystemExit(f"{method} {path}: {resp.status}\n{resp.text}")
    return resp


def operations(app: Any, n: int) -> dict[str, Callable[[], None]]:
    ids: list[str] = []

    def create() -> None:
        for _ in range(n):
            resp = call(app, "POST", "/images",
                        {"image": {"name": "x", "status": "queued"}})
            ids.append(resp.json["image"]["id"])

    def get() -> None:
        for image_id in ids:
            call(app, "GET", f"/images/{image_id}")

    def listing() -> None:
        for _ in range(n):
            call(app, "GET", "/images?limit=25")

    def update() -> None:
        for image_id in ids:
            call(app, "PUT", f"/images/{image_id}",
                 {"image": {"status": "deleted", "location_data": []}})

    def delete() -> None:
        for image_id in ids:
            call(app, "DELETE", f"/images/{image_id}")
        ids.clear()

    return {"create": create, "get": get, "list": listing, "update": update,
            "delete": delete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="calls per operation")
    parser.add_argument("--rounds", type=int, default=3,
                        help="best of this many rounds")
    parser.add_argument("--profile", choices=OPS)
    args = parser.parse_args()
    best = {op: float("inf") for op in OPS}
    best_cpu = dict(best)
    with tempfile.TemporaryDirectory() as tmp:
        app = make_stack(pathlib.Path(tmp)).registry_app
        ops = operations(app, args.n)
        ops["create"]()  # warm up: caches, pool, a first page to list
        ops["delete"]()
        for _ in range(1 if args.profile else args.rounds):
            for op in OPS:
                if op == args.profile:
                    profile = cProfile.Profile()
                    profile.runcall(ops[op])
                    stats = pstats.Stats(profile).sort_stats("cumulative")
                    stats.print_stats(45)
                    continue
                start, start_cpu = time.perf_counter(), time.process_time()
                ops[op]()
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - start_cpu
                best[op] = min(best[op], elapsed * 1000 / args.n)
                best_cpu[op] = min(best_cpu[op], cpu * 1000 / args.n)
    if not args.profile:
        print(f"{'':8s} {'wall ms':>8s} {'cpu ms':>8s}")
        for op in OPS:
            print(f"{op:8s} {best[op]:8.3f} {best_cpu[op]:8.3f}")


if __name__ == "__main__":
    main()
