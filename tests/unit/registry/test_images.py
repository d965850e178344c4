"""Registry v1: create, show, update and delete of single images."""

from __future__ import annotations

import re

import pytest

from tests.unit.registry.conftest import Client, uuid4

pytestmark = pytest.mark.timeout(60)

FULL_KEYS = {"id", "name", "status", "size", "virtual_size", "disk_format",
             "container_format", "checksum", "min_disk", "min_ram",
             "is_public", "protected", "owner", "created_at", "updated_at",
             "deleted_at", "deleted", "properties", "location",
             "location_data", "visibility", "os_hidden", "os_hash_algo",
             "os_hash_value", "tags"}
# Every row, deleted or not, whoever owns it.
EVERYTHING = "/images/detail?is_public=none&changes-since=1970-01-01T00:00:00"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")


def assert_error(res, status: int, text: str) -> None:
    assert res.status_int == status, (res.status, res.text)
    assert text in res.text, res.text


# --- create ------------------------------------------------------------------

def test_create_defaults_and_shape(client: Client) -> None:
    res = client.post("/images", "A", body={"image": {"name": "cirros"}})
    assert res.status_int == 200
    assert res.content_type == "application/json"
    image = res.json["image"]
    assert set(image) == FULL_KEYS
    assert image["status"] == "active"
    assert image["owner"] == "A"
    assert image["is_public"] is False and image["protected"] is False
    assert image["visibility"] == "shared" and image["os_hidden"] is False
    assert image["tags"] == [] and image["os_hash_value"] is None
    assert image["min_disk"] == 0 and image["min_ram"] == 0
    assert image["deleted"] is False and image["deleted_at"] is None
    assert image["properties"] == {}
    assert image["location"] is None and image["location_data"] == []
    assert TIMESTAMP.fullmatch(image["created_at"])
    assert TIMESTAMP.fullmatch(image["updated_at"])
    assert re.fullmatch(r"[0-9a-f-]{36}", image["id"])


def test_create_all_fields_round_trip(client: Client) -> None:
    image_id = uuid4()
    sent = {"id": image_id, "name": "n", "status": "queued", "size": 5120,
            "virtual_size": 10240, "disk_format": "raw",
            "container_format": "ovf", "checksum": "c" * 32, "min_disk": 2,
            "min_ram": 512, "is_public": True, "protected": True,
            "properties": {"distro": "Ubuntu", "empty": None},
            "location": "file:///tmp/x"}
    image = client.create("A", **sent)
    got = client.get("/images/" + image_id, "A").json["image"]
    assert got == image
    for key, value in sent.items():
        if key != "location":
            assert got[key] == value, key
    assert got["location"] == "file:///tmp/x"
    assert [loc["url"] for loc in got["location_data"]] == ["file:///tmp/x"]
    assert got["location_data"][0]["status"] == "active"


def test_create_owner_rules(client: Client) -> None:
    assert client.create("A", owner="B")["owner"] == "A"
    assert client.create("admin", owner="B")["owner"] == "B"
    assert client.create("admin")["owner"] is None
    assert client.create("admin-t")["owner"] == "T"


def test_create_ignores_unknown_and_server_fields(client: Client) -> None:
    image = client.create("A", name="x", bogus=1, copy_from="http://x",
                          deleted=True, deleted_at="2000-01-01T00:00:00",
                          created_at="2000-01-01T00:00:00")
    assert "bogus" not in image
    assert image["deleted"] is False and image["deleted_at"] is None
    assert not image["created_at"].startswith("2000")


def test_create_location_data(client: Client) -> None:
    image = client.create("A", location_data=[
        {"url": "file:///a", "metadata": {"k": "v"}},
        {"url": "file:///b", "metadata": {}}])
    assert [loc["url"] for loc in image["location_data"]] == [
        "file:///a", "file:///b"]
    assert image["location_data"][0]["metadata"] == {"k": "v"}
    assert image["location"] == "file:///a"
    assert all(isinstance(loc["id"], int) for loc in image["location_data"])


@pytest.mark.parametrize("bad_id", ["abc", "1", 5, "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
                                    "6ba7b8109dad11d180b400c04fd430c8",
                                    "6ba7b810-9dad-11d1-80b4-00c04fd430c8x"])
def test_create_invalid_id(client: Client, bad_id: object) -> None:
    res = client.post("/images", "A", body={"image": {"id": bad_id}})
    assert_error(res, 400, "Invalid image id format")
    assert client.ids(EVERYTHING) == []


def test_create_duplicate_id(client: Client) -> None:
    image_id = uuid4()
    client.create("A", id=image_id)
    res = client.post("/images", "A", body={"image": {"id": image_id}})
    assert_error(res, 409, "Image with identifier %s already exists!" % image_id)
    # A soft-deleted row keeps its id too.
    client.delete("/images/" + image_id, "A")
    res = client.post("/images", "B", body={"image": {"id": image_id}})
    assert_error(res, 409, "already exists!")


BAD_VALUES = [
    ({"name": "n" * 256}, "'name' is too long"),
    ({"disk_format": "d" * 21}, "'disk_format' is too long"),
    ({"container_format": "c" * 21}, "'container_format' is too long"),
    ({"checksum": "0" * 33}, "'checksum' is too long"),
    ({"owner": "o" * 256}, "'owner' is too long"),
    ({"properties": {"p" * 256: "v"}}, "a property name is too long"),
    ({"status": "bogus"}, "Invalid image status 'bogus' for image."),
    ({"status": None}, "Invalid image status"),
    ({"min_disk": 2147483648},
     "'min_disk' value out of range, must not exceed 2147483647"),
    ({"min_ram": 2147483648},
     "'min_ram' value out of range, must not exceed 2147483647"),
    ({"min_disk": -1}, "'min_disk' must not be negative"),
    ({"min_ram": 1.5}, "'min_ram' must be an integer"),
    ({"min_ram": "5"}, "'min_ram' must be an integer"),
    ({"size": -1}, "'size' must not be negative"),
    ({"size": 2 ** 63}, "'size' value out of range"),
    ({"size": "12"}, "'size' must be an integer"),
    ({"size": 1.5}, "'size' must be an integer"),
    ({"size": True}, "'size' must be an integer"),
    ({"virtual_size": -5}, "'virtual_size' must not be negative"),
    ({"is_public": "true"}, "'is_public' must be true or false"),
    ({"protected": 1}, "'protected' must be true or false"),
    ({"is_public": None}, "'is_public' must be true or false"),
    ({"name": 5}, "'name' must be a string"),
    ({"properties": []}, "'properties' must be an object"),
    ({"properties": {"a": 1}}, "property 'a' must be a string or null"),
    ({"name": "smile \U0001F600"}, "4-byte UTF-8"),
    ({"properties": {"\U0001F600": "v"}}, "4-byte UTF-8"),
    ({"properties": {"k": "\U0001F600"}}, "4-byte UTF-8"),
    ({"location": "file:///\U0001F600"}, "4-byte UTF-8"),
    ({"location_data": "file:///a"}, "'location_data' must be a list"),
    ({"location_data": [{"metadata": {}}]}, "'url'"),
    ({"location_data": [{"url": "file:///a", "status": "x"}]},
     "Invalid location status"),
    ({"location_data": [{"url": "file:///a", "metadata": []}]},
     "'metadata' must be an object"),
]


@pytest.mark.parametrize("values,text", BAD_VALUES)
def test_create_invalid_values_write_nothing(client: Client, values: dict,
                                             text: str) -> None:
    res = client.post("/images", "A", body={"image": values})
    assert_error(res, 400, "Failed to add image metadata. Got error: ")
    assert text in res.text
    assert client.ids(EVERYTHING) == []


def test_create_lone_surrogate_is_400(client: Client) -> None:
    for raw in (b'{"image": {"name": "\\ud800"}}',
                b'{"image": {"status": "\\ud800"}}',
                b'{"image": {"properties": {"\\udc00": null}}}',
                b'{"image": {"location_data": [{"url": "u", "status": "\\ud800"}]}}'):
        res = client.post("/images", "A", raw=raw)
        assert_error(res, 400, "not valid UTF-8")


def test_boundary_values_accepted(client: Client) -> None:
    image = client.create("A", name="n" * 255, min_disk=2147483647,
                          min_ram=2147483647, size=2 ** 63 - 1,
                          checksum="0" * 32, disk_format="d" * 20,
                          properties={"p" * 255: "\u00e9\u4e2d"})
    assert image["min_disk"] == 2147483647
    assert image["size"] == 2 ** 63 - 1
    assert image["properties"] == {"p" * 255: "\u00e9\u4e2d"}


@pytest.mark.parametrize("raw", [b"{", b"not json", b"\xff\xfe",
                                 b"[]", b'"image"', b'{"image": []}',
                                 b'{"image": null}', b'{"other": {}}'])
def test_create_malformed_body(client: Client, raw: bytes) -> None:
    res = client.post("/images", "A", raw=raw)
    assert res.status_int == 400, res.text


def test_create_without_body(client: Client) -> None:
    res = client.post("/images", "A")
    assert_error(res, 400, '"image" object')


def test_read_only_caller_cannot_write(client: Client) -> None:
    assert_error(client.post("/images", "readonly", body={"image": {}}),
                 403, "Read-only access")
    image = client.create("A")
    path = "/images/" + image["id"]
    assert_error(client.put(path, "readonly", body={"image": {}}), 403,
                 "Read-only access")
    assert_error(client.delete(path, "readonly"), 403, "Read-only access")


# --- show --------------------------------------------------------------------

def test_show_visibility(client: Client) -> None:
    private = client.create("A")["id"]
    public = client.create("A", is_public=True)["id"]
    unowned = client.create("admin")["id"]
    for caller in ("A", "admin"):
        assert client.get("/images/" + private, caller).status_int == 200
    for caller in ("B", "noowner"):
        res = client.get("/images/" + private, caller)
        assert_error(res, 404, "Image not found")
    for caller in ("A", "B", "noowner"):
        assert client.get("/images/" + public, caller).status_int == 200
        assert client.get("/images/" + unowned, caller).status_int == 200


def test_show_absent_and_long_ids(client: Client) -> None:
    assert_error(client.get("/images/" + uuid4()), 404, "Image not found")
    assert client.get("/images/" + "a" * 37).status_int == 404
    assert client.get("/images/%C3%A9").status_int == 404
    assert client.get("/images/%FF").status_int in (400, 404)


def test_show_member_sees_shared_image(client: Client) -> None:
    image = client.create("A")["id"]
    assert client.put("/images/%s/members/B" % image, "A").status_int == 204
    assert client.get("/images/" + image, "B").status_int == 200
    assert client.get("/images/" + image, "C").status_int == 404


def test_show_deleted_admin_only(client: Client) -> None:
    image = client.create("A", is_public=True)["id"]
    assert client.delete("/images/" + image, "A").status_int == 200
    shown = client.get("/images/" + image, "admin")
    assert shown.status_int == 200
    assert shown.json["image"]["deleted"] is True
    assert client.get("/images/" + image, "A").status_int == 404


def test_deactivated_locations_hidden_from_non_admins(client: Client) -> None:
    image = client.create("A", status="deactivated", is_public=True,
                          location="file:///secret")["id"]
    mine = client.get("/images/" + image, "A").json["image"]
    assert mine["location"] is None and mine["location_data"] == []
    admin = client.get("/images/" + image, "admin").json["image"]
    assert admin["location"] == "file:///secret"
    assert len(admin["location_data"]) == 1


# --- update ------------------------------------------------------------------

def test_update_fields_and_properties_merge(client: Client) -> None:
    image = client.create("A", name="old", properties={"a": "1", "b": "2"})
    path = "/images/" + image["id"]
    res = client.put(path, "A", body={"image": {
        "name": "new", "min_ram": 64, "properties": {"b": "3", "c": "4"}}})
    assert res.status_int == 200, res.text
    got = res.json["image"]
    assert got["name"] == "new" and got["min_ram"] == 64
    assert got["properties"] == {"a": "1", "b": "3", "c": "4"}
    assert got["updated_at"] >= image["updated_at"]
    assert client.get(path, "A").json["image"] == got


def test_update_purge_header(client: Client) -> None:
    image = client.create("A", properties={"a": "1", "b": "2"})
    path = "/images/" + image["id"]
    # Only the exact value "true" purges.
    for value in ("True", "1", "yes"):
        res = client.put(path, "A", body={"image": {"properties": {"c": "3"}}},
                         headers={"X-Glance-Registry-Purge-Props": value})
        assert set(res.json["image"]["properties"]) == {"a", "b", "c"}
    res = client.put(path, "A", body={"image": {"properties": {"c": "9"}}},
                     headers={"X-Glance-Registry-Purge-Props": "true"})
    assert res.json["image"]["properties"] == {"c": "9"}
    # A purged property comes back when set again.
    res = client.put(path, "A", body={"image": {"properties": {"a": "x"}}})
    assert res.json["image"]["properties"] == {"a": "x", "c": "9"}


def test_update_updated_at_moves_on_property_change(client: Client) -> None:
    image = client.create("A", properties={"a": "1"})
    path = "/images/" + image["id"]
    res = client.put(path, "A", body={"image": {"properties": {"a": "2"}}})
    assert res.json["image"]["updated_at"] > image["updated_at"]


def test_update_from_state(client: Client) -> None:
    image = client.create("A", status="queued")
    path = "/images/" + image["id"]
    res = client.put(path, "A", body={"image": {"status": "active"},
                                      "from_state": "saving"})
    assert_error(res, 409, "Image operation conflicts")
    assert client.get(path, "A").json["image"]["status"] == "queued"
    res = client.put(path, "A", body={"image": {"status": "saving"},
                                      "from_state": "queued"})
    assert res.json["image"]["status"] == "saving"
    res = client.put(path, "A", body={"image": {"status": "active"},
                                      "from_state": None})
    assert res.json["image"]["status"] == "active"


def test_update_properties_from_and_remove_properties(client: Client) -> None:
    image = client.create("A", properties={"lock": "t1", "p": "1"})
    path = "/images/" + image["id"]
    res = client.put(path, "A", body={"image": {}, "properties_from": {"lock": "t2"},
                                      "remove_properties": ["lock"]})
    assert_error(res, 409, "Image operation conflicts")
    res = client.put(path, "A", body={"image": {}, "properties_from": {"lock": "t1"},
                                      "remove_properties": ["lock"]})
    assert res.json["image"]["properties"] == {"p": "1"}
    for body, words in (({"properties_from": ["lock"]}, "'properties_from' must be an object"),
                        ({"properties_from": {"lock": 1}}, "must be a string or null"),
                        ({"remove_properties": "lock"}, "must be a list"),
                        ({"remove_properties": [1]}, "must be a string")):
        res = client.put(path, "A", body=dict(body, image={}))
        assert_error(res, 400, words)


def test_update_owner_and_server_fields(client: Client) -> None:
    image = client.create("A")
    path = "/images/" + image["id"]
    res = client.put(path, "A", body={"image": {
        "owner": "B", "id": uuid4(), "created_at": "2000-01-01T00:00:00",
        "deleted": True, "deleted_at": "2000-01-01T00:00:00", "bogus": 1}})
    got = res.json["image"]
    assert res.status_int == 200
    assert got["owner"] == "A" and got["id"] == image["id"]
    assert got["created_at"] == image["created_at"]
    assert got["deleted"] is False and got["deleted_at"] is None
    res = client.put(path, "admin", body={"image": {"owner": "B"}})
    assert res.json["image"]["owner"] == "B"


def test_update_authorization(client: Client) -> None:
    public = client.create("A", is_public=True)["id"]
    private = client.create("A")["id"]
    shared = client.create("A")["id"]
    client.put("/images/%s/members/B" % shared, "A")
    body = {"image": {"name": "x"}}
    assert client.put("/images/" + public, "B", body=body).status_int == 403
    assert_error(client.put("/images/" + private, "B", body=body), 404,
                 "Image not found")
    # Members (even can_share ones) cannot change the image.
    assert client.put("/images/" + shared, "B", body=body).status_int == 404
    assert client.put("/images/" + uuid4(), "A", body=body).status_int == 404
    assert client.put("/images/" + "a" * 40, "A", body=body).status_int == 404
    assert client.put("/images/" + private, "admin", body=body).status_int == 200
    assert client.get("/images/" + public, "B").json["image"]["name"] is None


@pytest.mark.parametrize("values,text", BAD_VALUES)
def test_update_invalid_values_write_nothing(client: Client, values: dict,
                                             text: str) -> None:
    image = client.create("A", name="keep", properties={"p": "v"})
    path = "/images/" + image["id"]
    res = client.put(path, "A", body={"image": values},
                     headers={"X-Glance-Registry-Purge-Props": "true"})
    assert_error(res, 400, "Failed to update image metadata. Got error: ")
    assert text in res.text
    assert client.get(path, "A").json["image"] == image


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"image": 1}', b'{}'])
def test_update_malformed_body(client: Client, raw: bytes) -> None:
    image = client.create("A")
    res = client.put("/images/" + image["id"], "A", raw=raw)
    assert res.status_int == 400, res.text


def test_update_bad_from_state(client: Client) -> None:
    image = client.create("A")
    res = client.put("/images/" + image["id"], "A",
                     body={"image": {}, "from_state": 5})
    assert_error(res, 400, "'from_state' must be a string")


def test_update_location_data(client: Client) -> None:
    image = client.create("A", location="file:///a")
    path = "/images/" + image["id"]
    old = image["location_data"][0]
    res = client.put(path, "A", body={"image": {"location_data": [
        {"id": old["id"], "url": "file:///a", "metadata": {"m": 1},
         "status": "active"},
        {"url": "file:///b", "metadata": {}}]}})
    got = res.json["image"]["location_data"]
    assert [loc["url"] for loc in got] == ["file:///a", "file:///b"]
    assert got[0]["metadata"] == {"m": 1}
    # The list is authoritative: unlisted locations go away.
    res = client.put(path, "A", body={"image": {"location_data": [got[1]]}})
    assert [loc["url"] for loc in res.json["image"]["location_data"]] == [
        "file:///b"]
    assert res.json["image"]["location"] == "file:///b"
    # Absent keys leave locations alone.
    res = client.put(path, "A", body={"image": {"name": "n"}})
    assert len(res.json["image"]["location_data"]) == 1


# --- delete ------------------------------------------------------------------

def test_delete_returns_deleted_row(client: Client) -> None:
    image = client.create("A", properties={"a": "1"}, location="file:///a",
                          status="active")
    path = "/images/" + image["id"]
    res = client.delete(path, "A")
    assert res.status_int == 200
    got = res.json["image"]
    assert set(got) == FULL_KEYS
    assert got["deleted"] is True
    assert TIMESTAMP.fullmatch(got["deleted_at"])
    assert got["status"] == "active"  # glance-api sets the status first
    assert client.get(path, "A").status_int == 404
    assert client.delete(path, "A").status_int == 404


def test_delete_conditional_on_status(client: Client) -> None:
    """X-Glance-Registry-From-State: delete only while the status holds,
    and set it to deleted in the same transaction."""
    image = client.create("A", properties={"a": "1"}, status="queued")
    path = "/images/" + image["id"]
    stale = client.delete(path, "A", headers={"X-Glance-Registry-From-State": "saving"})
    assert stale.status_int == 409
    assert "Image operation conflicts" in stale.text
    assert client.get(path, "A").json["image"]["status"] == "queued"
    res = client.delete(path, "A", headers={"X-Glance-Registry-From-State": "queued"})
    assert res.status_int == 200
    got = res.json["image"]
    assert got["deleted"] is True and got["status"] == "deleted"
    assert client.get(path, "A").status_int == 404
    shown = client.get(path, "admin").json["image"]
    assert shown["status"] == "deleted" and shown["properties"] == {}
    assert client.delete(path, "A", headers={
        "X-Glance-Registry-From-State": "deleted"}).status_int == 404


def test_delete_to_pending_delete_leaves_the_locations_to_the_scrubber(client: Client) -> None:
    """X-Glance-Registry-To-State: pending_delete: the delayed delete in one
    conditional write; the locations become pending_delete, not deleted."""
    image = client.create("A", location="file:///a", status="active")
    path = "/images/" + image["id"]
    headers = {"X-Glance-Registry-From-State": "active",
               "X-Glance-Registry-To-State": "pending_delete"}
    res = client.delete(path, "A", headers=headers)
    assert res.status_int == 200
    assert (res.json["image"]["status"], res.json["image"]["deleted"]) == \
        ("pending_delete", True)
    listed = client.get("/images/detail?deleted=True&status=pending_delete"
                        "&is_public=none", "admin").json["images"]
    assert [(i["id"], [loc["status"] for loc in i["location_data"]]) for i in listed] == \
        [(image["id"], ["pending_delete"])]


@pytest.mark.parametrize("headers", [
    {"X-Glance-Registry-To-State": "pending_delete"},
    {"X-Glance-Registry-From-State": "active", "X-Glance-Registry-To-State": "killed"},
])
def test_delete_to_state_must_be_a_deleted_status_after_a_from_state(client: Client,
                                                                     headers) -> None:
    image = client.create("A", status="active")
    path = "/images/" + image["id"]
    res = client.delete(path, "A", headers=headers)
    assert res.status_int == 400
    assert "pending_delete" in res.text
    assert client.get(path, "A").json["image"]["status"] == "active"


def test_delete_authorization(client: Client) -> None:
    public = client.create("A", is_public=True)["id"]
    private = client.create("A")["id"]
    assert client.delete("/images/" + public, "B").status_int == 403
    assert client.delete("/images/" + private, "B").status_int == 404
    assert client.delete("/images/" + uuid4(), "B").status_int == 404
    assert client.delete("/images/" + public, "admin").status_int == 200
    assert client.get("/images/" + public, "A").status_int == 404
