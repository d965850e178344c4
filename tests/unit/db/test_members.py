"""Image memberships."""

from __future__ import annotations

import pytest

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db import models

from .helpers import ADMIN, rows, tenant

T1 = tenant("t1")


@pytest.fixture
def image(db):
    return db.image_create(T1, {"name": "shared"})


def members(db, context, image_id, **kwargs):
    return [(m["member"], m["can_share"])
            for m in db.image_member_find(context, image_id=image_id, **kwargs)]


def test_create_find_count(db, image):
    row = db.image_member_create(T1, {"image_id": image["id"], "member": "m1"})
    assert row["member"] == "m1" and row["can_share"] is False
    assert row["status"] == "pending" and row["deleted"] is False
    assert row["image_id"] == image["id"] and isinstance(row["id"], int)
    assert set(row) == {"id", "image_id", "member", "can_share", "status",
                        "created_at", "updated_at", "deleted_at", "deleted"}
    db.image_member_create(T1, {"image_id": image["id"], "member": "m2",
                                "can_share": True})
    assert members(db, T1, image["id"]) == [("m1", False), ("m2", True)]
    assert db.image_member_count(T1, image["id"]) == 2
    assert members(db, T1, image["id"], member="m2") == [("m2", True)]


def test_find_visibility(db, image):
    db.image_member_create(T1, {"image_id": image["id"], "member": "m1"})
    db.image_member_create(T1, {"image_id": image["id"], "member": "m2"})
    assert len(db.image_member_find(ADMIN, image_id=image["id"])) == 2
    assert members(db, tenant("m1"), image["id"]) == [("m1", False)]
    assert members(db, tenant("other"), image["id"]) == []
    assert members(db, RequestContext(), image["id"]) == []
    # Images shared with a member, by member only.
    assert [m["image_id"] for m in db.image_member_find(T1, member="m2")] == [
        image["id"]]


def test_create_for_a_live_member_reuses_its_row(db, image):
    first = db.image_member_create(T1, {"image_id": image["id"], "member": "m"})
    again = db.image_member_create(T1, {"image_id": image["id"], "member": "m",
                                        "can_share": True})
    assert again["id"] == first["id"] and again["can_share"] is True
    assert members(db, T1, image["id"]) == [("m", True)]


def test_create_for_unknown_image(db):
    with pytest.raises(exception.ImageNotFound):
        db.image_member_create(ADMIN, {"image_id": "nope", "member": "m"})
    with pytest.raises(exception.Invalid):
        db.image_member_create(ADMIN, {"image_id": "nope"})


def test_update_delete_and_revive(db, image):
    row = db.image_member_create(T1, {"image_id": image["id"], "member": "m"})
    updated = db.image_member_update(T1, row["id"], {"can_share": True})
    assert updated["can_share"] is True and updated["id"] == row["id"]
    db.image_member_delete(T1, row["id"])
    assert members(db, T1, image["id"]) == []
    assert db.image_member_count(T1, image["id"]) == 0
    [gone] = db.image_member_find(T1, image_id=image["id"], include_deleted=True)
    assert gone["deleted"] is True and gone["deleted_at"] is not None
    with pytest.raises(exception.MemberNotFound):
        db.image_member_delete(T1, row["id"])
    revived = db.image_member_update(T1, row["id"], {"can_share": False})
    assert revived["deleted"] is False and revived["deleted_at"] is None
    assert members(db, T1, image["id"]) == [("m", False)]
    with pytest.raises(exception.MemberNotFound):
        db.image_member_update(T1, 12345, {"can_share": True})


def test_replace(db, engine, image):
    image_id = image["id"]
    keep = db.image_member_create(T1, {"image_id": image_id, "member": "keep",
                                       "can_share": True})
    db.image_member_create(T1, {"image_id": image_id, "member": "drop"})
    old = db.image_member_create(T1, {"image_id": image_id, "member": "back",
                                      "can_share": True})
    db.image_member_delete(T1, old["id"])
    db.image_members_replace(T1, image_id, [
        {"member_id": "keep"}, {"member_id": "new", "can_share": True},
        {"member_id": "back"}])
    assert members(db, T1, image_id) == [("keep", True), ("back", True),
                                         ("new", True)]
    stored = rows(engine, models.image_members)
    assert [r["id"] for r in stored if r["member"] == "keep"] == [keep["id"]]
    # The soft-deleted row was revived, not duplicated.
    assert [r["id"] for r in stored if r["member"] == "back"] == [old["id"]]
    assert [r["deleted"] for r in stored if r["member"] == "drop"] == [True]
    db.image_members_replace(T1, image_id, [{"member_id": "keep",
                                             "can_share": False}])
    assert members(db, T1, image_id) == [("keep", False)]
    db.image_members_replace(T1, image_id, [])
    assert members(db, T1, image_id) == []


@pytest.mark.parametrize("memberships", [
    [{"can_share": True}], [{"member_id": ""}], ["m"], [{"member_id": 5}]])
def test_replace_rejects_bad_entries(db, image, memberships):
    db.image_member_create(T1, {"image_id": image["id"], "member": "m"})
    with pytest.raises(exception.Invalid):
        db.image_members_replace(T1, image["id"], memberships)
    assert members(db, T1, image["id"]) == [("m", False)]


def test_is_image_sharable(db, image):
    db.image_member_create(T1, {"image_id": image["id"], "member": "sharer",
                                "can_share": True})
    db.image_member_create(T1, {"image_id": image["id"], "member": "viewer"})
    assert db.is_image_sharable(ADMIN, image)
    assert db.is_image_sharable(T1, image)
    assert db.is_image_sharable(tenant("sharer"), image)
    assert not db.is_image_sharable(tenant("viewer"), image)
    assert not db.is_image_sharable(tenant("other"), image)
    assert not db.is_image_sharable(RequestContext(user="u"), image)
