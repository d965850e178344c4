"""image_get_all: visibility, filters, sorting and paging."""

from __future__ import annotations

import datetime
import uuid

import pytest
import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db import api, models

from .helpers import ADMIN, ANONYMOUS, set_columns, tenant

T1 = tenant("t1")
T2 = tenant("t2")


def ids(images):
    return [image["id"] for image in images]


def names(images):
    return sorted(image["name"] for image in images)


@pytest.fixture
def world(db):
    """Images of t1 and t2, public or not, one shared with t2."""
    made = {}
    for name, context, values in (
            ("t1-private", T1, {}),
            ("t1-public", T1, {"is_public": True}),
            ("t1-shared", T1, {}),
            ("t1-unshared", T1, {}),
            ("t2-private", T2, {}),
            ("ownerless", ADMIN, {}),
    ):
        made[name] = db.image_create(context, dict(values, name=name))
    db.image_member_create(T1, {"image_id": made["t1-shared"]["id"],
                                "member": "t2"})
    gone = db.image_member_create(T1, {"image_id": made["t1-unshared"]["id"],
                                       "member": "t2"})
    db.image_member_delete(T1, gone["id"])
    return made


def test_visibility_of_tenants(db, world):
    assert names(db.image_get_all(T1, {})) == [
        "t1-private", "t1-public", "t1-shared", "t1-unshared"]
    assert names(db.image_get_all(T2, {})) == ["t1-public", "t1-shared",
                                               "t2-private"]
    # Non-admins cannot widen or narrow by is_public.
    assert names(db.image_get_all(T2, {"is_public": None})) == [
        "t1-public", "t1-shared", "t2-private"]
    assert names(db.image_get_all(T2, {"is_public": False})) == [
        "t1-public", "t1-shared", "t2-private"]


def test_callers_without_owner_get_no_shared_images(db, world):
    for context in (ANONYMOUS, RequestContext(user="u")):
        assert names(db.image_get_all(context, {})) == ["t1-public"]


def test_admin_visibility(db, world):
    # Without is_public (or with True) an admin is treated as a user.
    assert names(db.image_get_all(ADMIN, {})) == ["t1-public"]
    admin_t2 = tenant("t2", is_admin=True)
    assert names(db.image_get_all(admin_t2, {"is_public": True})) == [
        "t1-public", "t1-shared", "t2-private"]
    assert len(db.image_get_all(ADMIN, {"is_public": None})) == 6
    assert names(db.image_get_all(ADMIN, {"is_public": False})) == [
        "ownerless", "t1-private", "t1-shared", "t1-unshared", "t2-private"]


def test_deleted_and_killed_are_hidden_by_default(db, world):
    db.image_destroy(T1, world["t1-private"]["id"])
    db.image_update(T1, world["t1-shared"]["id"], {"status": "killed"})
    assert names(db.image_get_all(T1, {})) == ["t1-public", "t1-unshared"]
    every = {"is_public": None}
    assert len(db.image_get_all(ADMIN, every)) == 4
    assert names(db.image_get_all(ADMIN, dict(every, deleted=False))) == [
        "ownerless", "t1-public", "t1-unshared", "t2-private"]
    assert names(db.image_get_all(ADMIN, dict(every, deleted=True))) == [
        "t1-private"]


def test_changes_since(db, engine, world):
    old = datetime.datetime(2020, 1, 1)
    for image in world.values():
        set_columns(engine, models.images, image["id"], updated_at=old)
    cutoff = datetime.datetime(2021, 1, 1)
    assert db.image_get_all(T1, {"changes-since": cutoff}) == []
    db.image_destroy(T1, world["t1-private"]["id"])
    db.image_update(T1, world["t1-shared"]["id"], {"status": "killed"})
    changed = db.image_get_all(T1, {"changes-since": cutoff})
    assert names(changed) == ["t1-private", "t1-shared"]
    # Strictly later.
    set_columns(engine, models.images, world["t1-shared"]["id"], updated_at=cutoff)
    assert names(db.image_get_all(T1, {"changes-since": cutoff})) == ["t1-private"]
    aware = cutoff.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert names(db.image_get_all(T1, {"changes-since": aware})) == [
        "t1-private", "t1-shared"]


def test_equality_and_range_filters(db):
    specs = [
        dict(name="a", status="active", disk_format="raw", container_format="bare",
             size=10, min_ram=512, min_disk=1, protected=True),
        dict(name="b", status="queued", disk_format="qcow2", container_format="ovf",
             size=20, min_ram=0, min_disk=0, protected=False),
        dict(name="c", status="active", disk_format="raw", container_format="ovf",
             size=None, min_ram=512, min_disk=0, protected=False),
    ]
    for spec in specs:
        db.image_create(T1, spec)
    cases = [
        ({"name": "a"}, ["a"]), ({"status": "active"}, ["a", "c"]),
        ({"disk_format": "raw"}, ["a", "c"]), ({"container_format": "ovf"}, ["b", "c"]),
        ({"min_ram": 512}, ["a", "c"]), ({"min_ram": "512"}, ["a", "c"]),
        ({"min_disk": 1}, ["a"]), ({"size_min": 10}, ["a", "b"]),
        ({"size_min": 11}, ["b"]), ({"size_max": 10}, ["a"]),
        ({"size_min": 10, "size_max": 20}, ["a", "b"]),
        ({"protected": True}, ["a"]), ({"protected": False}, ["b", "c"]),
        ({"name": "a", "status": "queued"}, []),
        ({"name": None}, ["a", "b", "c"]),
    ]
    for filters, expected in cases:
        assert names(db.image_get_all(T1, filters)) == expected, filters


@pytest.mark.parametrize("filters", [
    {"size_min": "x"}, {"size_max": "1.5"}, {"min_ram": "lots"},
    {"bogus": 1}, {"changes-since": "yesterday"},
])
def test_bad_filter_values(db, filters):
    with pytest.raises(exception.Invalid):
        db.image_get_all(T1, filters)


def test_property_filters(db):
    a = db.image_create(T1, {"name": "a", "properties": {"os": "linux", "arch": "arm"}})
    db.image_create(T1, {"name": "b", "properties": {"os": "linux", "arch": "x86"}})
    db.image_create(T1, {"name": "c", "properties": {"os": "bsd"}})
    assert names(db.image_get_all(T1, {"properties": {"os": "linux"}})) == ["a", "b"]
    assert names(db.image_get_all(
        T1, {"properties": {"os": "linux", "arch": "arm"}})) == ["a"]
    assert db.image_get_all(T1, {"properties": {"os": "linux", "arch": "mips"}}) == []
    db.image_update(T1, a["id"], {"properties": {"os": "linux"}}, purge_props=True)
    assert db.image_get_all(T1, {"properties": {"arch": "arm"}}) == []


def test_image_dicts_carry_properties_and_locations(db):
    made = db.image_create(T1, {"name": "a", "properties": {"k": "v"},
                                "location": "file:///a"})
    [listed] = db.image_get_all(T1, {})
    assert listed == made


def test_deleted_locations_listed_when_showing_deleted(db):
    image = db.image_create(T1, {"location": "file:///a"})
    loc = image["location_data"][0]
    db.image_update(T1, image["id"], {"status": "pending_delete", "location_data": [
        dict(loc, status="pending_delete")]})
    db.image_destroy(T1, image["id"])
    [listed] = db.image_get_all(ADMIN, {"is_public": None, "deleted": True,
                                        "status": "pending_delete"})
    assert [(entry["url"], entry["status"]) for entry in listed["location_data"]] == [
        ("file:///a", "pending_delete")]


# --- sorting and paging ------------------------------------------------------------


SORTABLE = ("name", "status", "container_format", "disk_format", "size",
            "id", "created_at", "updated_at")


@pytest.fixture
def sortable(db, engine):
    """Images with ties in created_at, null names and sizes."""
    tie = datetime.datetime(2024, 5, 1, 12, 0, 0)
    specs = [
        ("b", "raw", "bare", 5, "active"), (None, None, None, None, "queued"),
        ("a", "qcow2", "bare", 5, "active"), ("b", "raw", "ovf", None, "saving"),
        ("c", "iso", None, 0, "active"), ("a", None, "bare", 100, "queued"),
        (None, "raw", "ovf", 7, "active"),
    ]
    made = []
    for index, (name, disk, container, size, status) in enumerate(specs):
        image = db.image_create(T1, {"name": name, "disk_format": disk,
                                     "container_format": container,
                                     "size": size, "status": status})
        created = tie if index % 2 else tie + datetime.timedelta(seconds=index)
        set_columns(engine, models.images, image["id"], created_at=created,
                    updated_at=created + datetime.timedelta(minutes=index % 3))
        made.append(image["id"])
    return db.image_get_all(T1, {"is_public": None})


def _expected(images, key, direction):
    def value(image):
        if image[key] is None:
            return -1 if key == "size" else ""
        return image[key]
    return ids(sorted(images, key=lambda i: (value(i), i["created_at"], i["id"]),
                      reverse=direction == "desc"))


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("key", SORTABLE)
def test_sort_and_page(db, sortable, key, direction):
    expected = _expected(sortable, key, direction)
    assert ids(db.image_get_all(T1, {}, sort_key=key, sort_dir=direction)) == expected
    for page_size in (1, 2, 3):
        seen, marker = [], None
        while True:
            page = db.image_get_all(T1, {}, marker=marker, limit=page_size,
                                    sort_key=key, sort_dir=direction)
            if not page:
                break
            assert len(page) <= page_size
            seen.extend(ids(page))
            marker = page[-1]["id"]
        assert seen == expected, (key, direction, page_size)


def test_default_order_is_newest_first(db, engine):
    first = db.image_create(T1, {"name": "first"})
    second = db.image_create(T1, {"name": "second"})
    set_columns(engine, models.images, first["id"],
                created_at=datetime.datetime(2020, 1, 1))
    assert ids(db.image_get_all(T1, {})) == [second["id"], first["id"]]


def test_limit_zero_and_none(db, sortable):
    assert db.image_get_all(T1, {}, limit=0) == []
    assert len(db.image_get_all(T1, {}, limit=None)) == len(sortable)


def test_bad_sort_arguments(db):
    with pytest.raises(exception.InvalidSortKey):
        db.image_get_all(T1, {}, sort_key="bogus")
    with pytest.raises(exception.InvalidSortDir):
        db.image_get_all(T1, {}, sort_dir="up")


def test_marker_must_be_visible(db, world):
    with pytest.raises(exception.NotFound):
        db.image_get_all(T1, {}, marker=str(uuid.uuid4()))
    with pytest.raises(exception.NotFound):
        db.image_get_all(T1, {}, marker=world["t2-private"]["id"])
    with pytest.raises(exception.NotFound):
        db.image_get_all(T1, {}, marker="x" * 40)


def test_deleted_marker_needs_showing_deleted(db, engine, world):
    victim = world["t1-private"]
    db.image_destroy(T1, victim["id"])
    with pytest.raises(exception.NotFound):
        db.image_get_all(T1, {}, marker=victim["id"])
    since = datetime.datetime(2000, 1, 1)
    everything = db.image_get_all(T1, {"changes-since": since})
    position = ids(everything).index(victim["id"])
    rest = db.image_get_all(T1, {"changes-since": since}, marker=victim["id"])
    assert ids(rest) == ids(everything)[position + 1:]


def test_page_costs_a_constant_number_of_queries(db, engine):
    for index in range(30):
        db.image_create(T1, {"name": f"n{index}",
                             "properties": {"a": "1", "b": "2"},
                             "location_data": [{"url": f"file:///{index}",
                                                "metadata": {}}]})
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    marker = db.image_get_all(T1, {}, limit=1)[0]["id"]
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        page = db.image_get_all(T1, {"properties": {"a": "1"}}, marker=marker,
                                limit=25)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(page) == 25
    assert all(image["properties"] == {"a": "1", "b": "2"} for image in page)
    assert all(len(image["location_data"]) == 1 for image in page)
    # marker row + its membership check is skipped for owners; marker sort
    # values; the page; properties; tags; locations.
    assert len(statements) <= 6, statements


def test_sort_keys_cover_the_registry_set():
    assert set(SORTABLE) <= set(api.SORT_KEYS)
