"""image_search (v2 lists), visibility values and tags in the database."""

from __future__ import annotations

import datetime

import pytest

from glance_clone.common import exception
from glance_clone.db import models

from .helpers import ADMIN, ANONYMOUS, set_columns, tenant

T1 = tenant("t1")
T2 = tenant("t2")
T3 = tenant("t3")


def names(images):
    return sorted(image["name"] for image in images)


@pytest.fixture
def world(db):
    """t1's images in every visibility; shared ones with t2 in each status."""
    made = {}
    for name, context, values in (
            ("public", T1, {"visibility": "public"}),
            ("private", T1, {"visibility": "private"}),
            ("community", T1, {"visibility": "community"}),
            ("shared-accepted", T1, {"visibility": "shared"}),
            ("shared-pending", T1, {"visibility": "shared"}),
            ("shared-rejected", T1, {"visibility": "shared"}),
            ("hidden", T1, {"visibility": "public", "os_hidden": True}),
            ("t2-own", T2, {"visibility": "private"}),
    ):
        made[name] = db.image_create(context, dict(values, name=name, status="active"))
    for name, status in (("shared-accepted", "accepted"),
                         ("shared-pending", "pending"),
                         ("shared-rejected", "rejected")):
        row = db.image_member_create(T1, {"image_id": made[name]["id"], "member": "t2"})
        db.image_member_update(T1, row["id"], {"status": status})
    return made


def search(db, context, **kwargs):
    return names(db.image_search(context, kwargs))


def test_default_lists_follow_consent(db, world):
    assert search(db, T1) == ["community", "private", "public", "shared-accepted",
                              "shared-pending", "shared-rejected"]
    # Members list a shared image once they accepted it; community images
    # of others only on request.
    assert search(db, T2) == ["public", "shared-accepted", "t2-own"]
    assert search(db, T2, member_status="pending") == ["public", "shared-pending",
                                                       "t2-own"]
    assert search(db, T2, member_status="all") == [
        "public", "shared-accepted", "shared-pending", "shared-rejected", "t2-own"]
    assert search(db, T3) == ["public"]
    assert search(db, ANONYMOUS) == ["public"]


def test_visibility_filters(db, world):
    assert search(db, T2, visibility="community") == ["community"]
    assert search(db, T2, visibility="all") == [
        "community", "public", "shared-accepted", "t2-own"]
    assert search(db, T2, visibility="shared") == ["shared-accepted"]
    assert search(db, T2, visibility="private") == ["t2-own"]
    assert search(db, T1, visibility="shared") == [
        "shared-accepted", "shared-pending", "shared-rejected"]
    assert search(db, T3, visibility="private") == []
    # Admins see everything but other projects' community images.
    assert search(db, ADMIN) == ["private", "public", "shared-accepted",
                                 "shared-pending", "shared-rejected", "t2-own"]
    assert search(db, ADMIN, visibility="community") == ["community"]
    assert len(db.image_search(ADMIN, {"visibility": "all"})) == 7


def test_hidden_images(db, world):
    assert "hidden" not in search(db, T1)
    assert search(db, T1, os_hidden=True) == ["hidden"]
    assert "hidden" in search(db, T1, os_hidden=None)


def test_killed_and_deleted_are_never_listed(db, world):
    db.image_update(T1, world["public"]["id"], {"status": "killed"})
    db.image_destroy(T1, world["private"]["id"])
    assert search(db, T1, visibility="all") == [
        "community", "shared-accepted", "shared-pending", "shared-rejected"]


def test_column_operators(db, world):
    t0 = datetime.datetime(2020, 1, 1)
    for index, name in enumerate(("public", "private", "community")):
        set_columns(db.engine, models.images, world[name]["id"],
                    created_at=t0 + datetime.timedelta(days=index), size=10 * index)
    assert search(db, T1, columns={"name": ("in", ["public", "private", "x"])}) == [
        "private", "public"]
    assert search(db, T1, columns={"created_at": ("gt", t0)}) == [
        "community", "private", "shared-accepted", "shared-pending", "shared-rejected"]
    assert search(db, T1, columns={"created_at": ("lte", t0 + datetime.timedelta(days=1))}) == [
        "private", "public"]
    assert search(db, T1, columns={"created_at": ("eq", t0)}) == ["public"]
    assert "public" not in search(db, T1, columns={"created_at": ("neq", t0)})
    assert search(db, T1, size_min=10, size_max=20) == ["community", "private"]
    assert search(db, T1, columns={"status": ("eq", "queued")}) == []


def test_tags_and_properties(db):
    a = db.image_create(T1, {"name": "a", "tags": ["x", "y", "x"],
                             "properties": {"os": "linux"}})
    db.image_create(T1, {"name": "b", "tags": ["x"]})
    assert a["tags"] == ["x", "y"]
    assert search(db, T1, tags=["x"]) == ["a", "b"]
    assert search(db, T1, tags=["x", "y"]) == ["a"]
    assert search(db, T1, properties={"os": "linux"}) == ["a"]
    assert search(db, T1, properties={"os": "bsd"}) == []
    # A whole list replaces the tags; single tags come and go.
    assert db.image_update(T1, a["id"], {"tags": ["z"]})["tags"] == ["z"]
    db.image_tag_add(T1, a["id"], "w")
    db.image_tag_add(T1, a["id"], "w")
    assert sorted(db.image_get(T1, a["id"])["tags"]) == ["w", "z"]
    db.image_tag_delete(T1, a["id"], "z")
    with pytest.raises(exception.NotFound):
        db.image_tag_delete(T1, a["id"], "z")
    assert db.image_get(T1, a["id"])["tags"] == ["w"]
    with pytest.raises(exception.NotFound):
        db.image_tag_add(T2, a["id"], "mine")
    with pytest.raises(exception.Invalid):
        db.image_create(T1, {"tags": ["t" * 256]})


def test_sort_on_several_keys_and_pages(db):
    for name, size in (("a", 1), ("b", 1), ("c", 2), ("d", 2), ("e", 3)):
        db.image_create(T1, {"name": name, "size": size})
    sort = [("size", "desc"), ("name", "asc")]
    everything = [i["name"] for i in db.image_search(T1, {"sort": sort})]
    assert everything == ["e", "c", "d", "a", "b"]
    pages, marker = [], None
    while True:
        page = db.image_search(T1, {"sort": sort, "limit": 2, "marker": marker})
        if not page:
            break
        pages.append([i["name"] for i in page])
        marker = page[-1]["id"]
    assert pages == [["e", "c"], ["d", "a"], ["b"]]


def test_unknown_or_invisible_marker(db, world):
    with pytest.raises(exception.NotFound):
        db.image_search(T1, {"marker": "00000000-0000-0000-0000-000000000000"})
    with pytest.raises(exception.NotFound):
        db.image_search(T3, {"marker": world["private"]["id"]})
    db.image_destroy(T1, world["public"]["id"])
    with pytest.raises(exception.NotFound):
        db.image_search(ADMIN, {"marker": world["public"]["id"]})


def test_visibility_of_single_images(db, world):
    # Members read shared images in any status, never private ones.
    assert db.image_get(T2, world["shared-rejected"]["id"])
    row = db.image_member_create(T1, {"image_id": world["private"]["id"],
                                      "member": "t2"})
    assert row["status"] == "pending"
    with pytest.raises(exception.ImageNotFound):
        db.image_get(T2, world["private"]["id"])
    # Community images are read by anyone, changed only by their owner.
    assert db.image_get(T3, world["community"]["id"])
    with pytest.raises(exception.Forbidden):
        db.image_update(T3, world["community"]["id"], {"name": "mine"})


def test_v1_is_public_maps_to_visibility(db):
    image = db.image_create(T1, {"is_public": False})
    assert image["visibility"] == "shared" and image["is_public"] is False
    image = db.image_update(T1, image["id"], {"is_public": True})
    assert image["visibility"] == "public" and image["is_public"] is True
    # Back to "not public" through v1: shared, which members can read.
    assert db.image_update(T1, image["id"], {"is_public": False})["visibility"] == "shared"
    private = db.image_create(T1, {"visibility": "private"})
    assert db.image_update(T1, private["id"], {"is_public": False})["visibility"] == "private"
    community = db.image_create(T1, {"visibility": "community"})
    assert community["is_public"] is False
    with pytest.raises(exception.Invalid):
        db.image_create(T1, {"visibility": "everyone"})
