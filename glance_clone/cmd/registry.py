"""glance-registry: the metadata service that alone owns the database."""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import os  # noqa: E402

# psycopg waits for PostgreSQL's answers in C (poll), which would stall
# eventlet's hub for every query: one query at a time per process. Its
# select-based wait yields to other requests once select is green. Must be
# set before psycopg is imported.
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from oslo_config import cfg  # noqa: E402

from glance_clone.cmd.serve import run_server  # noqa: E402
from glance_clone.common import config  # noqa: E402

DEFAULT_PORT = 9191


def _register(conf: cfg.ConfigOpts) -> None:
    config.register_database_opts(conf)


def main(argv: Sequence[str] | None = None) -> int:
    return run_server("glance-registry", DEFAULT_PORT, argv, _register)


if __name__ == "__main__":
    sys.exit(main())
