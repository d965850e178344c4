"""Schema versioning of the registry database, driven through alembic.

No alembic.ini is involved: the Config is built here, pointing at the
``migrations`` directory of this package, and the migration environment
runs on a connection we open. Revisions are numbered like Glance's
sqlalchemy-migrate versions: "42" is Glance's Liberty schema, later
revisions (43, ...) are ours.

A database that Glance itself migrated to version 42 (table
``migrate_version``) is adopted by ``db_sync``: it is stamped "42" and gets
our one extra table.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError

from glance_clone.common import exception
from glance_clone.db import models, session

LOG = logging.getLogger(__name__)

# Where Glance's own migrations (sqlalchemy-migrate) stopped in Liberty.
LIBERTY = "42"
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "migrations")
LEGACY_VERSION_TABLE = "migrate_version"  # sqlalchemy-migrate's, Glance's


@contextlib.contextmanager
def _connection(engine_or_url: Any) -> Iterator[sa.engine.Connection]:
    if isinstance(engine_or_url, sa.engine.Engine):
        with engine_or_url.connect() as connection:
            yield connection
        return
    engine = session.create_engine(engine_or_url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _config(connection: sa.engine.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    config.attributes["connection"] = connection
    return config


def _revision(version: Any, default: str) -> str:
    """An alembic target from a Glance-style version (None, "0", "42")."""
    if version is None or str(version).strip() in ("", "None"):
        return default
    text = str(version).strip()
    return "base" if text in ("0", "base") else text


def _run(engine_or_url: Any, action: Any, *args: Any) -> None:
    with _connection(engine_or_url) as connection:
        try:
            action(_config(connection), *args)
        except CommandError as err:
            raise exception.Invalid(str(err))
        connection.commit()


def _current(connection: sa.engine.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _legacy_version(connection: sa.engine.Connection) -> str | None:
    if not sa.inspect(connection).has_table(LEGACY_VERSION_TABLE):
        return None
    table = sa.table(LEGACY_VERSION_TABLE, sa.column("version"))
    value = connection.execute(sa.select(table.c.version)).scalar()
    return None if value is None else str(value)


def db_version(engine_or_url: Any) -> str | None:
    """The schema version ("44" at head), or None for an unversioned database."""
    with _connection(engine_or_url) as connection:
        current = _current(connection)
        if current is None:
            current = _legacy_version(connection)
        connection.rollback()
        return current


def _adopt_unversioned(engine_or_url: Any) -> None:
    """Put a database without an alembic version under our control.

    Raises Invalid when it holds tables we cannot account for.
    """
    with _connection(engine_or_url) as connection:
        if _current(connection) is not None:
            return
        legacy = _legacy_version(connection)
        if legacy is None:
            if sa.inspect(connection).has_table(models.images.name):
                raise exception.Invalid(
                    "The database is not under version control, but has "
                    "tables. Please stamp the current version of the schema "
                    "manually.")
            return
        if legacy != LIBERTY:
            raise exception.Invalid(
                f"The database is at Glance migration version {legacy}; migrate it "
                f"to version {LIBERTY} with Glance first.")
        models.purged_image_ids.create(connection, checkfirst=True)
        connection.commit()
        LOG.info("Adopting a database migrated by Glance at version %s", LIBERTY)
        try:
            command.stamp(_config(connection), LIBERTY)
        except CommandError as err:
            raise exception.Invalid(str(err))
        connection.commit()


def db_sync(engine_or_url: Any, version: Any = None,
            current_version: Any = None) -> None:
    """Create or migrate the schema to ``version`` (head by default).

    With ``current_version`` the database is first stamped at that version.
    Raises Invalid (unknown version, unmanaged tables).
    """
    if current_version not in (None, "None"):
        version_control(engine_or_url, current_version)
    else:
        _adopt_unversioned(engine_or_url)
    db_upgrade(engine_or_url, version)


def db_upgrade(engine_or_url: Any, version: Any = None) -> None:
    """Migrate up to ``version`` (head by default); raises Invalid."""
    _run(engine_or_url, command.upgrade, _revision(version, "head"))


def db_downgrade(engine_or_url: Any, version: Any) -> None:
    """Migrate down to ``version`` ("0" drops everything); raises Invalid."""
    if version is None or str(version).strip() in ("", "None"):
        raise exception.Invalid("A version to downgrade to is required.")
    _run(engine_or_url, command.downgrade, _revision(version, "base"))


def version_control(engine_or_url: Any, version: Any = None) -> None:
    """Record ``version`` (head by default) without changing the schema."""
    _run(engine_or_url, command.stamp, _revision(version, "head"))
