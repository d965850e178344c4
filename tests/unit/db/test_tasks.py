"""Tasks in the database: visibility, expiry, compare-and-swap, lists."""

from __future__ import annotations

import datetime
import uuid

import pytest

from glance_clone.common import exception
from glance_clone.db import models

from .helpers import ADMIN, tenant

T1 = tenant("t1")
T2 = tenant("t2")


def _task(db, context=T1, **values):
    row = {"id": str(uuid.uuid4()), "type": "import", "status": "pending",
           "owner": context.owner, "input": {"import_from": "http://x/y"}}
    return db.task_create(context, row | values)


def test_create_and_get(db):
    task = _task(db, request_id="req-1", user_id="u-t1")
    got = db.task_get(T1, task["id"])
    assert got["input"] == {"import_from": "http://x/y"}
    assert got["result"] is None and got["message"] == ""
    assert (got["status"], got["owner"], got["request_id"]) == ("pending", "t1", "req-1")
    assert db.task_get(ADMIN, task["id"])["id"] == task["id"]


def test_other_projects_tasks_are_not_found(db):
    task = _task(db)
    with pytest.raises(exception.TaskNotFound):
        db.task_get(T2, task["id"])
    assert db.task_list(T2) == []
    with pytest.raises(exception.TaskNotFound):
        db.task_update(T2, task["id"], {"status": "processing"})


def test_duplicate_id_is_refused(db):
    task = _task(db)
    with pytest.raises(exception.Duplicate):
        _task(db, id=task["id"])


def test_update_is_a_compare_and_swap(db):
    task = _task(db)
    done = db.task_update(T1, task["id"], {"status": "processing"}, from_state="pending")
    assert done["status"] == "processing"
    with pytest.raises(exception.StatusConflict):
        db.task_update(T1, task["id"], {"status": "processing"}, from_state="pending")
    done = db.task_update(T1, task["id"], {"status": "success",
                                           "result": {"image_id": "i"},
                                           "message": "ok"}, from_state="processing")
    assert done["result"] == {"image_id": "i"} and done["message"] == "ok"
    assert done["updated_at"] >= task["updated_at"]


def test_expired_tasks_are_gone(db):
    past = models.utcnow() - datetime.timedelta(seconds=1)
    future = models.utcnow() + datetime.timedelta(hours=1)
    expired = _task(db, status="failure", expires_at=past)
    kept = _task(db, status="success", expires_at=future)
    with pytest.raises(exception.TaskNotFound):
        db.task_get(ADMIN, expired["id"])
    assert [t["id"] for t in db.task_list(ADMIN)] == [kept["id"]]


def test_list_filters_sorts_and_pages(db):
    ids = [_task(db, status=status)["id"]
           for status in ("pending", "processing", "success")]
    _task(db, T2)
    assert {t["id"] for t in db.task_list(T1)} == set(ids)
    assert len(db.task_list(ADMIN)) == 4
    assert [t["id"] for t in db.task_list(T1, {"status": "success"})] == [ids[2]]
    by_status = db.task_list(T1, sort_key="status", sort_dir="asc")
    assert [t["status"] for t in by_status] == ["pending", "processing", "success"]
    first = db.task_list(T1, sort_key="status", sort_dir="asc", limit=2)
    rest = db.task_list(T1, sort_key="status", sort_dir="asc", marker=first[-1]["id"])
    assert [t["id"] for t in first + rest] == [t["id"] for t in by_status]
    assert db.task_list(T1, sort_key="expires_at", limit=1)
    assert db.task_list(ADMIN, updated_before=models.utcnow()
                        - datetime.timedelta(hours=1)) == []
    with pytest.raises(exception.TaskNotFound):
        db.task_list(T2, marker=ids[0])
    with pytest.raises(exception.InvalidSortKey):
        db.task_list(T1, sort_key="input")
    with pytest.raises(exception.Invalid):
        db.task_list(T1, {"message": "x"})


def test_every_column_of_the_row_filters_and_sorts(db):
    plain = _task(db, status="success", user_id="u1")
    linked = _task(db, image_id="img-1", request_id="req-2", user_id="u2",
                   expires_at=models.utcnow() + datetime.timedelta(hours=1))
    ids = {plain["id"], linked["id"]}
    for name, value in (("image_id", "img-1"), ("request_id", "req-2"),
                        ("user_id", "u2"), ("id", linked["id"]),
                        ("expires_at", linked["expires_at"].isoformat())):
        assert [t["id"] for t in db.task_list(T1, {name: value})] == [linked["id"]], name
    # A time matches within the second given, as a view shows it.
    second = linked["created_at"].replace(microsecond=0).isoformat() + "+00:00"
    assert linked["id"] in {t["id"] for t in db.task_list(T1, {"created_at": second})}
    assert {t["id"] for t in db.task_list(T1, {"deleted": "false"})} == ids
    assert db.task_list(T1, {"deleted": "true"}) == []
    for key in ("image_id", "request_id", "user_id", "owner", "deleted_at"):
        for direction in ("asc", "desc"):
            listed = db.task_list(T1, sort_key=key, sort_dir=direction)
            assert {t["id"] for t in listed} == ids, key
            # Paging past a task whose sort value is null works too.
            first = db.task_list(T1, sort_key=key, sort_dir=direction, limit=1)
            rest = db.task_list(T1, sort_key=key, sort_dir=direction,
                                marker=first[0]["id"])
            assert [t["id"] for t in first + rest] == [t["id"] for t in listed], key
    nulls_first = db.task_list(T1, sort_key="image_id", sort_dir="asc")
    assert [t["id"] for t in nulls_first] == [plain["id"], linked["id"]]
    for bad in ({"created_at": "yesterday"}, {"deleted": "maybe"}):
        with pytest.raises(exception.Invalid):
            db.task_list(T1, bad)


def test_bad_status_is_refused(db):
    with pytest.raises(exception.Invalid):
        _task(db, status="running")
