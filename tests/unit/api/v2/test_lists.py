"""v2 lists: filters, sorting, paging links, schemas."""

from __future__ import annotations

import pytest

from glance_clone.api.v2 import list_params

from .conftest import ADMIN, V2


@pytest.fixture
def listed(v2: V2) -> V2:
    for name, extra in (("a", {"tags": ["x"], "os": "linux"}), ("b", {"tags": ["x", "y"]}),
                        ("c", {"visibility": "private"}), ("d", {"os_hidden": True})):
        v2.create(name=name, disk_format="raw", container_format="bare", **extra)
    v2.create(name="comm", visibility="community", caller=ADMIN)
    return v2


def test_filters(listed: V2) -> None:
    v2 = listed
    assert v2.names() == ["a", "b", "c"]
    assert v2.names("?name=in:a,c") == ["a", "c"]
    assert v2.names('?name=in:"a",b') == ["a", "b"]
    assert v2.names("?name=eq:b") == ["b"]
    assert v2.names("?tag=x&tag=y") == ["b"]
    assert v2.names("?os=linux") == ["a"]
    assert v2.names("?visibility=private") == ["c"]
    assert v2.names("?os_hidden=true") == ["d"]
    assert v2.names("?os_hidden=True") == ["d"]
    assert v2.names("?os_hidden=False") == ["a", "b", "c"]
    assert v2.names("?visibility=community") == ["comm"]
    assert v2.names("?visibility=all") == ["a", "b", "c", "comm"]
    assert v2.names("?status=in:queued,saving") == ["a", "b", "c"]
    assert v2.names("?created_at=gt:2000-01-01T00:00:00Z") == ["a", "b", "c"]
    assert v2.names("?updated_at=lt:2000-01-01T00:00:00Z") == []
    assert v2.names("?size_min=1") == []


def test_integer_column_ranges(v2: V2) -> None:
    """``<column>_min`` / ``<column>_max``: inclusive, on every integer column."""
    for name, ram, disk in (("small", 1, 10), ("mid", 5, 20), ("big", 9, 30)):
        v2.create(name=name, min_ram=ram, min_disk=disk)
    assert v2.names("?min_ram_min=5") == ["big", "mid"]
    assert v2.names("?min_ram_max=5") == ["mid", "small"]
    assert v2.names("?min_ram_min=2&min_disk_max=20") == ["mid"]
    assert v2.names("?min_disk_min=31") == []
    assert v2.names("?virtual_size_max=0") == []
    for query in ("?min_ram_min=x", "?min_disk_max=-1", "?virtual_size_min=1.5"):
        res = v2.call("GET", "/images" + query)
        assert res.status_int == 400, query
        assert "is not a non-negative integer" in res.text


@pytest.mark.parametrize("query", [
    "?visibility=everyone", "?member_status=maybe", "?os_hidden=yes",
    "?protected=False", "?created_at=after:2020-01-01", "?created_at=gt:yesterday",
    "?name=gt:a", "?size_min=big", "?size_max=-1", "?size=gt:5", "?size=eq:5",
    "?min_ram=lt:2", "?limit=-1", "?limit=x", "?sort=size:up",
    "?sort=location:asc", "?sort=name&sort_key=name", "?sort_key=name&sort_key=id"
    "&sort_dir=asc&sort_dir=desc&sort_dir=asc", "?changes-since=2020-01-01",
    "?marker=00000000-0000-0000-0000-000000000000", '?name=in:"a',
])
def test_bad_queries(listed: V2, query) -> None:
    res = listed.call("GET", "/images" + query)
    assert res.status_int == 400, (query, res.text)


def test_sort_and_pages(listed: V2) -> None:
    v2 = listed
    res = v2.call("GET", "/images?sort=name:desc&limit=2")
    body = res.json
    assert [i["name"] for i in body["images"]] == ["c", "b"]
    assert body["first"] == "/v2/images?sort=name%3Adesc&limit=2"
    assert body["schema"] == "/v2/schemas/images"
    page = v2.call("GET", body["next"][len("/v2"):]).json
    assert [i["name"] for i in page["images"]] == ["a"]
    assert "next" not in page
    legacy = v2.call("GET", "/images?sort_key=name&sort_dir=asc").json
    assert [i["name"] for i in legacy["images"]] == ["a", "b", "c"]


@pytest.mark.parametrize("query, sort", [
    ([], [["created_at", "desc"], ["id", "desc"]]),
    ([("sort", "name:asc")], [["name", "asc"], ["created_at", "asc"], ["id", "asc"]]),
    ([("sort", "name:asc,size:asc")],
     [["name", "asc"], ["size", "asc"], ["created_at", "desc"], ["id", "desc"]]),
    ([("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc")],
     [["name", "asc"], ["size", "asc"], ["created_at", "asc"], ["id", "asc"]]),
    ([("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc"), ("sort_dir", "asc")],
     [["name", "asc"], ["size", "asc"], ["created_at", "desc"], ["id", "desc"]]),
    ([("sort_dir", "asc")], [["created_at", "asc"], ["id", "asc"]]),
    ([("sort", "id:asc")], [["id", "asc"], ["created_at", "asc"]]),
    ([("sort_key", " name "), ("sort_dir", " asc")],
     [["name", "asc"], ["created_at", "asc"], ["id", "asc"]]),
])
def test_sort_tie_breakers_follow_a_single_direction(query, sort) -> None:
    """created_at and id break ties in the one direction given, if only one
    was given; else (none, or several even when alike) in desc."""
    assert list_params.search(query, 25, 1000)["sort"] == sort


def test_schemas(v2: V2) -> None:
    image = v2.call("GET", "/schemas/image").json
    assert image["name"] == "image"
    assert image["properties"]["visibility"]["enum"] == [
        "community", "public", "private", "shared"]
    assert image["properties"]["status"]["readOnly"] is True
    assert image["additionalProperties"] == {"type": "string"}
    # Plain integers in the document, as Glance's; the service still
    # refuses negative ones (400).
    assert image["properties"]["min_ram"] == {
        "type": "integer", "description": "Amount of ram (in MB) required to boot image."}
    assert set(image["properties"]["min_disk"]) == {"type", "description"}
    for body in ({"min_ram": -1}, {"min_disk": -1}, {"min_disk": 2 ** 31}):
        assert v2.call("POST", "/images", body).status_int == 400, body
    made = v2.create(name="m")
    res = v2.patch(made["id"], [{"op": "replace", "path": "/min_ram", "value": -1}])
    assert res.status_int == 400 and v2.call("GET", "/images/" + made["id"]).json["min_ram"] == 0
    assert v2.call("GET", "/schemas/images").json["properties"]["images"]["items"] == image
    assert v2.call("GET", "/schemas/member").json["name"] == "member"
    assert v2.call("GET", "/schemas/members").json["name"] == "members"
    assert v2.call("GET", "/schemas/nothing").status_int == 404
    assert v2.call("POST", "/schemas/image").status_int == 405


def test_limit_default_cap_and_a_last_empty_page(v2_with) -> None:
    v2 = v2_with({"limit_param_default": 2, "api_limit_max": 3})
    for name in "abcd":
        v2.create(name=name)
    page = v2.call("GET", "/images?sort=name:asc").json
    assert [i["name"] for i in page["images"]] == ["a", "b"] and "next" in page
    page = v2.call("GET", "/images?sort=name:asc&limit=100").json
    assert [i["name"] for i in page["images"]] == ["a", "b", "c"]
    # A full page always links on, even when nothing follows.
    page = v2.call("GET", page["next"][len("/v2"):]).json
    assert [i["name"] for i in page["images"]] == ["d"] and "next" not in page
    names, link, pages = [], "/images?sort=name:asc&limit=2", 0
    while link:
        pages += 1
        page = v2.call("GET", link).json
        names += [i["name"] for i in page["images"]]
        link = page.get("next", "")[len("/v2"):]
    assert names == ["a", "b", "c", "d"] and pages == 3 and page["images"] == []


def test_tag_filters_ignore_surrounding_blanks(listed: V2) -> None:
    assert listed.names("?tag=%20x%20&tag=y") == ["b"]
    assert list_params.search([("tag", " x ")], 25, 1000)["tags"] == ["x"]
