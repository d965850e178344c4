"""The prebuilt statements: write paths answer with exactly what a read
would give (from RETURNING, or by reading back where a database has none),
the hot paths cost a fixed number of statements, and cached list
statements bind each call's own values."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.db import api, listing

from .helpers import ADMIN, tenant

T1 = tenant("t1")
T2 = tenant("t2")
T3 = tenant("t3")
# Sees deleted rows; otherwise the same caller as T1.
T1_DELETED = tenant("t1", show_deleted=True)


@pytest.fixture(params=["returning", "reading back"])
def wdb(request: Any, engine: sa.engine.Engine) -> api.Database:
    db = api.Database(engine)
    if request.param == "reading back":
        db._returning = False  # as on a database without RETURNING
    return db


def same(answer: dict[str, Any], read: dict[str, Any]) -> None:
    """Equal, keys and properties in the same order too."""
    assert answer == read
    assert list(answer) == list(read)
    assert list(answer["properties"]) == list(read["properties"])


def test_create_answers_as_a_read(wdb):
    image = wdb.image_create(T1, {
        "name": "n", "size": 5, "status": "queued",
        "properties": {"b": 2, "a": None, "c": "x"},
        "location": "file:///z",
        "location_data": [
            {"url": "file:///a", "metadata": {"k": [1, {"n": None}]}},
            {"url": "file:///gone", "metadata": {}, "status": "pending_delete"},
            {"url": "file:///z", "metadata": {"from": "data"}}]})
    assert image["properties"] == {"b": "2", "a": None, "c": "x"}
    assert [loc["url"] for loc in image["location_data"]] == ["file:///z",
                                                              "file:///a"]
    same(image, wdb.image_get(T1, image["id"]))


def test_create_bare_answers_as_a_read(wdb):
    image = wdb.image_create(ADMIN, {})
    same(image, wdb.image_get(ADMIN, image["id"]))


def test_create_location_id_of_an_entry_inserted_before(wdb):
    # A fresh database numbers location rows from 1: the second entry
    # updates the row the first one inserted.
    image = wdb.image_create(T1, {"location_data": [
        {"url": "file:///a", "metadata": {}},
        {"url": "file:///b", "id": 1, "metadata": {}, "status": "pending_delete"}]})
    assert image["location_data"] == []
    same(image, wdb.image_get(T1, image["id"]))
    shown = wdb.image_get(T1, image["id"], force_show_deleted=True)
    assert [(loc["id"], loc["url"]) for loc in shown["location_data"]] == [
        (1, "file:///b")]


def test_create_deactivated_hides_locations(wdb):
    image = wdb.image_create(T1, {"status": "deactivated",
                                  "location": "file:///a"})
    assert image["location"] is None and image["location_data"] == []
    same(image, wdb.image_get(T1, image["id"]))
    assert len(wdb.image_get(ADMIN, image["id"])["location_data"]) == 1


def test_update_answers_as_a_read(wdb):
    image = wdb.image_create(T1, {"properties": {"p": "1", "q": "2"},
                                  "location_data": [
                                      {"url": "file:///a", "metadata": {}},
                                      {"url": "file:///b", "metadata": {}}]})
    a, b = (loc["id"] for loc in image["location_data"])
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"name": "renamed"}, {}),
        ({"properties": {"r": "3", "p": "again"}}, {}),
        ({"properties": {"q": "kept"}}, {"purge_props": True}),
        # An id listed twice: its row as last written.
        ({"location_data": [
            {"id": b, "url": "file:///b2", "metadata": {"m": 1}},
            {"url": "file:///new", "metadata": {}},
            {"id": a, "url": "file:///a2", "metadata": {}},
            {"id": b, "url": "file:///b3", "metadata": {}, "status": "active"}]},
         {}),
        ({"location": "file:///only"}, {}),
        ({"status": "saving"}, {"from_state": "active"}),
        # glance-api's delete: status and an empty location list.
        ({"status": "deleted", "location_data": []}, {}),
    ]
    for values, options in steps:
        answer = wdb.image_update(T1, image["id"], values, **options)
        same(answer, wdb.image_get(T1, image["id"]))


def test_update_lost_swap_changes_nothing(wdb):
    image = wdb.image_create(T1, {"status": "saving", "properties": {"p": "1"}})
    with pytest.raises(exception.StatusConflict):
        wdb.image_update(T1, image["id"], {"status": "active",
                                           "properties": {"p": "2"}},
                         from_state="queued")
    same(image, wdb.image_get(T1, image["id"]))


def test_destroy_answers_as_a_read(wdb):
    image = wdb.image_create(T1, {"properties": {"p": "1"},
                                  "location": "file:///a"})
    wdb.image_member_create(T1, {"image_id": image["id"], "member": "t2"})
    deleted = wdb.image_destroy(T1, image["id"])
    assert deleted["deleted"] is True
    assert deleted["properties"] == {} and deleted["location_data"] == []
    same(deleted, wdb.image_get(T1_DELETED, image["id"]))


# --- statements per call ------------------------------------------------------


@pytest.fixture
def statements(engine: sa.engine.Engine) -> Iterator[list[str]]:
    """The statements on image tables sent to the database (not transaction
    control or locking)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "image" in statement:
            sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    yield sent
    sa.event.remove(engine, "before_cursor_execute", record)


def test_hot_paths_statement_counts(db, engine, statements):
    # SQLite >= 3.35 (Python 3.11's) and PostgreSQL both have RETURNING;
    # the read-back path is covered by the equivalence tests above.
    assert db._returning
    image = db.image_create(T1, {"name": "x", "status": "queued"})
    assert len(statements) == 2, statements  # id taken?; INSERT
    statements.clear()
    db.image_get(T1, image["id"])
    assert len(statements) == 3, statements  # row; properties; locations
    statements.clear()
    db.image_update(T1, image["id"], {"status": "deleted", "location_data": []})
    # row; UPDATE; locations not listed; properties
    assert len(statements) == 4, statements
    statements.clear()
    db.image_destroy(T1, image["id"])
    assert len(statements) == 6, statements  # row; UPDATE; four child tables


# --- cached list statements -------------------------------------------------------


def names(images: list[dict[str, Any]]) -> list[str]:
    return sorted(image["name"] for image in images)


def test_list_binds_caller_and_owner_filter_apart(db):
    db.image_create(T2, {"name": "t2-private"})
    db.image_create(T2, {"name": "t2-public", "is_public": True})
    db.image_create(T3, {"name": "t3-own"})
    assert names(db.image_get_all(T3, {"owner": "t2"})) == ["t2-public"]
    # The same statement with other values.
    assert names(db.image_get_all(T2, {"owner": "t2"})) == ["t2-private",
                                                             "t2-public"]
    assert names(db.image_get_all(T3, {"owner": "t3"})) == ["t3-own"]


def test_list_statement_cache_is_bounded(db, monkeypatch):
    monkeypatch.setattr(listing, "MAX_CACHED_QUERIES", 2)
    db.image_create(T1, {"name": "a", "properties": {"p": "1", "q": None}})
    db.image_create(T1, {"name": "b", "properties": {"p": "2"}})
    for filters, expected in (
            ({}, ["a", "b"]),
            ({"name": "a"}, ["a"]),
            ({"properties": {"p": "2"}}, ["b"]),
            ({"properties": {"q": None}}, ["a"]),
            ({"properties": {"p": "1", "q": None}}, ["a"]),
            ({"name": "b"}, ["b"]),
            ({}, ["a", "b"])):
        assert names(db.image_get_all(T1, filters)) == expected, filters
        assert len(db._list_queries) <= 2


def test_search_statements_are_cached_by_shape_and_bind_values(db, monkeypatch):
    from glance_clone.db import search
    for name, owner in (("a", T1), ("b", T1), ("c", T2)):
        db.image_create(owner, {"name": name, "status": "active", "visibility": "shared"})
    one = {"columns": {"name": ["in", ["a", "c"]]}, "limit": 5}
    assert names(db.image_search(T1, one)) == ["a"]
    # Other values, other callers, the same shape: one statement.
    assert names(db.image_search(T2, one)) == ["c"]
    assert names(db.image_search(T1, dict(one, columns={"name": ["in", ["b"]]}))) == ["b"]
    assert len(db._search_queries) == 1
    page = db.image_search(T1, {"sort": [["name", "asc"]], "limit": 1})
    after = db.image_search(T1, {"sort": [["name", "asc"]], "limit": 1,
                                 "marker": page[0]["id"]})
    assert [image["name"] for image in page + after] == ["a", "b"]
    assert len(db._search_queries) == 3
    monkeypatch.setattr(search, "MAX_CACHED_SEARCHES", 3)
    assert names(db.image_search(ADMIN, {"visibility": "all"})) == ["a", "b", "c"]
    assert len(db._search_queries) == 1
