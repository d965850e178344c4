"""Engines for the registry database.

SQLite needs care to take many concurrent writers: WAL journal (readers
never block the writer), a busy timeout (writers queue instead of failing
with "database is locked"), and write transactions that take the write lock
up front. A deferred transaction that reads and then writes can fail with
SQLITE_BUSY without ever waiting, when another writer committed in between;
``BEGIN IMMEDIATE`` waits for the lock before reading anything. Write paths
ask for it with the execution option ``WRITE_OPTION`` (see ``writer``).

PostgreSQL gives the same guarantee with a transaction-level advisory lock
that every write transaction takes first (``WRITE_LOCK_KEY``): under READ
COMMITTED two deletes of one image would otherwise both read it as live and
both succeed, in one registry process or several on one database. Writes
are serialised as on SQLite; reads never wait for them.

Server databases get a pool sized by the ``[database]`` options and
``pool_pre_ping``: a connection that died with a database restart is
replaced when it is next checked out, so no request fails after the
database is back. While it is down, every statement or connection attempt
that fails for that reason raises DatabaseUnavailable (a 503), here and
nowhere else (``_unavailable``).

A ``postgresql://`` URL that names no driver uses psycopg (3), the driver
the ``postgres`` extra installs; SQLAlchemy alone would pick psycopg2. A
driver that is not installed is a ConfigError naming what to install, not
an ImportError.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import sqlalchemy as sa
from oslo_config import cfg
from sqlalchemy import event

from glance_clone.common import exception

LOG = logging.getLogger(__name__)

# Execution option marking a connection whose transactions will write.
WRITE_OPTION = "glance_write"

SQLITE_BUSY_TIMEOUT = 60.0  # seconds a writer waits for the lock
# pg_advisory_xact_lock key of registry write transactions ("glance").
WRITE_LOCK_KEY = 0x676C616E6365

# Database driver modules an extra of ours installs: module -> (package, extra).
DRIVER_EXTRAS = {"psycopg": ("psycopg", "postgres")}
# Backends whose URL may omit the driver, and the driver we then use.
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg"}


def database_url(conf_or_url: Any) -> sa.engine.URL:
    """The URL from a ConfigOpts ([database] connection) or a URL/string.

    Raises ConfigError when no connection is configured or it is unparsable.
    """
    if isinstance(conf_or_url, cfg.ConfigOpts):
        conf_or_url = conf_or_url.database.connection
    if not conf_or_url:
        raise exception.ConfigError(
            "No database connection configured: set 'connection' in the "
            "[database] section.")
    try:
        url = sa.engine.make_url(conf_or_url)
    except sa.exc.ArgumentError as err:
        raise exception.ConfigError(f"Invalid database connection: {err}")
    default = DEFAULT_DRIVERS.get(url.drivername)
    return url.set(drivername=default) if default else url


def _missing_driver(url: sa.engine.URL, err: ImportError) -> exception.ConfigError:
    """The error for a database driver that cannot be imported."""
    module = (err.name or "").partition(".")[0]
    if module in DRIVER_EXTRAS:
        package, extra = DRIVER_EXTRAS[module]
        return exception.MissingDependency(
            feature="The %s database" % url.get_backend_name(), package=package, extra=extra)
    return exception.ConfigError(
        "The database driver of %s:// cannot be loaded (%s); use "
        "postgresql+psycopg:// with pip install 'glance_clone[postgres]', or sqlite://"
        % (url.drivername, err))


def sqlite_file(url: sa.engine.URL) -> str | None:
    """The database file of a SQLite URL, or None (other dialect, memory)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def ensure_sqlite_directory(url: sa.engine.URL) -> None:
    """Create the directory of a SQLite database file if it is missing."""
    path = sqlite_file(url)
    if path:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)


def create_engine(conf_or_url: Any, *, pool_size: int | None = None,
                  max_overflow: int | None = None,
                  pool_timeout: int | None = None,
                  pool_recycle: int | None = None) -> sa.engine.Engine:
    """An Engine for ``[database]`` of ``conf`` or for a URL.

    Pool options default to the [database] options of a ConfigOpts (or
    SQLAlchemy's defaults for a bare URL). Raises ConfigError.
    """
    url = database_url(conf_or_url)
    if isinstance(conf_or_url, cfg.ConfigOpts):
        db_conf = conf_or_url.database
        pool_size = db_conf.max_pool_size if pool_size is None else pool_size
        max_overflow = (db_conf.max_overflow if max_overflow is None
                        else max_overflow)
        pool_timeout = (db_conf.pool_timeout if pool_timeout is None
                        else pool_timeout)
        pool_recycle = (db_conf.connection_recycle_time if pool_recycle is None
                        else pool_recycle)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool_size, max_overflow, pool_timeout)
    options: dict[str, Any] = {"pool_pre_ping": True}
    for name, value in (("pool_size", pool_size), ("max_overflow", max_overflow),
                        ("pool_timeout", pool_timeout),
                        ("pool_recycle", pool_recycle)):
        if value is not None:
            options[name] = value
    try:
        engine = sa.create_engine(url, **options)
    except ImportError as err:
        raise _missing_driver(url, err) from None
    except sa.exc.NoSuchModuleError:
        raise exception.ConfigError(
            "Invalid database connection: SQLAlchemy has no dialect %s://" % url.drivername)
    event.listen(engine, "handle_error", _unavailable)
    if url.get_backend_name() == "postgresql":
        event.listen(engine, "begin", _lock_writes)
    return engine


def _lock_writes(connection: sa.engine.Connection) -> None:
    """``begin`` hook (PostgreSQL): a write transaction first waits for the
    registry's write lock, held until it commits or rolls back."""
    if connection.get_execution_options().get(WRITE_OPTION):
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%d)" % WRITE_LOCK_KEY)


def _unavailable(context: sa.engine.ExceptionContext) -> BaseException | None:
    """``handle_error`` hook: a lost or refused server connection (and the
    server's other operational failures: shutdown, deadlock, lock timeout)
    becomes DatabaseUnavailable; anything else stays as it was.

    SQLAlchemy still invalidates a disconnected connection after this, so
    the pool does not hand it out again.
    """
    if context.is_pre_ping:
        # The pool's own liveness check: it reconnects on a disconnect,
        # which an exception from here would prevent.
        return None
    if not (context.is_disconnect or
            isinstance(context.sqlalchemy_exception, sa.exc.OperationalError)):
        return None
    lines = str(context.original_exception).strip().splitlines()
    LOG.warning("Registry database unavailable: %s", lines[0] if lines else
                type(context.original_exception).__name__)
    return exception.DatabaseUnavailable()


def _sqlite_engine(url: sa.engine.URL, pool_size: int | None,
                   max_overflow: int | None,
                   pool_timeout: int | None) -> sa.engine.Engine:
    options: dict[str, Any] = {
        "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT},
    }
    on_file = sqlite_file(url) is not None
    if on_file:
        # File databases get a QueuePool; in-memory ones keep SQLAlchemy's
        # single-connection pool, where these options do not apply.
        for name, value in (("pool_size", pool_size),
                            ("max_overflow", max_overflow),
                            ("pool_timeout", pool_timeout)):
            if value is not None:
                options[name] = value
    engine = sa.create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (which
        # would not BEGIN before SELECTs); "begin" below issues BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(
                f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
            if on_file:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.engine.Connection) -> None:
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def writer(engine: sa.engine.Engine) -> sa.engine.Engine:
    """The engine whose transactions are write transactions.

    On SQLite they take the write lock when they begin, on PostgreSQL the
    registry's advisory write lock; elsewhere this changes nothing.
    """
    return engine.execution_options(**{WRITE_OPTION: True})
