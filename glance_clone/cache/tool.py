"""Start-up shared by glance-cache-prefetcher, -pruner and -cleaner.

They read ``glance.conf`` then ``glance-cache.conf`` from the usual places
(``~/.glance``, ``~``, ``/etc/glance``, ``/etc``) unless ``--config-file`` or
``--config-dir`` is given. A configuration error prints ``ERROR: ...`` and
exits 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from oslo_config import cfg

from glance_clone.cache import options
from glance_clone.common import config, exception

EXIT_ERROR = 1
CONF_PROG = "glance-cache"


def run_tool(prog: str, argv: Sequence[str] | None,
             register: Callable[[cfg.ConfigOpts], None],
             body: Callable[[cfg.ConfigOpts], int]) -> int:
    """Parse the configuration of ``prog`` and run ``body`` with it."""
    os.umask(0o027)
    conf = config.command_conf(prog, argv, options.register_opts, register,
                               default_config_files=cfg.find_config_files(
                                   project="glance", prog=CONF_PROG))
    if conf is None:
        return EXIT_ERROR
    try:
        return body(conf)
    except (exception.GlanceError, cfg.Error, OSError) as err:
        print("ERROR: %s" % err, file=sys.stderr)
        return EXIT_ERROR
