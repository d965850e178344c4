"""Schema creation, versions, downgrade, the v2 data migration and adoption
of Glance databases."""

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
    "images": {"checksum_image_idx", "visibility_image_idx", "ix_images_deleted",
               "owner_image_idx", "os_hash_value_image_idx"},
    "image_properties": {"ix_image_properties_image_id",
                         "ix_image_properties_deleted"},
    "image_members": {"ix_image_members_deleted", "ix_image_members_image_id",
                      "ix_image_members_image_id_member"},
    "image_locations": {"ix_image_locations_image_id", "ix_image_locations_deleted"},
    "image_tags": {"ix_image_tags_image_id", "ix_image_tags_image_id_tag_value"},
    "tasks": {"ix_tasks_type", "ix_tasks_status", "ix_tasks_owner",
              "ix_tasks_deleted", "ix_tasks_updated_at", "ix_tasks_image_id"},
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
    assert migration.db_version(url) == "44"
    assert tables(engine) == TABLES
    inspector = sa.inspect(engine)
    for table, names in INDEXES.items():
        assert names <= {i["name"] for i in inspector.get_indexes(table)}, table
    for table, names in UNIQUES.items():
        assert names <= {u["name"] for u in inspector.get_unique_constraints(table)}
    columns = {c["name"]: c for c in inspector.get_columns("images")}
    assert not columns["status"]["nullable"] and columns["size"]["nullable"]
    assert "is_public" not in columns
    assert not columns["visibility"]["nullable"]
    assert not columns["os_hidden"]["nullable"]
    assert columns["os_hash_algo"]["nullable"] and columns["os_hash_value"]["nullable"]


def test_migration_matches_the_models(url, engine):
    migration.db_sync(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection),
                                models.Base.metadata)
    assert diff == []


def test_sync_twice_and_with_versions(url, engine):
    migration.db_sync(url, version="42")
    assert migration.db_version(engine) == "42"
    migration.db_sync(url)
    migration.db_sync(url)
    assert migration.db_version(engine) == "44"


def _insert_liberty_images(engine):
    images = sa.table("images", *(sa.column(name) for name in (
        "id", "status", "is_public", "min_disk", "min_ram", "protected",
        "created_at", "deleted")))
    with engine.begin() as connection:
        connection.execute(sa.insert(images), [
            {"id": image_id, "status": "active", "is_public": public,
             "min_disk": 0, "min_ram": 0, "protected": False,
             "created_at": models.utcnow(), "deleted": False}
            for image_id, public in (("pub", True), ("priv", False))])


def _column(engine, name):
    images = sa.table("images", sa.column("id"), sa.column(name))
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(images.c.id, images.c[name])).all())


def test_v2_migration_maps_is_public_to_visibility_and_back(url, engine):
    migration.db_sync(url, version="42")
    _insert_liberty_images(engine)
    migration.db_sync(url)
    # Non-public v1 images become "shared": their members keep reading them.
    assert _column(engine, "visibility") == {"pub": "public", "priv": "shared"}
    assert _column(engine, "os_hidden") == {"pub": False, "priv": False}
    assert _column(engine, "os_hash_value") == {"pub": None, "priv": None}
    migration.db_downgrade(url, "42")
    assert migration.db_version(url) == "42"
    assert _column(engine, "is_public") == {"pub": True, "priv": False}
    columns = {c["name"] for c in sa.inspect(engine).get_columns("images")}
    assert not {"visibility", "os_hidden", "os_hash_algo", "os_hash_value"} & columns


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
    assert migration.db_version(url) == "44"
    assert tables(engine) == set()
    migration.version_control(url, "0")
    assert migration.db_version(url) is None


def test_sync_with_current_version(url, engine):
    models.Base.metadata.create_all(engine)
    migration.db_sync(url, current_version="44")
    assert migration.db_version(url) == "44"


def test_unversioned_tables_are_refused(url, engine):
    models.images.create(engine)
    with pytest.raises(exception.Invalid) as err:
        migration.db_sync(url)
    assert "not under version control" in str(err.value)


def _legacy_database(engine, version):
    """Tables as Glance leaves them, with sqlalchemy-migrate's version."""
    migration.db_upgrade(engine, "42")
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
        connection.exec_driver_sql("DROP TABLE purged_image_ids")
        connection.exec_driver_sql(
            "CREATE TABLE migrate_version (repository_id VARCHAR(250) PRIMARY KEY,"
            " repository_path TEXT, version INTEGER)")
        connection.exec_driver_sql(
            "INSERT INTO migrate_version VALUES ('Glance Migrations', 'x', "
            f"{version})")


def test_glance_database_at_42_is_adopted(url, engine):
    _legacy_database(engine, 42)
    _insert_liberty_images(engine)
    assert migration.db_version(url) == "42"
    migration.db_sync(url)
    assert tables(engine) >= TABLES
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "44"
    assert _column(engine, "visibility") == {"pub": "public", "priv": "shared"}
    # Images from before multihash keep none: their data was never hashed so.
    assert _column(engine, "os_hash_algo") == {"pub": None, "priv": None}
    assert _column(engine, "os_hash_value") == {"pub": None, "priv": None}


def test_older_glance_database_is_refused(url, engine):
    _legacy_database(engine, 30)
    with pytest.raises(exception.Invalid) as err:
        migration.db_sync(url)
    assert "version 30" in str(err.value)
