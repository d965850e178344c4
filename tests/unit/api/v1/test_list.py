"""GET /images and /images/detail: shapes, filters, paging, errors (api-v1.md 5-6)."""

from __future__ import annotations

import datetime

import pytest

from .helpers import ADMIN, FORMATS, create_image, message, registry_update

pytestmark = pytest.mark.timeout(60)

BRIEF_KEYS = {"id", "name", "size", "disk_format", "container_format", "checksum"}
FULL_KEYS = {"id", "name", "status", "size", "virtual_size", "disk_format",
             "container_format", "checksum", "min_disk", "min_ram", "is_public",
             "protected", "owner", "created_at", "updated_at", "deleted_at", "deleted",
             "properties"}


def ids(response):
    assert response.status_int == 200, response.body
    return [image["id"] for image in response.json["images"]]


def listing(stack, query="", detail=False, **caller):
    caller = caller or {"tenant": "t1"}
    path = "/v1/images/detail" if detail else "/v1/images"
    return stack.request(path + ("?" + query if query else ""), **caller)


def test_empty_lists(stack):
    for detail in (False, True):
        response = listing(stack, detail=detail)
        assert response.status_int == 200
        assert response.content_type == "application/json"
        assert response.json == {"images": []}


def test_brief_and_detail_shapes_never_show_locations(stack):
    image = create_image(stack, {"x-image-meta-property-a": "b"}, body=b"data")
    brief = listing(stack).json["images"]
    assert [set(i) for i in brief] == [BRIEF_KEYS]
    detail = listing(stack, detail=True).json["images"]
    assert [set(i) for i in detail] == [FULL_KEYS]
    assert detail[0]["properties"] == {"a": "b"}
    assert detail[0]["id"] == image["id"]
    body = listing(stack, detail=True).text + listing(stack).text
    assert "file://" not in body and "location" not in body


@pytest.fixture
def catalog(stack):
    """Images of t1 with varied fields; returns name -> id."""
    made = {}
    specs = [
        ("alpha", {"x-image-meta-min_ram": "128", "x-image-meta-property-os": "linux",
                   "x-image-meta-property-arch": "x86"}, b"a" * 10),
        ("beta", {"x-image-meta-min_ram": "256", "x-image-meta-protected": "true",
                  "x-image-meta-property-os": "linux",
                  "x-image-meta-disk_format": "qcow2", "x-image-meta-container_format": "ovf"},
         b"b" * 100),
        ("gamma", {"x-image-meta-min_disk": "5", "x-image-meta-property-os": "bsd"}, None),
    ]
    for name, headers, body in specs:
        all_headers = dict(FORMATS)
        all_headers.update({"x-image-meta-name": name}, **headers)
        made[name] = create_image(stack, all_headers, body=body)["id"]
    return made


@pytest.mark.parametrize("query, names", [
    ("name=alpha", ["alpha"]),
    ("status=queued", ["gamma"]),
    ("status=active", ["beta", "alpha"]),
    ("disk_format=qcow2", ["beta"]),
    ("container_format=bare", ["gamma", "alpha"]),
    ("min_ram=128", ["alpha"]),
    ("min_ram=129", []),
    ("min_disk=5", ["gamma"]),
    ("size_min=10", ["beta", "alpha"]),
    ("size_min=11", ["beta"]),
    ("size_max=10", ["gamma", "alpha"]),
    ("size_min=10&size_max=10", ["alpha"]),
    ("protected=true", ["beta"]),
    ("protected=0", ["gamma", "alpha"]),
    ("property-os=linux", ["beta", "alpha"]),
    ("property-os=linux&property-arch=x86", ["alpha"]),
    ("property-os=windows", []),
    ("unknown=1", ["gamma", "beta", "alpha"]),
    ("sort_key=name&sort_dir=asc", ["alpha", "beta", "gamma"]),
    ("sort_key=name", ["gamma", "beta", "alpha"]),
    ("sort_key=size&sort_dir=asc", ["gamma", "alpha", "beta"]),
    ("sort_dir=asc", ["alpha", "beta", "gamma"]),
    ("limit=2", ["gamma", "beta"]),
    ("limit=0", []),
])
def test_filters_sorting_and_limits(stack, catalog, query, names):
    for detail in (False, True):
        assert ids(listing(stack, query, detail)) == [catalog[n] for n in names]


def test_paging_with_marker(stack, catalog):
    first = ids(listing(stack, "limit=2"))
    second = ids(listing(stack, "limit=2&marker=" + first[-1]))
    third = ids(listing(stack, "limit=2&marker=" + second[-1]))
    assert first + second == [catalog["gamma"], catalog["beta"], catalog["alpha"]]
    assert third == []


def test_default_page_size_is_the_registry_default(stack_with):
    stack = stack_with({"limit_param_default": 2, "api_limit_max": 3})
    for _ in range(4):
        create_image(stack)
    assert len(ids(listing(stack))) == 2
    assert len(ids(listing(stack, "limit=100"))) == 3


@pytest.mark.parametrize("query, text", [
    ("min_ram=-1", "Bad value passed to filter min_ram got -1"),
    ("min_ram=abc", "Bad value passed to filter min_ram got abc"),
    ("min_disk=1.5", "Bad value passed to filter min_disk got 1.5"),
    ("size_min=-3", "Bad value passed to filter size_min got -3"),
    ("size_max=big", "Bad value passed to filter size_max got big"),
    ("is_public=maybe", "Bad value passed to filter is_public got maybe"),
    ("sort_key=owner", "Unsupported sort_key"),
    ("sort_dir=up", "Unsupported sort_dir"),
    ("limit=abc", "limit param must be an integer"),
    ("limit=-1", "limit param must be positive"),
    ("marker=not-a-uuid", "Invalid marker format"),
    ("marker=0f3c1c1e-0000-4000-8000-00000000beef", "Invalid marker. Image could not be found."),
    ("changes-since=yesterday", "Unrecognized changes-since value"),
    ("protected=none", "protected must be True, or False"),
    ("protected=maybe", "protected must be True, or False"),
])
def test_bad_parameters_are_400_with_message(stack, query, text):
    for detail in (False, True):
        response = listing(stack, query, detail)
        assert response.status_int == 400
        assert text in message(response)


def test_non_admin_is_public_is_checked_but_ignored(stack):
    private = create_image(stack, tenant="t1")
    public = create_image(stack, {"x-image-meta-is_public": "true"}, **ADMIN)
    assert sorted(ids(listing(stack, "is_public=false", tenant="t1"))) == sorted(
        [private["id"], public["id"]])
    assert ids(listing(stack, "is_public=false", tenant="t2")) == [public["id"]]


def test_visibility_of_lists(stack):
    mine = create_image(stack, tenant="t1")
    theirs = create_image(stack, tenant="t2")
    public = create_image(stack, {"x-image-meta-is_public": "true"}, **ADMIN)
    shared = create_image(stack, tenant="t3")
    response = stack.request("/v1/images/%s/members/t1" % shared["id"], "PUT", tenant="t3")
    assert response.status_int == 204
    assert sorted(ids(listing(stack, tenant="t1"))) == sorted(
        [mine["id"], public["id"], shared["id"]])
    assert theirs["id"] not in ids(listing(stack, detail=True, tenant="t1"))
    # An admin sees public images (and its own) by default, everything with none.
    assert ids(listing(stack, **ADMIN)) == [public["id"]]
    assert sorted(ids(listing(stack, "is_public=None", **ADMIN))) == sorted(
        [mine["id"], theirs["id"], public["id"], shared["id"]])
    assert public["id"] not in ids(listing(stack, "is_public=false", **ADMIN))
    assert ids(listing(stack, "is_public=1", **ADMIN)) == [public["id"]]


def test_deleted_and_killed_images_need_changes_since(stack):
    gone = create_image(stack)
    assert stack.request("/v1/images/" + gone["id"], "DELETE", tenant="t1").status_int == 200
    killed = create_image(stack)
    registry_update(stack, killed["id"], {"status": "killed"})
    live = create_image(stack)
    assert ids(listing(stack)) == [live["id"]]
    since = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
    query = "changes-since=" + since.strftime("%Y-%m-%dT%H:%M:%S")
    found = listing(stack, query, detail=True).json["images"]
    statuses = {i["id"]: (i["status"], i["deleted"]) for i in found}
    assert statuses == {gone["id"]: ("deleted", True), killed["id"]: ("killed", False),
                        live["id"]: ("queued", False)}


def test_changes_since_honours_time_zones_and_is_strict(stack):
    image = create_image(stack)
    updated = datetime.datetime.fromisoformat(image["updated_at"])
    before = (updated - datetime.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert ids(listing(stack, "changes-since=" + before)) == [image["id"]]
    # The same instant written two hours ahead in +02:00 (+ encoded as %2B).
    ahead = (updated + datetime.timedelta(hours=2, seconds=-1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert ids(listing(stack, "changes-since=%s%%2B02:00" % ahead)) == [image["id"]]
    later = (updated + datetime.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert ids(listing(stack, "changes-since=" + later)) == []
