"""Options shared by both servers, command-line parsing and paste loading.

Programs read ``glance.conf`` then ``glance-<prog>.conf`` from the usual
search path unless ``--config-file`` / ``--config-dir`` is given, exactly as
Glance does, so an operator's existing files keep working.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from oslo_config import cfg
from paste import deploy

from glance_clone.common import exception, log, request_guard
from glance_clone.version import VERSION

SERVER_OPTS = [
    cfg.HostAddressOpt("bind_host", default="0.0.0.0",
                       help="Address the server listens on."),
    cfg.PortOpt("bind_port", help="Port the server listens on."),
    cfg.IntOpt("backlog", default=4096, min=1, help="Listen backlog."),
    cfg.IntOpt("tcp_keepidle", default=600,
               help="Seconds of idle before TCP keepalive probes start."),
    cfg.IntOpt("workers", min=0,
               help="Worker processes; 0 serves in one process. "
                    "Default: the number of CPUs."),
    cfg.IntOpt("max_header_line", default=16384,
               help="Longest request header line accepted."),
    cfg.IntOpt("max_json_body_size", default=1048576, min=1,
               help="Largest JSON request body accepted, in bytes (member "
                    "lists, registry writes); a larger one gets 413 unread. "
                    "Image data is not JSON and is not limited by this."),
    cfg.BoolOpt("http_keepalive", default=True, help="Keep connections open."),
    cfg.IntOpt("client_socket_timeout", default=900,
               help="Idle client socket timeout in seconds; 0 = none."),
    cfg.IntOpt("client_header_timeout", default=60, min=1,
               help="Seconds a client has to send a request line and its "
                    "headers, from the connection (a kept-alive one: from "
                    "the request's first byte); then the connection is "
                    "closed."),
    cfg.IntOpt("max_pending_connections", default=256, min=1,
               help="Connections per worker process that may wait for or "
                    "send a request head at once; one more closes the one "
                    "that waited longest, so slow or idle clients cannot "
                    "take the capacity that serves requests."),
    cfg.IntOpt("graceful_shutdown_timeout", default=60, min=0,
               help="Seconds a stopping server (SIGTERM, SIGINT) gives "
                    "requests in progress before it exits anyway."),
    cfg.StrOpt("cert_file", help="TLS certificate (with key_file)."),
    cfg.StrOpt("key_file", help="TLS private key."),
    cfg.StrOpt("ca_file", help="CA bundle; requires client certificates."),
]

CONTEXT_OPTS = [
    cfg.BoolOpt("owner_is_tenant", default=True,
                help="Image owner is the tenant (else the user)."),
    cfg.StrOpt("admin_role", default="admin",
               help="Role that makes a caller an administrator."),
    cfg.BoolOpt("allow_anonymous_access", default=False,
                help="Unconfirmed callers get a read-only context."),
    cfg.IntOpt("max_request_id_length", default=64,
               help="Longest request id accepted from a caller."),
]

PASTE_OPTS = [
    cfg.StrOpt("flavor", help="Pipeline flavor: the app name gets -<flavor>."),
    cfg.StrOpt("config_file", help="Paste deploy file of the server."),
]

DATABASE_OPTS = [
    cfg.StrOpt("connection", secret=True,
               deprecated_opts=[cfg.DeprecatedOpt("sql_connection",
                                                  group="DEFAULT")],
               help="SQLAlchemy URL of the registry database."),
    cfg.IntOpt("max_pool_size", default=5, help="Pool size (not SQLite)."),
    cfg.IntOpt("max_overflow", default=50, help="Pool overflow (not SQLite)."),
    cfg.IntOpt("pool_timeout", default=30, help="Seconds to wait for a pooled connection."),
    cfg.IntOpt("connection_recycle_time", default=3600,
               deprecated_opts=[cfg.DeprecatedOpt("idle_timeout", group="database")],
               help="Seconds after which pooled connections are replaced."),
]


def register_server_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(SERVER_OPTS)
    conf.register_opts(CONTEXT_OPTS)
    conf.register_opts(PASTE_OPTS, group="paste_deploy")


def register_database_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(DATABASE_OPTS, group="database")


def parse_args(conf: cfg.ConfigOpts, argv: Sequence[str] | None, prog: str,
               default_config_files: list[str] | None = None) -> None:
    """Parse the command line and config files of ``prog`` (e.g. glance-api)."""
    if default_config_files is None:
        default_config_files = cfg.find_config_files(project="glance", prog=prog)
    conf(list(argv) if argv is not None else None, project="glance", prog=prog,
         version=VERSION, default_config_files=default_config_files)


def register_once(conf: cfg.ConfigOpts, opts: Sequence[cfg.Opt],
                  group: str | None = None) -> None:
    """Register ``opts``, keeping any already declared under the same name.

    Modules that read the same option (the registry client, the cache
    filter, the api) may all register it; the first declaration wins.
    """
    for opt in opts:
        try:
            conf.register_opt(opt, group=group)
        except cfg.DuplicateOptError:
            pass


def command_conf(prog: str, argv: Sequence[str] | None,
                 *registrations: Callable[[cfg.ConfigOpts], None],
                 default_config_files: list[str] | None = None) -> cfg.ConfigOpts | None:
    """The parsed configuration of command ``prog``, its logging set up.

    ``registrations`` register the command's options. None, with the
    reason printed on stderr, when the command line or a config file is
    wrong (the command then exits 1).
    """
    conf = cfg.ConfigOpts()
    log.register_cli_opts(conf)
    for register in registrations:
        register(conf)
    try:
        parse_args(conf, argv, prog, default_config_files)
        log.setup(conf, prog)
    except (cfg.Error, ValueError) as err:
        print("ERROR: %s" % err, file=sys.stderr)
        return None
    return conf


# paste.deploy hands factories plain strings only, so the ConfigOpts of the
# server being built is made available for the duration of load_paste_app.
_loading: list[cfg.ConfigOpts] = []


def conf_for_factory() -> cfg.ConfigOpts:
    """The configuration of the app that paste.deploy is building now."""
    if not _loading:
        raise exception.ConfigError(
            "Paste factories can only run inside load_paste_app().")
    return _loading[-1]


@contextlib.contextmanager
def _loading_conf(conf: cfg.ConfigOpts) -> Iterator[None]:
    _loading.append(conf)
    try:
        yield
    finally:
        _loading.pop()


def find_paste_config(conf: cfg.ConfigOpts, prog: str) -> str:
    """The paste file: [paste_deploy] config_file, else next to the config."""
    candidates = []
    if conf.paste_deploy.config_file:
        candidates.append(conf.paste_deploy.config_file)
    elif conf.config_file:
        candidates.append(conf.config_file[-1].replace(".conf", "-paste.ini"))
    if not candidates or not conf.paste_deploy.config_file:
        for found in cfg.find_config_files(project="glance", prog=prog,
                                           extension="-paste.ini"):
            candidates.append(found)
        if conf.config_dir:
            candidates.append(os.path.join(conf.config_dir, prog + "-paste.ini"))
    for path in candidates:
        if os.path.exists(path):
            return os.path.abspath(path)
        found = None if os.path.isabs(path) else conf.find_file(path)
        if found and os.path.exists(found):
            return os.path.abspath(found)
    raise exception.ConfigError(
        "Unable to locate paste config file for %s." % prog)


# Factories named by Glance's paste files that we replace with our own:
# - oslo.middleware's healthcheck is no longer a filter (it became an app);
# - keystonemiddleware's auth_token would read the process-wide cfg.CONF,
#   which our servers never fill; ours hands it the server's configuration.
LEGACY_FACTORIES = {
    "oslo_middleware:Healthcheck.factory":
        "glance_clone.common.healthcheck:HealthcheckFilter.factory",
    "keystonemiddleware.auth_token:filter_factory":
        "glance_clone.common.auth_token:filter_factory",
    "egg:keystonemiddleware#auth_token":
        "call:glance_clone.common.auth_token:filter_factory",
}


@contextlib.contextmanager
def _compatible_paste_file(path: str) -> Iterator[str]:
    """The paste file, or a copy with legacy factory names replaced."""
    with open(path, encoding="utf-8") as source:
        text = source.read()
    if not any(old in text for old in LEGACY_FACTORIES):
        yield path
        return
    for old, new in LEGACY_FACTORIES.items():
        text = text.replace(old, new)
    handle, copy = tempfile.mkstemp(prefix="glance-", suffix="-paste.ini")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as target:
            target.write(text)
        yield copy
    finally:
        os.unlink(copy)


def load_paste_app(conf: cfg.ConfigOpts, prog: str) -> Any:
    """Build the WSGI pipeline of ``prog`` with the configured flavor,
    inside the ``RequestGuard`` that every request passes first."""
    path = find_paste_config(conf, prog)
    name = prog
    if conf.paste_deploy.flavor:
        name += "-" + conf.paste_deploy.flavor
    try:
        with _loading_conf(conf), _compatible_paste_file(path) as usable:
            app = deploy.loadapp("config:%s" % usable, name=name)
            return request_guard.RequestGuard(app, conf)
    except LookupError as err:
        raise exception.ConfigError(
            "Unable to load %s from configuration file %s. Got: %s"
            % (name, path, err))
