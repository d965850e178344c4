"""Engines: SQLite settings, write locking, concurrent writers, options."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.db import api, models, session

from .helpers import sqlite_only, tenant


@sqlite_only
def test_sqlite_pragmas(engine):
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert pragma("PRAGMA busy_timeout").scalar() >= 10000


@sqlite_only
def test_writes_begin_immediate_reads_do_not(engine, db):
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.startswith("BEGIN"):
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        image = db.image_create(tenant("t1"), {})
        db.image_get(tenant("t1"), image["id"])
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert seen == ["BEGIN IMMEDIATE", "BEGIN"]


def test_foreign_keys_are_enforced(engine):
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as connection:
            connection.execute(models.image_properties.insert().values(
                image_id="missing", name="n", created_at=models.utcnow(),
                deleted=False))


def test_many_concurrent_writers(db_url):
    """Writers on separate engines never see "database is locked"."""
    engines = [session.create_engine(db_url) for _ in range(4)]
    errors: list[BaseException] = []
    per_thread, threads_count = 30, 8
    barrier = threading.Barrier(threads_count)

    def work(index: int) -> None:
        db = api.Database(engines[index % len(engines)])
        context = tenant(f"t{index}")
        try:
            barrier.wait(timeout=10)
            for n in range(per_thread):
                image = db.image_create(context, {
                    "name": f"i{n}", "status": "queued",
                    "properties": {"p": str(n)}})
                db.image_update(context, image["id"], {"status": "saving"},
                                from_state="queued")
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        with engines[0].connect() as connection:
            count = connection.execute(sa.select(sa.func.count()).select_from(
                models.images).where(models.images.c.status == "saving")).scalar()
        assert count == per_thread * threads_count
    finally:
        for engine in engines:
            engine.dispose()


def test_engine_from_config(tmp_path):
    conf = cfg.ConfigOpts()
    config.register_database_opts(conf)
    conf([], project="glance", default_config_files=[])
    with pytest.raises(exception.ConfigError):
        session.create_engine(conf)
    conf.set_override("connection", "sqlite:///" + str(tmp_path / "x.db"),
                      group="database")
    conf.set_override("max_pool_size", 3, group="database")
    engine = session.create_engine(conf)
    try:
        assert engine.pool.size() == 3
    finally:
        engine.dispose()


def test_bad_url():
    with pytest.raises(exception.ConfigError):
        session.create_engine("not a url")


def test_ensure_sqlite_directory(tmp_path):
    url = sa.engine.make_url("sqlite:///" + str(tmp_path / "a" / "b" / "g.db"))
    session.ensure_sqlite_directory(url)
    assert (tmp_path / "a" / "b").is_dir()
    session.ensure_sqlite_directory(sa.engine.make_url("sqlite://"))
    session.ensure_sqlite_directory(sa.engine.make_url("postgresql://h/db"))


def test_memory_database_works():
    engine = session.create_engine("sqlite://")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_engine_takes_the_pool_options():
    conf = cfg.ConfigOpts()
    config.register_database_opts(conf)
    conf([], project="glance", default_config_files=[])
    conf.set_override("connection", "postgresql+psycopg://g:g@127.0.0.1:5433/g",
                      group="database")
    for name, value in (("max_pool_size", 7), ("max_overflow", 3),
                        ("pool_timeout", 4), ("connection_recycle_time", 99)):
        conf.set_override(name, value, group="database")
    engine = session.create_engine(conf)
    try:
        pool = engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle) == (7, 3, 4, 99)
        assert pool._pre_ping
    finally:
        engine.dispose()


def test_unreachable_server_is_database_unavailable():
    engine = session.create_engine(
        "postgresql+psycopg://g:g@127.0.0.1:%d/g" % _closed_port())
    try:
        with pytest.raises(exception.DatabaseUnavailable) as raised:
            api.Database(engine).image_get_all(tenant("t1"))
        assert str(raised.value) == "The registry database is unavailable; try again later."
        assert isinstance(raised.value, exception.ServiceUnavailable)
    finally:
        engine.dispose()


def test_sql_errors_are_not_taken_for_an_outage(engine):
    with pytest.raises(sa.exc.DBAPIError) as raised:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT no_such_column FROM images")
    assert not isinstance(raised.value, exception.GlanceError)


def test_an_exhausted_pool_is_database_unavailable(tmp_path):
    url = "sqlite:///" + str(tmp_path / "pool.db")
    engine = session.create_engine(url, pool_size=1, max_overflow=0, pool_timeout=1)
    try:
        models.Base.metadata.create_all(engine)
        db = api.Database(engine)
        with engine.connect():
            # The only pooled connection is taken: readers and writers wait
            # pool_timeout, then get a 503-class error instead of a 500.
            with pytest.raises(exception.DatabaseUnavailable):
                db.image_get_all(tenant("t1"))
            with pytest.raises(exception.DatabaseUnavailable):
                db.image_create(tenant("t1"), {"name": "x", "status": "queued"})
        assert db.image_get_all(tenant("t1")) == []
    finally:
        engine.dispose()


def test_a_plain_postgresql_url_means_psycopg():
    url = session.database_url("postgresql://glance:pw@db.example.org/glance")
    assert url.drivername == "postgresql+psycopg"
    assert session.database_url("postgresql+psycopg2://g@h/g").drivername == \
        "postgresql+psycopg2"


def test_a_driver_that_is_not_installed_is_a_config_error():
    # pymysql is no dependency of ours, so it is not installed.
    with pytest.raises(exception.ConfigError) as info:
        session.create_engine("mysql+pymysql://glance:pw@127.0.0.1/glance")
    assert str(info.value) == (
        "The database driver of mysql+pymysql:// cannot be loaded (No module named "
        "'pymysql'); use postgresql+psycopg:// with pip install "
        "'glance_clone[postgres]', or sqlite://")
    with pytest.raises(exception.ConfigError, match="SQLAlchemy has no dialect nosuch://"):
        session.create_engine("nosuch://glance@127.0.0.1/glance")
