"""Start glance-api or glance-registry: config, logging, app, server."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from oslo_config import cfg

from glance_clone.common import config, exception, log, server

LOG = logging.getLogger(__name__)

# Exit codes known to operators: 1 configuration or runtime error.
EXIT_CONFIG_ERROR = 1


def run_server(prog: str, default_port: int, argv: Sequence[str] | None,
               register_opts: Callable[[cfg.ConfigOpts], None],
               store_error_code: int = EXIT_CONFIG_ERROR) -> int:
    """Parse config, build the app, then serve until stopped."""
    os.umask(0o027)
    conf = config.command_conf(prog, argv, config.register_server_opts, register_opts)
    if conf is None:
        return EXIT_CONFIG_ERROR
    try:
        srv = server.Server(conf, lambda: config.load_paste_app(conf, prog),
                            default_port, prog)
        srv.start()
    except exception.StoreConfigError as err:
        return _refuse(conf, err, store_error_code)
    except (OSError, cfg.Error, exception.GlanceError) as err:
        return _refuse(conf, err, EXIT_CONFIG_ERROR)
    _exit_now(srv.run())


def _refuse(conf: cfg.ConfigOpts, err: Exception, code: int) -> int:
    """One line on stderr; the log file gets it too, unless the log is
    stderr itself (the line would then be printed twice)."""
    print("ERROR: %s" % err, file=sys.stderr)
    if not log.logs_to_stderr(conf):
        LOG.error("%s", err)
    return code


def _exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown of every module the app
    imported: it takes a second or more, has nothing to clean up for a
    server that has stopped, and a restart waits for it."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
