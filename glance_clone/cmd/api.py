"""glance-api: the public image API (v1)."""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from oslo_config import cfg  # noqa: E402

from glance_clone.api.v1 import router  # noqa: E402
from glance_clone.cmd.serve import run_server  # noqa: E402

DEFAULT_PORT = 9292
EXIT_STORE_CONFIG = 3


def _register(conf: cfg.ConfigOpts) -> None:
    router.register_opts(conf)


def main(argv: Sequence[str] | None = None) -> int:
    return run_server("glance-api", DEFAULT_PORT, argv, _register,
                      store_error_code=EXIT_STORE_CONFIG)


if __name__ == "__main__":
    sys.exit(main())
