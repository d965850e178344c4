"""Registry v1: GET /, /images and /images/detail with filters and paging."""

from __future__ import annotations

import datetime
import urllib.parse

import pytest

from tests.unit.registry.conftest import Client, uuid4
from tests.unit.registry.test_images import assert_error

pytestmark = pytest.mark.timeout(60)

BRIEF_KEYS = {"id", "name", "size", "disk_format", "container_format",
              "checksum"}


def q(path: str, **params: object) -> str:
    return path + "?" + urllib.parse.urlencode(params)


def test_brief_and_detail_shapes(client: Client) -> None:
    image = client.create("A", name="a", size=3, disk_format="raw",
                          container_format="bare", checksum="c" * 32,
                          properties={"k": "v"})
    for path in ("/", "/images"):
        res = client.get(path, "A")
        assert res.status_int == 200
        assert res.content_type == "application/json"
        assert res.json == {"images": [{
            "id": image["id"], "name": "a", "size": 3, "disk_format": "raw",
            "container_format": "bare", "checksum": "c" * 32}]}
    detail = client.get("/images/detail", "A").json["images"]
    assert detail == [image]


def test_empty_list(client: Client) -> None:
    assert client.get("/images").json == {"images": []}
    assert client.get("/images/detail").json == {"images": []}


def test_visibility_union(client: Client) -> None:
    own = client.create("A")["id"]
    public = client.create("B", is_public=True)["id"]
    other = client.create("B")["id"]
    shared = client.create("B")["id"]
    client.put("/images/%s/members/A" % shared, "B")
    assert set(client.ids("/images", "A")) == {own, public, shared}
    assert set(client.ids("/images", "B")) == {public, other, shared}
    assert set(client.ids("/images", "C")) == {public}
    # No owner value: public images only, never "shared with anyone".
    assert set(client.ids("/images", "noowner")) == {public}
    # Admin without a tenant: is_public defaults to true.
    assert set(client.ids("/images", "admin")) == {public}
    assert set(client.ids("/images?is_public=none", "admin")) == {
        own, public, other, shared}
    assert set(client.ids("/images?is_public=false", "admin")) == {
        own, other, shared}
    assert set(client.ids("/images?is_public=TRUE", "admin")) == {public}
    assert set(client.ids("/images?is_public=1", "admin")) == {public}
    assert set(client.ids("/images?is_public=0", "admin")) == {
        own, other, shared}
    # Non-admins cannot narrow (or widen) with is_public.
    assert set(client.ids("/images?is_public=none", "A")) == {
        own, public, shared}
    assert set(client.ids("/images?is_public=false", "A")) == {
        own, public, shared}
    assert client.get("/images?is_public=bogus", "A").status_int == 200


def test_is_public_bad_value(client: Client) -> None:
    assert_error(client.get("/images?is_public=maybe", "admin"), 400,
                 "is_public must be None, True, or False")


def test_deleted_and_killed_hidden_by_default(client: Client) -> None:
    live = client.create("A", is_public=True)["id"]
    killed = client.create("A", is_public=True, status="killed")["id"]
    gone = client.create("A", is_public=True)["id"]
    client.delete("/images/" + gone, "A")
    assert client.ids("/images", "A") == [live]
    assert client.ids("/images?deleted=false", "admin") == [live]
    # Non-admins cannot ask for deleted rows.
    assert client.ids("/images?deleted=true", "A") == [live]
    assert client.ids("/images?deleted=true", "admin") == [gone]
    assert set(client.ids("/images?deleted=yes&is_public=none", "admin")) == {gone}
    # changes-since lifts the filter: deleted and killed images appear.
    since = "/images?changes-since=2000-01-01T00:00:00"
    assert set(client.ids(since, "A")) == {live, killed, gone}


def test_deleted_bad_value(client: Client) -> None:
    assert_error(client.get("/images?deleted=maybe", "admin"), 400,
                 "deleted must be True, or False")


@pytest.mark.parametrize("field,value", [
    ("name", "x"), ("status", "queued"), ("container_format", "ovf"),
    ("disk_format", "qcow2"), ("min_ram", 512), ("min_disk", 7)])
def test_equality_filters(client: Client, field: str, value: object) -> None:
    match = client.create("A", **{field: value})["id"]
    client.create("A")
    assert client.ids(q("/images", **{field: value}), "A") == [match]
    assert client.ids(q("/images/detail", **{field: value}), "A") == [match]


def test_size_range(client: Client) -> None:
    ids = {size: client.create("A", size=size)["id"] for size in (1, 5, 10)}
    assert set(client.ids("/images?size_min=5", "A")) == {ids[5], ids[10]}
    assert set(client.ids("/images?size_max=5", "A")) == {ids[1], ids[5]}
    assert client.ids("/images?size_min=2&size_max=9", "A") == [ids[5]]
    assert client.ids("/images?size_min=11", "A") == []


@pytest.mark.parametrize("field", ["size_min", "size_max", "min_ram",
                                   "min_disk"])
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "9" * 30])
def test_numeric_filter_bad_values(client: Client, field: str,
                                   value: str) -> None:
    res = client.get(q("/images", **{field: value}), "A")
    assert_error(res, 400, "Bad value passed to filter %s got %s"
                 % (field, value))


def test_protected_filter(client: Client) -> None:
    yes = client.create("A", protected=True)["id"]
    no = client.create("A")["id"]
    for value in ("true", "True", "1"):
        assert client.ids("/images?protected=" + value, "A") == [yes]
    for value in ("false", "FALSE", "0"):
        assert client.ids("/images?protected=" + value, "A") == [no]
    for value in ("none", "yes", ""):
        assert_error(client.get("/images?protected=" + value, "A"), 400,
                     "protected must be True, or False")


def test_property_filters(client: Client) -> None:
    both = client.create("A", properties={"os": "linux", "arch": "x86"})["id"]
    one = client.create("A", properties={"os": "linux", "arch": "arm"})["id"]
    client.create("A")
    assert set(client.ids("/images?property-os=linux", "A")) == {both, one}
    assert client.ids("/images?property-os=linux&property-arch=x86",
                      "A") == [both]
    assert client.ids("/images?property-os=windows", "A") == []
    # A deleted property no longer matches.
    client.put("/images/" + one, "A", body={"image": {"properties": {}}},
               headers={"X-Glance-Registry-Purge-Props": "true"})
    assert client.ids("/images?property-os=linux", "A") == [both]


def test_changes_since(client: Client) -> None:
    old = client.create("A")
    new = client.create("A")
    stamp = datetime.datetime.strptime(old["updated_at"],
                                       "%Y-%m-%dT%H:%M:%S.%f")
    # Strictly later than the given time.
    assert client.ids(q("/images", **{"changes-since": old["updated_at"]}),
                      "A") == [new["id"]]
    earlier = (stamp - datetime.timedelta(seconds=1)).isoformat()
    assert set(client.ids(q("/images", **{"changes-since": earlier}),
                          "A")) == {old["id"], new["id"]}
    # Zones are honoured: the same instant written at +02:00.
    shifted = (stamp + datetime.timedelta(hours=2)).isoformat() + "+02:00"
    assert client.ids(q("/images", **{"changes-since": shifted}),
                      "A") == [new["id"]]
    zulu = (stamp - datetime.timedelta(seconds=1)).isoformat() + "Z"
    assert len(client.ids(q("/images", **{"changes-since": zulu}), "A")) == 2
    future = (stamp + datetime.timedelta(days=1)).isoformat()
    assert client.ids(q("/images", **{"changes-since": future}), "A") == []


@pytest.mark.parametrize("value", ["yesterday", "2015-13-01", "",
                                   "0001-01-01T00:00:00+01:00",
                                   "2015-01-01T00:00:00 00:00"])
def test_changes_since_bad_value(client: Client, value: str) -> None:
    res = client.get(q("/images", **{"changes-since": value}), "A")
    assert_error(res, 400, "Unrecognized changes-since value")


def test_sorting(client: Client) -> None:
    ids = {}
    for name, size in (("b", 2), ("a", 3), ("c", 1)):
        ids[name] = client.create("A", name=name, size=size)["id"]
    # Default: created_at desc.
    assert client.ids("/images", "A") == [ids["c"], ids["a"], ids["b"]]
    assert client.ids("/images?sort_dir=asc", "A") == [
        ids["b"], ids["a"], ids["c"]]
    assert client.ids("/images?sort_key=name&sort_dir=asc", "A") == [
        ids["a"], ids["b"], ids["c"]]
    assert client.ids("/images?sort_key=name", "A") == [
        ids["c"], ids["b"], ids["a"]]
    assert client.ids("/images?sort_key=size&sort_dir=asc", "A") == [
        ids["c"], ids["b"], ids["a"]]
    assert client.ids("/images?sort_key=id&sort_dir=asc", "A") == sorted(
        ids.values())
    for key in ("status", "container_format", "disk_format", "created_at",
                "updated_at"):
        assert len(client.ids("/images?sort_key=" + key, "A")) == 3


def test_sort_ties_break_by_created_at_then_id(client: Client) -> None:
    first = client.create("A", name="same")["id"]
    second = client.create("A", name="same")["id"]
    assert client.ids("/images?sort_key=name&sort_dir=asc", "A") == [
        first, second]
    assert client.ids("/images?sort_key=name&sort_dir=desc", "A") == [
        second, first]


def test_sort_errors(client: Client) -> None:
    assert_error(client.get("/images?sort_key=owner", "A"), 400,
                 "Unsupported sort_key. Acceptable values: name, status, "
                 "container_format, disk_format, size, id, created_at, "
                 "updated_at")
    for value in ("up", "ASC", ""):
        assert_error(client.get("/images?sort_dir=" + value, "A"), 400,
                     "Unsupported sort_dir. Acceptable values: asc, desc")


def test_limit_and_marker_paging(client: Client) -> None:
    created = [client.create("A", name="n%02d" % i)["id"] for i in range(7)]
    newest_first = list(reversed(created))
    assert client.ids("/images?limit=3", "A") == newest_first[:3]
    assert client.ids("/images?limit=0", "A") == []
    pages, marker = [], None
    while True:
        path = "/images?limit=3" + ("&marker=" + marker if marker else "")
        page = client.ids(path, "A")
        if not page:
            break
        pages.append(page)
        marker = page[-1]
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    by_name = client.ids("/images?sort_key=name&sort_dir=asc&limit=2&marker="
                         + created[2], "A")
    assert by_name == created[3:5]


def test_limit_default_and_cap(conf, client: Client) -> None:
    for _ in range(5):
        client.create("A")
    conf.set_override("limit_param_default", 2)
    conf.set_override("api_limit_max", 3)
    assert len(client.ids("/images", "A")) == 2
    assert len(client.ids("/images?limit=100", "A")) == 3
    assert len(client.ids("/images?limit=1", "A")) == 1


@pytest.mark.parametrize("value,text", [
    ("abc", "limit param must be an integer"),
    ("1.5", "limit param must be an integer"),
    ("", "limit param must be an integer"),
    ("-1", "limit param must be positive")])
def test_limit_errors(client: Client, value: str, text: str) -> None:
    assert_error(client.get("/images?limit=" + value, "A"), 400, text)


def test_marker_errors(client: Client) -> None:
    assert_error(client.get("/images?marker=nope", "A"), 400,
                 "Invalid marker format")
    assert_error(client.get("/images?marker=" + uuid4(), "A"), 400,
                 "Invalid marker. Image could not be found.")
    hidden = client.create("B")["id"]
    assert_error(client.get("/images/detail?marker=" + hidden, "A"), 400,
                 "Invalid marker. Image could not be found.")
    gone = client.create("A", is_public=True)["id"]
    client.delete("/images/" + gone, "A")
    assert_error(client.get("/images?marker=" + gone, "A"), 400,
                 "Invalid marker. Image could not be found.")
    # With changes-since deleted rows are listed, so they work as markers.
    res = client.get("/images?changes-since=2000-01-01T00:00:00&marker="
                     + gone, "A")
    assert res.status_int == 200, res.text


def test_unknown_params_ignored(client: Client) -> None:
    image = client.create("A")["id"]
    assert client.ids("/images?bogus=1&owner=B&id=x", "A") == [image]


def test_bad_query_encoding(client: Client) -> None:
    assert client.get("/images?name=%FF", "A").status_int == 400


def test_detail_deactivated_hides_locations(client: Client) -> None:
    client.create("A", status="deactivated", location="file:///x")
    listed = client.get("/images/detail", "A").json["images"][0]
    assert listed["location"] is None and listed["location_data"] == []
