"""Fixtures of the database tests: one fresh database per test.

By default that is a SQLite file in tmp_path. With
``GLANCE_CLONE_TEST_DB_URL`` set to a PostgreSQL URL (a role allowed to
create databases, e.g. the one ``start-postgres.sh`` prints), each test gets
its own new database on that server instead, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from glance_clone.db import api, migration, session

from .helpers import SERVER_URL


@pytest.fixture
def empty_db_url(tmp_path: Any) -> Iterator[str]:
    if not SERVER_URL:
        yield "sqlite:///" + str(tmp_path / "registry.sqlite")
        return
    server = sa.engine.make_url(SERVER_URL)
    name = "gc_test_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    migration.db_sync(empty_db_url)
    return empty_db_url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.engine.Engine]:
    engine = session.create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: sa.engine.Engine) -> api.Database:
    return api.Database(engine)
