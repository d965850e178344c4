"""purge_deleted_rows: hard deletes, limits, ids never reused."""

from __future__ import annotations

import datetime
import uuid

import pytest
import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.db import models

from .helpers import ADMIN, days_ago, rows, tenant

T1 = tenant("t1")


def _age_everything(engine, days):
    """Move every deleted_at back by ``days``."""
    with engine.begin() as connection:
        for table in (models.images, models.image_properties,
                      models.image_members, models.image_locations,
                      models.image_tags, models.tasks):
            connection.execute(sa.update(table).where(table.c.deleted == sa.true())
                               .values(deleted_at=days_ago(days)))


def _deleted_image(db, **values):
    image = db.image_create(T1, dict({"properties": {"a": "1", "b": "2"},
                                      "location": "file:///x"}, **values))
    db.image_member_create(T1, {"image_id": image["id"], "member": "m"})
    db.image_destroy(T1, image["id"])
    return image


def test_purge_old_deleted_rows(db, engine):
    old = _deleted_image(db)
    live = db.image_create(T1, {"properties": {"a": "1"}})
    _age_everything(engine, 40)
    recent = _deleted_image(db)
    counts = db.purge_deleted_rows(30, -1)
    assert counts == {"image_properties": 2, "image_members": 1,
                      "image_locations": 1, "image_tags": 0, "images": 1,
                      "tasks": 0}
    remaining = [r["id"] for r in rows(engine, models.images)]
    assert remaining == sorted([live["id"], recent["id"]])
    assert [r["id"] for r in rows(engine, models.purged_image_ids)] == [old["id"]]
    with pytest.raises(exception.Duplicate):
        db.image_create(ADMIN, {"id": old["id"]})
    with pytest.raises(exception.ImageNotFound):
        db.image_get(ADMIN, old["id"])


def test_max_rows_per_table_and_children_first(db, engine):
    first = _deleted_image(db)
    second = _deleted_image(db)
    _age_everything(engine, 40)
    counts = db.purge_deleted_rows(30, 1)
    # One property of the first image went; its image must wait for the rest.
    assert counts["image_properties"] == 1 and counts["images"] == 0
    counts = db.purge_deleted_rows(30, 1)
    assert counts["image_properties"] == 1 and counts["images"] == 1
    assert [r["id"] for r in rows(engine, models.images)] == [second["id"]]
    assert [r["id"] for r in rows(engine, models.purged_image_ids)] == [first["id"]]
    while db.purge_deleted_rows(30, 1)["images"] == 0:
        pass
    assert rows(engine, models.images) == []


def test_live_children_keep_their_image(db, engine):
    image = db.image_create(T1, {})
    db.image_destroy(T1, image["id"])
    # A location added after the delete (e.g. by an admin) is still live.
    db.image_update(ADMIN, image["id"], {"location": "file:///late"})
    _age_everything(engine, 40)
    assert db.purge_deleted_rows(1, -1)["images"] == 0
    assert len(rows(engine, models.images)) == 1


def test_tasks_and_their_info(db, engine):
    with engine.begin() as connection:
        for task_id, deleted in (("gone", True), ("kept", False)):
            connection.execute(models.tasks.insert().values(
                id=task_id, type="import", status="success", owner="t1",
                created_at=days_ago(50), deleted=deleted,
                deleted_at=days_ago(40) if deleted else None))
            connection.execute(models.task_info.insert().values(
                task_id=task_id, input="{}"))
    assert db.purge_deleted_rows(30, 100)["tasks"] == 1
    assert [r["id"] for r in rows(engine, models.tasks)] == ["kept"]
    with engine.connect() as connection:
        assert list(connection.execute(sa.select(models.task_info.c.task_id))
                    .scalars()) == ["kept"]


@pytest.mark.parametrize("age, max_rows", [
    (-1, 10), (30, 0), (30, -2), ("30", 10), (30, True), (30, 2 ** 31)])
def test_invalid_arguments(db, age, max_rows):
    with pytest.raises(exception.Invalid):
        db.purge_deleted_rows(age, max_rows)


def test_purge_removes_expired_tasks(db, engine):
    def task(**values):
        return db.task_create(T1, {"id": str(uuid.uuid4()), "type": "import",
                                   "status": "success", "owner": "t1",
                                   "input": {}} | values)

    task(expires_at=models.utcnow() - datetime.timedelta(minutes=1))
    running = task(status="processing")
    later = task(expires_at=models.utcnow() + datetime.timedelta(hours=1))
    counts = db.purge_deleted_rows(30, -1)
    assert counts["tasks"] == 1
    left = rows(engine, models.tasks)
    assert {row["id"] for row in left} == {running["id"], later["id"]}
    with engine.connect() as connection:
        infos = set(connection.execute(sa.select(models.task_info.c.task_id)).scalars())
    assert infos == {running["id"], later["id"]}
