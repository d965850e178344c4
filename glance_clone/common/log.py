"""Logging options and setup for every program (stdlib logging).

Glance's usual names are kept so existing config files work: ``debug``,
``verbose``, ``log_file``, ``log_dir``, ``use_stderr``, ``log_format``,
``default_log_levels``.

The client libraries we use log whole request URLs (query strings
included), curl command lines with tokens, or signed headers at debug
level; ``default_log_levels`` keeps them at WARNING even with
``debug = True``, so a location's credentials never reach a log file.
"""

from __future__ import annotations

import logging
import os
import sys

from oslo_config import cfg

# Loggers of client libraries that log URLs, tokens or signed headers at
# debug level.
LIBRARY_LEVELS = ["urllib3=WARNING", "requests=WARNING", "swiftclient=WARNING",
                  "botocore=WARNING", "boto3=WARNING", "s3transfer=WARNING",
                  "keystoneauth=WARNING", "routes.middleware=WARNING"]

LOG_OPTS = [
    cfg.BoolOpt("debug", short="d", default=False, help="Log at debug level."),
    cfg.BoolOpt("verbose", short="v", default=True,
                help="Log at info level (deprecated in Glance; kept for old files)."),
    cfg.StrOpt("log_file", help="Log to this file (relative to log_dir)."),
    cfg.StrOpt("log_dir", help="Directory for log_file."),
    cfg.BoolOpt("use_stderr", default=False, help="Also log to stderr."),
    cfg.ListOpt("default_log_levels",
                default=LIBRARY_LEVELS,
                help="logger=LEVEL pairs for other libraries' loggers, applied "
                     "whatever debug and verbose say."),
    cfg.StrOpt("log_format",
               default="%(asctime)s %(process)d %(levelname)s %(name)s "
                       "[%(request_id)s] %(message)s",
               help="Format of log lines."),
]


class _RequestIdDefault(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = "-"
        return True


def register_cli_opts(conf: cfg.ConfigOpts) -> None:
    for opt in LOG_OPTS:
        try:
            if opt.name in ("debug", "verbose", "log_file", "log_dir"):
                conf.register_cli_opt(opt)
            else:
                conf.register_opt(opt)
        except cfg.DuplicateOptError:
            pass


def setup(conf: cfg.ConfigOpts, program: str) -> None:
    """Send the root logger where the configuration says."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if conf.log_file:
        path = conf.log_file
        if conf.log_dir and not os.path.isabs(path):
            path = os.path.join(conf.log_dir, path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        handlers.append(logging.FileHandler(path))
    elif conf.log_dir:
        handlers.append(logging.FileHandler(os.path.join(conf.log_dir, program + ".log")))
    if logs_to_stderr(conf):
        handlers.append(logging.StreamHandler(sys.stderr))
    formatter = logging.Formatter(conf.log_format)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_RequestIdDefault())
        root.addHandler(handler)
    if conf.debug:
        root.setLevel(logging.DEBUG)
    elif conf.verbose:
        root.setLevel(logging.INFO)
    else:
        root.setLevel(logging.WARNING)
    set_library_levels(conf.default_log_levels)


def logs_to_stderr(conf: cfg.ConfigOpts) -> bool:
    """Whether ``setup`` sends log records to stderr (no file, or use_stderr)."""
    return bool(conf.use_stderr or not (conf.log_file or conf.log_dir))


def set_library_levels(entries: list[str]) -> None:
    """Apply ``logger=LEVEL`` entries; raises ValueError for a bad one."""
    for entry in entries:
        name, _, level = entry.partition("=")
        try:
            logging.getLogger(name.strip()).setLevel(level.strip().upper())
        except ValueError:
            raise ValueError("default_log_levels: %r is not logger=LEVEL "
                             "(DEBUG, INFO, WARNING, ERROR, CRITICAL)" % entry) from None
