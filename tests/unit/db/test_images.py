"""Create, get, update and destroy of single images."""

from __future__ import annotations

import threading
import uuid

import pytest

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db import api, models, session

from .helpers import ADMIN, ANONYMOUS, rows, tenant

T1 = tenant("t1")
T2 = tenant("t2")


def test_create_defaults(db):
    image = db.image_create(T1, {"name": "cirros"})
    assert str(uuid.UUID(image["id"])) == image["id"]
    assert image["status"] == "active"
    assert image["owner"] == "t1"
    assert image["is_public"] is False and image["protected"] is False
    assert image["min_disk"] == 0 and image["min_ram"] == 0
    assert image["size"] is None and image["checksum"] is None
    assert image["deleted"] is False and image["deleted_at"] is None
    assert image["created_at"] == image["updated_at"]
    assert image["created_at"].tzinfo is None
    assert image["properties"] == {}
    assert image["location"] is None and image["location_data"] == []
    assert db.image_get(T1, image["id"]) == image


def test_create_all_fields(db):
    image_id = str(uuid.uuid4())
    image = db.image_create(T1, {
        "id": image_id, "name": "n", "status": "queued", "size": 2 ** 40,
        "virtual_size": 5, "disk_format": "raw", "container_format": "bare",
        "checksum": "0" * 32, "min_disk": 3, "min_ram": 512,
        "is_public": True, "protected": True, "unknown": "ignored",
        "created_at": "ignored", "deleted": True,
        "properties": {"arch": "x86_64", "empty": None}})
    assert image["id"] == image_id
    assert image["size"] == 2 ** 40 and image["virtual_size"] == 5
    assert (image["status"], image["disk_format"], image["container_format"]) == (
        "queued", "raw", "bare")
    assert image["is_public"] is True and image["protected"] is True
    assert image["deleted"] is False
    assert image["properties"] == {"arch": "x86_64", "empty": None}


def test_create_owner(db):
    assert db.image_create(T1, {"owner": "x"})["owner"] == "t1"
    assert db.image_create(ADMIN, {"owner": "x"})["owner"] == "x"
    assert db.image_create(ADMIN, {})["owner"] is None
    assert db.image_create(ADMIN, {"owner": ""})["owner"] is None


def test_create_duplicate_id(db):
    image = db.image_create(T1, {})
    with pytest.raises(exception.Duplicate) as err:
        db.image_create(T2, {"id": image["id"]})
    assert str(err.value) == f"Image with identifier {image['id']} already exists!"
    db.image_destroy(T1, image["id"])
    with pytest.raises(exception.Duplicate):
        db.image_create(ADMIN, {"id": image["id"]})


@pytest.mark.parametrize("values", [
    {"status": "bogus"}, {"status": None}, {"min_disk": 2 ** 31},
    {"min_ram": "many"}, {"size": "big"}, {"id": "x" * 37},
    {"location_data": [{"url": "file:///a", "status": "lost"}]},
    {"location_data": [{"metadata": {}}]},
    {"location_data": [{"url": "file:///a", "metadata": ["not", "a", "dict"]}]},
    {"location_data": [{"url": "file:///a", "id": "one"}]},
    {"size": 2 ** 63},
])
def test_create_invalid(db, engine, values):
    with pytest.raises(exception.Invalid):
        db.image_create(T1, values)
    assert rows(engine, models.images) == []


def test_min_disk_range_message(db):
    with pytest.raises(exception.Invalid) as err:
        db.image_create(T1, {"min_disk": 2147483648})
    assert str(err.value) == "'min_disk' value out of range, must not exceed 2147483647"


# --- visibility ------------------------------------------------------------


@pytest.fixture
def private(db):
    return db.image_create(T1, {"name": "private"})


def test_get_visibility(db, private):
    public = db.image_create(T1, {"is_public": True})
    ownerless = db.image_create(ADMIN, {})
    member = tenant("m")
    db.image_member_create(T1, {"image_id": private["id"], "member": "m"})
    for context, visible in ((ADMIN, True), (T1, True), (T2, False),
                             (member, True), (ANONYMOUS, False),
                             (RequestContext(), False)):
        if visible:
            assert db.image_get(context, private["id"])["id"] == private["id"]
        else:
            with pytest.raises(exception.ImageNotFound) as err:
                db.image_get(context, private["id"])
            assert str(err.value) == "Image not found"
        for everyone in (public, ownerless):
            assert db.image_get(context, everyone["id"])["id"] == everyone["id"]


def test_get_owner_is_user(db):
    by_user = RequestContext(user="alice", tenant="t9", owner_is_tenant=False)
    image = db.image_create(by_user, {})
    assert image["owner"] == "alice"
    db.image_get(by_user, image["id"])
    with pytest.raises(exception.ImageNotFound):
        db.image_get(tenant("t9"), image["id"])


def test_deleted_membership_hides(db, private):
    row = db.image_member_create(T1, {"image_id": private["id"], "member": "m"})
    db.image_member_delete(T1, row["id"])
    with pytest.raises(exception.ImageNotFound):
        db.image_get(tenant("m"), private["id"])


def test_get_unknown_and_long_ids(db):
    with pytest.raises(exception.ImageNotFound):
        db.image_get(ADMIN, str(uuid.uuid4()))
    with pytest.raises(exception.ImageNotFound):
        db.image_get(ADMIN, "a" * 37)


def test_get_deleted(db, private):
    db.image_destroy(T1, private["id"])
    with pytest.raises(exception.ImageNotFound):
        db.image_get(T1, private["id"])
    assert db.image_get(ADMIN, private["id"])["deleted"] is True
    assert db.image_get(tenant("t1", show_deleted=True), private["id"])["deleted"]
    assert db.image_get(T1, private["id"], force_show_deleted=True)["deleted"]
    # Still invisible to others, deleted or not.
    with pytest.raises(exception.ImageNotFound):
        db.image_get(T2, private["id"], force_show_deleted=True)


# --- update ------------------------------------------------------------------


def test_update_fields(db, private):
    updated = db.image_update(T1, private["id"], {
        "name": "new", "size": 10, "checksum": "c" * 32, "status": "saving",
        "owner": "stolen", "created_at": "x", "updated_at": "x",
        "deleted": True, "deleted_at": "x", "id": "other", "bogus": 1})
    assert updated["name"] == "new" and updated["size"] == 10
    assert updated["status"] == "saving"
    assert updated["owner"] == "t1"
    assert updated["id"] == private["id"]
    assert updated["deleted"] is False and updated["deleted_at"] is None
    assert updated["created_at"] == private["created_at"]
    assert updated["updated_at"] > private["updated_at"]
    assert db.image_get(T1, private["id"]) == updated


def test_update_admin_sets_owner(db, private):
    assert db.image_update(ADMIN, private["id"], {"owner": "t2"})["owner"] == "t2"
    db.image_get(T2, private["id"])


def test_update_touches_updated_at_for_properties_only(db, private):
    updated = db.image_update(T1, private["id"], {"properties": {"a": "1"}})
    assert updated["updated_at"] > private["updated_at"]
    assert updated["properties"] == {"a": "1"}


def test_update_authorization(db, private):
    public = db.image_create(T1, {"is_public": True})
    ownerless = db.image_create(ADMIN, {"is_public": False})
    db.image_member_create(T1, {"image_id": private["id"], "member": "m",
                                "can_share": True})
    with pytest.raises(exception.Forbidden):
        db.image_update(T2, public["id"], {"name": "x"})
    with pytest.raises(exception.Forbidden):
        db.image_destroy(T2, public["id"])
    for context in (T2, tenant("m")):
        with pytest.raises(exception.ImageNotFound):
            db.image_update(context, private["id"], {"name": "x"})
        with pytest.raises(exception.ImageNotFound):
            db.image_destroy(context, private["id"])
    with pytest.raises(exception.ImageNotFound):
        db.image_update(T2, ownerless["id"], {"name": "x"})
    with pytest.raises(exception.ImageNotFound):
        db.image_update(T1, str(uuid.uuid4()), {"name": "x"})
    assert db.image_update(ADMIN, public["id"], {"name": "a"})["name"] == "a"
    assert db.image_update(ADMIN, ownerless["id"], {"name": "b"})["name"] == "b"
    assert db.image_get(T1, private["id"])["name"] == "private"


def test_update_deleted_image(db, private):
    db.image_destroy(T1, private["id"])
    with pytest.raises(exception.ImageNotFound):
        db.image_update(T1, private["id"], {"name": "x"})
    # The scrubber (admin) finishes deleted images.
    updated = db.image_update(ADMIN, private["id"], {"status": "deleted"})
    assert updated["status"] == "deleted" and updated["deleted"] is True


def test_update_from_state(db, private):
    db.image_update(T1, private["id"], {"status": "saving"})
    with pytest.raises(exception.StatusConflict) as err:
        db.image_update(T1, private["id"], {"status": "active", "name": "x",
                                            "properties": {"p": "1"}},
                        from_state="queued")
    assert str(err.value) == "Image operation conflicts"
    image = db.image_get(T1, private["id"])
    assert image["status"] == "saving" and image["name"] == "private"
    assert image["properties"] == {}
    updated = db.image_update(T1, private["id"], {"status": "active"},
                              from_state="saving")
    assert updated["status"] == "active"


def test_update_compares_and_removes_named_properties(db, private):
    db.image_update(T1, private["id"], {"properties": {"lock": "t1", "p": "1"}})
    for expected in ({"lock": "t2"}, {"lock": None}, {"gone": "x"}):
        with pytest.raises(exception.StatusConflict):
            db.image_update(T1, private["id"], {"name": "x"}, properties_from=expected,
                            remove_properties=["lock"])
    image = db.image_get(T1, private["id"])
    assert image["name"] == "private" and image["properties"] == {"lock": "t1", "p": "1"}
    # As read: the named property goes, the others stay (no purge).
    updated = db.image_update(T1, private["id"], {"properties": {"q": "2"}},
                              properties_from={"lock": "t1", "gone": None},
                              remove_properties=["lock", "gone"])
    assert updated["properties"] == {"p": "1", "q": "2"}
    assert db.image_get(T1, private["id"])["properties"] == {"p": "1", "q": "2"}


def _race(dbs, image_id, targets):
    """Each database moves the image from 'saving' to its target at once."""
    barrier = threading.Barrier(len(dbs))
    outcomes: list[object] = [None] * len(dbs)

    def race(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            outcomes[index] = dbs[index].image_update(
                T1, image_id, {"status": targets[index]},
                from_state="saving")["status"]
        except exception.StatusConflict as err:
            outcomes[index] = err

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(dbs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_compare_and_swap_under_concurrency(db_url):
    """Two writers (separate engines) race from 'saving': one wins."""
    engines = [session.create_engine(db_url) for _ in range(2)]
    try:
        dbs = [api.Database(engine) for engine in engines]
        for attempt in range(10):
            image = dbs[0].image_create(T1, {"status": "saving"})
            outcomes = _race(dbs, image["id"], ("active", "killed"))
            winners = [o for o in outcomes if isinstance(o, str)]
            losers = [o for o in outcomes
                      if isinstance(o, exception.StatusConflict)]
            assert len(winners) == 1 and len(losers) == 1, (attempt, outcomes)
            assert dbs[0].image_get(T1, image["id"])["status"] == winners[0]
    finally:
        for engine in engines:
            engine.dispose()


# --- properties ------------------------------------------------------------------


def test_properties_merge_purge_and_revive(db, engine, private):
    image_id = private["id"]
    db.image_update(T1, image_id, {"properties": {"a": "1", "b": "2"}})
    merged = db.image_update(T1, image_id, {"properties": {"b": "3", "c": "4"}})
    assert merged["properties"] == {"a": "1", "b": "3", "c": "4"}
    purged = db.image_update(T1, image_id, {"properties": {"c": "5"}},
                             purge_props=True)
    assert purged["properties"] == {"c": "5"}
    stored = {r["name"]: r for r in rows(engine, models.image_properties)}
    assert stored["a"]["deleted"] and stored["a"]["deleted_at"] is not None
    assert not stored["c"]["deleted"]
    revived = db.image_update(T1, image_id, {"properties": {"a": "again"}})
    assert revived["properties"] == {"a": "again", "c": "5"}
    after = {r["name"]: r for r in rows(engine, models.image_properties)}
    assert after["a"]["id"] == stored["a"]["id"]
    assert not after["a"]["deleted"] and after["a"]["deleted_at"] is None
    assert len(after) == 3
    # Purging without properties in the body removes them all.
    assert db.image_update(T1, image_id, {}, purge_props=True)["properties"] == {}


def test_update_is_all_or_nothing(db, private):
    db.image_update(T1, private["id"], {"properties": {"keep": "1"}})
    with pytest.raises(exception.NotFound):
        db.image_update(T1, private["id"], {
            "name": "changed", "properties": {"new": "x"},
            "location_data": [{"id": 9999, "url": "file:///a"}]},
            purge_props=True)
    image = db.image_get(T1, private["id"])
    assert image["name"] == "private"
    assert image["properties"] == {"keep": "1"}
    assert image["location_data"] == []


# --- locations ------------------------------------------------------------------


def _urls(image):
    return [(loc["url"], loc["status"]) for loc in image["location_data"]]


def test_create_with_location(db):
    image = db.image_create(T1, {"location": "file:///a"})
    assert image["location"] == "file:///a"
    assert image["location_data"] == [{"id": image["location_data"][0]["id"],
                                       "url": "file:///a", "metadata": {},
                                       "status": "active"}]


def test_location_merge_by_url(db):
    image = db.image_create(T1, {
        "location": "file:///b",
        "location_data": [
            {"url": "file:///a", "metadata": {"k": "v"}, "status": "active"},
            {"url": "file:///b", "metadata": {"from": "data"}},
        ]})
    assert [(loc["url"], loc["metadata"]) for loc in image["location_data"]] == [
        ("file:///b", {"from": "data"}), ("file:///a", {"k": "v"})]
    assert image["location"] == "file:///b"


def test_location_list_is_authoritative(db, engine):
    image = db.image_create(T1, {"location_data": [
        {"url": "file:///a", "metadata": {}}, {"url": "file:///b", "metadata": {}},
        {"url": "file:///c", "metadata": {}}]})
    a, b, c = (loc["id"] for loc in image["location_data"])
    # Neither key: untouched.
    assert len(db.image_update(T1, image["id"], {"name": "x"})["location_data"]) == 3
    updated = db.image_update(T1, image["id"], {"location_data": [
        {"id": a, "url": "file:///a2", "metadata": {"m": 1}, "status": "active"},
        {"id": b, "url": "file:///b", "metadata": {}, "status": "pending_delete"},
        {"url": "file:///d", "metadata": {}, "status": "active"}]})
    assert _urls(updated) == [("file:///a2", "active"), ("file:///d", "active")]
    assert updated["location_data"][0]["metadata"] == {"m": 1}
    stored = {r["id"]: r for r in rows(engine, models.image_locations)}
    assert stored[b]["status"] == "pending_delete" and stored[b]["deleted"]
    assert stored[b]["deleted_at"] is not None
    assert stored[c]["status"] == "deleted" and stored[c]["deleted"]
    assert not stored[a]["deleted"]
    # A read that shows deleted rows also shows deleted locations.
    shown = db.image_get(T1, image["id"], force_show_deleted=True)
    assert _urls(shown) == [("file:///a2", "active"), ("file:///b", "pending_delete"),
                            ("file:///c", "deleted"), ("file:///d", "active")]


def test_location_only_url_keeps_nothing_else(db):
    image = db.image_create(T1, {"location_data": [
        {"url": "file:///a", "metadata": {}}, {"url": "file:///b", "metadata": {}}]})
    updated = db.image_update(T1, image["id"], {"location": "file:///z"})
    assert _urls(updated) == [("file:///z", "active")]
    assert db.image_update(T1, image["id"], {"location_data": []})["location_data"] == []


def test_location_of_other_image_is_not_found(db):
    first = db.image_create(T1, {"location": "file:///a"})
    second = db.image_create(T1, {})
    loc_id = first["location_data"][0]["id"]
    with pytest.raises(exception.NotFound):
        db.image_update(T1, second["id"], {"location_data": [
            {"id": loc_id, "url": "file:///a", "metadata": {}}]})


def test_first_active_location(db):
    image = db.image_create(T1, {"location_data": [
        {"url": "file:///gone", "metadata": {}, "status": "pending_delete"},
        {"url": "file:///here", "metadata": {}, "status": "active"}]})
    assert image["location"] == "file:///here"
    assert _urls(image) == [("file:///here", "active")]


def test_deactivated_hides_locations_from_non_admins(db):
    image = db.image_create(T1, {"location": "file:///a", "is_public": True})
    db.image_update(ADMIN, image["id"], {"status": "deactivated"})
    hidden = db.image_get(T1, image["id"])
    assert hidden["location"] is None and hidden["location_data"] == []
    shown = db.image_get(ADMIN, image["id"])
    assert shown["location"] == "file:///a" and len(shown["location_data"]) == 1


# --- destroy ------------------------------------------------------------------------


def test_destroy_soft_deletes_everything(db, engine):
    image = db.image_create(T1, {"status": "active", "location": "file:///a",
                                 "properties": {"p": "1"}})
    db.image_member_create(T1, {"image_id": image["id"], "member": "m"})
    with engine.begin() as connection:
        connection.execute(models.image_tags.insert().values(
            image_id=image["id"], value="tag", created_at=image["created_at"],
            deleted=False))
    deleted = db.image_destroy(T1, image["id"])
    assert deleted["deleted"] is True and deleted["deleted_at"] is not None
    assert deleted["status"] == "active"
    assert deleted["updated_at"] == deleted["deleted_at"]
    assert deleted["properties"] == {} and deleted["location_data"] == []
    for table in (models.image_properties, models.image_members,
                  models.image_tags, models.image_locations):
        stored = rows(engine, table)
        assert stored and all(r["deleted"] for r in stored), table.name
        assert all(r["deleted_at"] == deleted["deleted_at"] for r in stored)
    assert rows(engine, models.image_locations)[0]["status"] == "deleted"
    assert rows(engine, models.images)[0]["deleted"]


# --- read-only -------------------------------------------------------------------------


def test_read_only_context_refuses_writes(db, engine, private):
    reader = tenant("t1", read_only=True)
    calls = [
        lambda: db.image_create(reader, {}),
        lambda: db.image_update(reader, private["id"], {"name": "x"}),
        lambda: db.image_destroy(reader, private["id"]),
        lambda: db.image_member_create(reader, {"image_id": private["id"],
                                                "member": "m"}),
        lambda: db.image_member_update(reader, 1, {"can_share": True}),
        lambda: db.image_member_delete(reader, 1),
        lambda: db.image_members_replace(reader, private["id"], []),
    ]
    for call in calls:
        with pytest.raises(exception.ReadOnly):
            call()
    assert len(rows(engine, models.images)) == 1
    assert rows(engine, models.image_members) == []
    assert db.image_get(reader, private["id"])["name"] == "private"
