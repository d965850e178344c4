"""glance-cache-pruner: shrink the image cache to image_cache_max_size.

Meant for cron, e.g. every 30 minutes; safe while glance-api serves and
when an earlier run is still going (the second run does nothing).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from oslo_config import cfg

from glance_clone.cache import pruner, tool
from glance_clone.cache.image_cache import ImageCache

PROG = "glance-cache-pruner"


def _register(conf: cfg.ConfigOpts) -> None:
    """The cache options are all it needs."""


def _prune(conf: cfg.ConfigOpts) -> int:
    pruner.prune(ImageCache(conf), conf.image_cache_max_size)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return tool.run_tool(PROG, argv, _register, _prune)


if __name__ == "__main__":
    sys.exit(main())
