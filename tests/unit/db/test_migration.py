"""Schema creation, versions, downgrade and adoption of Glance databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from glance_clone.common import exception
from glance_clone.db import migration, models, session

TABLES = {"images", "image_properties", "image_members", "image_locations",
          "image_tags", "tasks", "task_info", "purged_image_ids"}
INDEXES = {
    "images": {"checksum_image_idx", "ix_images_is_public", "ix_images_deleted",
               "owner_image_idx"},
    "image_properties": {"ix_image_properties_image_id",
                         "ix_image_properties_deleted"},
    "image_members": {"ix_image_members_deleted", "ix_image_members_image_id",
                      "ix_image_members_image_id_member"},
    "image_locations": {"ix_image_locations_image_id", "ix_image_locations_deleted"},
    "image_tags": {"ix_image_tags_image_id", "ix_image_tags_image_id_tag_value"},
    "tasks": {"ix_tasks_type", "ix_tasks_status", "ix_tasks_owner",
              "ix_tasks_deleted", "ix_tasks_updated_at"},
}
UNIQUES = {
    "image_properties": {"ix_image_properties_image_id_name"},
    "image_members": {"image_members_image_id_member_deleted_at_key"},
}


@pytest.fixture
def url(empty_db_url):
    return empty_db_url


@pytest.fixture
def engine(url):
    engine = session.create_engine(url)
    yield engine
    engine.dispose()


def tables(engine):
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_sync_creates_the_liberty_schema(url, engine):
    assert migration.db_version(url) is None
    migration.db_sync(url)
    assert migration.db_version(url) == "42"
    assert tables(engine) == TABLES
    inspector = sa.inspect(engine)
    for table, names in INDEXES.items():
        assert names <= {i["name"] for i in inspector.get_indexes(table)}, table
    for table, names in UNIQUES.items():
        assert names <= {u["name"] for u in inspector.get_unique_constraints(table)}
    columns = {c["name"]: c for c in inspector.get_columns("images")}
    assert not columns["status"]["nullable"] and columns["size"]["nullable"]


def test_migration_matches_the_models(url, engine):
    migration.db_sync(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection),
                                models.Base.metadata)
    assert diff == []


def test_sync_twice_and_with_versions(url, engine):
    migration.db_sync(url)
    migration.db_sync(url, version="42")
    assert migration.db_version(engine) == "42"


def test_downgrade_drops_everything_and_upgrade_restores(url, engine):
    migration.db_sync(url)
    migration.db_downgrade(url, "0")
    assert migration.db_version(url) is None
    assert tables(engine) == set()
    migration.db_upgrade(url)
    assert tables(engine) == TABLES
    with pytest.raises(exception.Invalid):
        migration.db_downgrade(url, None)
    with pytest.raises(exception.Invalid):
        migration.db_upgrade(url, "17")


def test_version_control_stamps_only(url, engine):
    migration.version_control(url)
    assert migration.db_version(url) == "42"
    assert tables(engine) == set()
    migration.version_control(url, "0")
    assert migration.db_version(url) is None


def test_sync_with_current_version(url, engine):
    models.Base.metadata.create_all(engine)
    migration.db_sync(url, current_version="42")
    assert migration.db_version(url) == "42"


def test_unversioned_tables_are_refused(url, engine):
    models.images.create(engine)
    with pytest.raises(exception.Invalid) as err:
        migration.db_sync(url)
    assert "not under version control" in str(err.value)


def _legacy_database(engine, version):
    """Tables as Glance leaves them, with sqlalchemy-migrate's version."""
    legacy = [t for t in models.Base.metadata.sorted_tables
              if t.name != "purged_image_ids"]
    models.Base.metadata.create_all(engine, tables=legacy)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE migrate_version (repository_id VARCHAR(250) PRIMARY KEY,"
            " repository_path TEXT, version INTEGER)")
        connection.exec_driver_sql(
            "INSERT INTO migrate_version VALUES ('Glance Migrations', 'x', "
            f"{version})")


def test_glance_database_at_42_is_adopted(url, engine):
    _legacy_database(engine, 42)
    assert migration.db_version(url) == "42"
    migration.db_sync(url)
    assert tables(engine) >= TABLES
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "42"


def test_older_glance_database_is_refused(url, engine):
    _legacy_database(engine, 30)
    with pytest.raises(exception.Invalid) as err:
        migration.db_sync(url)
    assert "version 30" in str(err.value)
