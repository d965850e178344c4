"""Contexts and direct-SQL helpers of the database tests."""

from __future__ import annotations

import datetime
import os
from typing import Any

import pytest
import sqlalchemy as sa

from glance_clone.common.context import RequestContext
from glance_clone.db import models

# A PostgreSQL server to run the tests on instead of SQLite (see conftest).
SERVER_URL = os.environ.get("GLANCE_CLONE_TEST_DB_URL")
sqlite_only = pytest.mark.skipif(bool(SERVER_URL), reason="SQLite settings")

ADMIN = RequestContext(is_admin=True, roles=("admin",))
ANONYMOUS = RequestContext(read_only=True)


def tenant(name: str, **kwargs: Any) -> RequestContext:
    return RequestContext(user="u-" + name, tenant=name, **kwargs)


def set_columns(engine: sa.engine.Engine, table: sa.Table, row_id: Any,
                **values: Any) -> None:
    """Change stored columns behind the API's back (timestamps, mostly)."""
    with engine.begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == row_id)
                           .values(**values))


def rows(engine: sa.engine.Engine, table: sa.Table, **where: Any) -> list[Any]:
    query = sa.select(table).order_by(table.c.id)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    with engine.connect() as connection:
        return list(connection.execute(query).mappings())


def days_ago(days: float) -> datetime.datetime:
    return models.utcnow() - datetime.timedelta(days=days)
