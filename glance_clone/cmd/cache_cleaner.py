"""glance-cache-cleaner: remove invalid and stalled files from the image cache.

Deletes everything in ``invalid/`` and files in ``incomplete/`` untouched
for ``image_cache_stall_time`` seconds that no process is writing. Meant
for cron, e.g. daily.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from oslo_config import cfg

from glance_clone.cache import cleaner, tool
from glance_clone.cache.image_cache import ImageCache

PROG = "glance-cache-cleaner"


def _register(conf: cfg.ConfigOpts) -> None:
    """The cache options are all it needs."""


def _clean(conf: cfg.ConfigOpts) -> int:
    cleaner.clean(ImageCache(conf), conf.image_cache_stall_time)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return tool.run_tool(PROG, argv, _register, _clean)


if __name__ == "__main__":
    sys.exit(main())
