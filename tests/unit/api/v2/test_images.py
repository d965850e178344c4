"""v2 images: create, show, list, patch, delete, (de)activate, tags."""

from __future__ import annotations

import pytest

from glance_clone.api.v2.images import json_response
from glance_clone.common import wsgi

from .conftest import ADMIN, PATCH20, V2


def test_create_defaults_show_and_location(v2: V2) -> None:
    res = v2.call("POST", "/images", {})
    assert res.status_int == 201
    image = res.json
    # An absolute URL that leads to the image (with the host the request named).
    assert res.headers["Location"] == "http://localhost/v2/images/" + image["id"]
    assert image["status"] == "queued" and image["visibility"] == "shared"
    assert image["owner"] == "t1" and image["protected"] is False
    assert image["os_hidden"] is False and image["tags"] == []
    assert image["size"] is None and image["checksum"] is None
    assert image["self"] == "/v2/images/" + image["id"]
    assert image["file"] == image["self"] + "/file"
    assert image["schema"] == "/v2/schemas/image"
    assert image["created_at"].endswith("Z") and "." not in image["created_at"]
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown == image


def test_create_with_everything(v2: V2) -> None:
    image = v2.create(name="cirros", disk_format="qcow2", container_format="bare",
                      tags=["a", "b", "a"], min_ram=64, protected=True,
                      os_hidden=True, distro="ubuntu",
                      id="8b3e1c56-97e7-4c3a-8b7a-2f1e0c1d2e3f")
    assert image["id"] == "8b3e1c56-97e7-4c3a-8b7a-2f1e0c1d2e3f"
    assert sorted(image["tags"]) == ["a", "b"] and image["distro"] == "ubuntu"
    assert image["min_ram"] == 64 and image["os_hidden"] is True
    res = v2.call("POST", "/images", {"id": image["id"]})
    assert res.status_int == 409


@pytest.mark.parametrize("body, status", [
    ({"self": "x"}, 403), ({"file": "x"}, 403), ({"schema": "x"}, 403),
    ({"direct_url": "x"}, 403), ({"status": "active"}, 403), ({"size": 3}, 403),
    ({"checksum": "x"}, 403), ({"created_at": "x"}, 403), ({"os_hash_value": "x"}, 403),
    ({"os_glance_import_task": "x"}, 403), ({"locations": []}, 403),
    ({"deleted": "x"}, 403), ({"name": 5}, 400), ({"visibility": "everyone"}, 400),
    ({"disk_format": "floppy"}, 400), ({"min_ram": -1}, 400), ({"id": "nope"}, 400),
    ({"id": "8B3E1C56-97E7-4C3A-8B7A-2F1E0C1D2E3F"}, 400),
    ({"extra": 5}, 400), ({"x" * 256: "v"}, 400), ({"tags": ["t" * 256]}, 400),
    ([], 400), ({"owner": "someone-else"}, 403), ({"visibility": "public"}, 403),
    # What the schema refuses is a 400 first, whatever the name; only the
    # links and direct_url are refused before it looks.
    ({"status": "bogus"}, 400), ({"size": "big"}, 400), ({"locations": "x"}, 400),
    ({"os_glance_x": 5}, 400), ({"self": 5}, 403), ({"stores": 5}, 403),
])
def test_create_refusals(v2: V2, body, status) -> None:
    res = v2.call("POST", "/images", body)
    assert res.status_int == status, res.text
    assert v2.names(tenant="t1", roles="reader,member") == []


def test_create_needs_a_body_and_json(v2: V2) -> None:
    assert v2.call("POST", "/images").status_int == 400
    assert v2.call("POST", "/images", raw=b"{no", content_type="application/json"
                   ).status_int == 400


def test_admins_publicize_and_communitize(v2: V2) -> None:
    assert v2.create(visibility="public", caller=ADMIN)["visibility"] == "public"
    assert v2.create(visibility="community", caller=ADMIN)["visibility"] == "community"
    assert v2.create(owner="t9", caller=ADMIN)["owner"] == "t9"


def test_show_of_others(v2: V2) -> None:
    private = v2.create(visibility="private")
    assert v2.call("GET", "/images/" + private["id"], tenant="t2").status_int == 404
    assert v2.call("GET", "/images/" + private["id"], **ADMIN).status_int == 200
    assert v2.call("GET", "/images/nope").status_int == 404


def test_patch_both_media_types(v2: V2) -> None:
    image = v2.create(name="a", distro="x")
    res = v2.patch(image["id"], [{"op": "replace", "path": "/name", "value": "b"},
                                 {"op": "add", "path": "/os", "value": "linux"},
                                 {"op": "remove", "path": "/distro"},
                                 {"op": "replace", "path": "/tags", "value": ["t"]}])
    assert res.status_int == 200, res.text
    assert res.json["name"] == "b" and res.json["os"] == "linux"
    assert "distro" not in res.json and res.json["tags"] == ["t"]
    # v2.1 "add" overwrites; v2.0 "add" of a present property is a conflict.
    assert v2.patch(image["id"], [{"op": "add", "path": "/os", "value": "bsd"}]
                    ).json["os"] == "bsd"
    res = v2.patch(image["id"], [{"add": "/os", "value": "x"}], media=PATCH20)
    assert res.status_int == 409
    res = v2.patch(image["id"], [{"replace": "/min_disk", "value": 5}], media=PATCH20)
    assert res.status_int == 200 and res.json["min_disk"] == 5
    # A base attribute is always present: v2.0 may only replace it.
    for path, value in (("/name", "c"), ("/min_ram", 1), ("/owner", "t1")):
        res = v2.patch(image["id"], [{"add": path, "value": value}], media=PATCH20)
        assert res.status_int == 409, (path, res.text)
    assert v2.call("GET", "/images/" + image["id"]).json["name"] == "b"
    res = v2.patch(image["id"], [{"op": "add", "path": "/min_ram", "value": 1}])
    assert res.status_int == 200 and res.json["min_ram"] == 1
    assert v2.patch(image["id"], []).status_int == 200


@pytest.mark.parametrize("ops, status", [
    ([{"op": "replace", "path": "/missing", "value": "x"}], 409),
    ([{"op": "remove", "path": "/missing"}], 409),
    ([{"op": "remove", "path": "/name"}], 403),
    ([{"op": "replace", "path": "/status", "value": "active"}], 403),
    ([{"op": "replace", "path": "/id", "value": "x"}], 403),
    ([{"op": "add", "path": "/os_glance_x", "value": "x"}], 403),
    ([{"op": "replace", "path": "/locations", "value": []}], 403),
    ([{"op": "replace", "path": "/owner", "value": "t2"}], 403),
    ([{"op": "replace", "path": "/visibility", "value": "public"}], 403),
    ([{"op": "replace", "path": "/min_ram", "value": "x"}], 400),
    ([{"op": "move", "path": "/name", "value": "x"}], 400),
    ([{"op": "add", "path": "/tags/-", "value": "x"}], 400),
    ([{"op": "add", "path": "name", "value": "x"}], 400),
    ([{"op": "add", "path": "/name"}], 400),
    ([{"path": "/name", "value": "x"}], 400),
    ({"op": "add"}, 400),
    (["x"], 400),
])
def test_patch_refusals_change_nothing(v2: V2, ops, status) -> None:
    image = v2.create(name="a")
    res = v2.patch(image["id"], [{"op": "replace", "path": "/name", "value": "b"}]
                   + ops if isinstance(ops, list) else ops)
    assert res.status_int == status, res.text
    assert v2.call("GET", "/images/" + image["id"]).json["name"] == "a"


def test_patch_media_type_and_ownership(v2: V2) -> None:
    image = v2.create(name="a", visibility="shared")
    res = v2.patch(image["id"], [], media="application/json")
    assert res.status_int == 415
    assert "v2.1-json-patch" in res.headers["Accept-Patch"]
    assert v2.patch(image["id"], [], tenant="t2").status_int == 404
    public = v2.create(name="p", visibility="public", caller=ADMIN)
    assert v2.patch(public["id"], [], tenant="t2").status_int == 403


def test_formats_change_only_while_queued(v2: V2) -> None:
    image = v2.create(name="a", disk_format="raw", container_format="bare")
    # ami: a format no inspector knows, so any bytes are accepted.
    assert v2.patch(image["id"], [{"op": "replace", "path": "/disk_format",
                                   "value": "ami"}]).status_int == 200
    assert v2.upload(image["id"], b"data").status_int == 204
    assert v2.patch(image["id"], [{"op": "replace", "path": "/disk_format",
                                   "value": "raw"}]).status_int == 403


def test_delete_and_protection(v2: V2, stack) -> None:
    image = v2.create(name="a", protected=True, disk_format="raw",
                      container_format="bare")
    assert v2.upload(image["id"], b"bytes").status_int == 204
    assert v2.call("DELETE", "/images/" + image["id"]).status_int == 403
    assert v2.call("DELETE", "/images/" + image["id"], tenant="t2").status_int == 404
    v2.patch(image["id"], [{"op": "replace", "path": "/protected", "value": False}])
    assert v2.call("DELETE", "/images/" + image["id"]).status_int == 204
    assert v2.call("GET", "/images/" + image["id"]).status_int == 404
    assert v2.call("GET", "/images/%s/file" % image["id"]).status_int == 404
    assert stack.stored_files() == []


def test_who_may_comes_before_what_the_status_allows(v2: V2) -> None:
    """403 (policy, protection) before 409 (status) on writes to a
    protected, deactivated image; the status answers only the owner."""
    image = v2.create(name="a", protected=True, disk_format="raw",
                      container_format="bare")
    assert v2.upload(image["id"], b"bytes").status_int == 204
    assert v2.call("POST", "/images/%s/actions/deactivate" % image["id"]).status_int == 204
    path = "/images/" + image["id"]
    reader = {"roles": "reader"}
    assert v2.call("DELETE", path).status_int == 403                 # protected
    assert v2.call("DELETE", path, **reader).status_int == 403       # policy
    assert v2.upload(image["id"], b"more", **reader).status_int == 403
    assert v2.upload(image["id"], b"more").status_int == 409          # deactivated
    assert v2.call("PUT", path + "/stage", raw=b"x",
                   content_type="application/octet-stream").status_int == 409
    rename = [{"op": "replace", "path": "/name", "value": "b"}]
    assert v2.patch(image["id"], rename, **reader).status_int == 403
    assert v2.patch(image["id"], rename).status_int == 200
    # Changes apply in order: the first refused one answers.
    missing = {"op": "remove", "path": "/nope"}
    formats = {"op": "replace", "path": "/disk_format", "value": "qcow2"}
    assert v2.patch(image["id"], [missing, formats]).status_int == 409
    assert v2.patch(image["id"], [formats, missing]).status_int == 403


def test_deactivate_and_reactivate(v2: V2) -> None:
    image = v2.create(name="a", disk_format="raw", container_format="bare")
    path = "/images/%s/actions/" % image["id"]
    assert v2.call("POST", path + "deactivate").status_int == 403  # queued
    v2.upload(image["id"], b"bytes")
    assert v2.call("POST", path + "deactivate").status_int == 204
    assert v2.call("POST", path + "deactivate").status_int == 204
    assert v2.call("GET", "/images/%s/file" % image["id"]).status_int == 403
    assert v2.call("GET", "/images/%s/file" % image["id"], **ADMIN).body == b"bytes"
    assert v2.call("POST", path + "reactivate", tenant="t2").status_int == 404
    assert v2.call("POST", path + "reactivate").status_int == 204
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == b"bytes"
    assert v2.call("GET", path + "reactivate").status_int == 405


def test_tags(v2_with) -> None:
    v2 = v2_with({"image_tag_quota": 2})
    image = v2.create(name="a")
    path = "/images/%s/tags/" % image["id"]
    assert v2.call("PUT", path + "caf%C3%A9").status_int == 204
    assert v2.call("PUT", path + "caf%C3%A9").status_int == 204
    assert v2.call("PUT", path + "two").status_int == 204
    assert v2.call("PUT", path + "three").status_int == 413
    assert v2.call("PUT", path + "x" * 256).status_int == 400
    assert sorted(v2.call("GET", "/images/" + image["id"]).json["tags"]) == ["café", "two"]
    assert v2.call("DELETE", path + "two").status_int == 204
    assert v2.call("DELETE", path + "two").status_int == 404
    assert v2.call("PUT", path + "x", tenant="t2").status_int == 404
    res = v2.patch(image["id"], [{"op": "replace", "path": "/tags",
                                  "value": ["a", "b", "c"]}])
    assert res.status_int == 413


def test_property_quota_and_protections(v2_with, tmp_path) -> None:
    rules = tmp_path / "protections.conf"
    rules.write_text("[^secret_]\ncreate = admin\nread = admin\nupdate = admin\n"
                     "delete = admin\n[.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n")
    v2 = v2_with({"image_property_quota": 2, "property_protection_file": str(rules)})
    assert v2.call("POST", "/images", {"a": "1", "b": "2", "c": "3"}).status_int == 413
    assert v2.call("POST", "/images", {"secret_x": "1"}).status_int == 403
    image = v2.create(secret_y="s", visibility="public", caller=ADMIN)
    assert "secret_y" not in v2.call("GET", "/images/" + image["id"]).json
    assert v2.call("GET", "/images/" + image["id"], **ADMIN).json["secret_y"] == "s"
    assert v2.call("GET", "/images?secret_y=s").status_int == 400
    assert v2.names("?secret_y=s", **ADMIN) == [None]


def test_property_quota_bounds_only_additions(v2_with, tmp_path) -> None:
    from glance_clone.common.context import admin_context
    v2 = v2_with({"image_property_quota": 2})
    registry = v2.stack.v2.registry
    # Above the quota (as after lowering it): the properties may still be
    # changed and removed, not added to.
    image = v2.create(a="1", b="2")
    registry.update_image(admin_context(), image["id"], {"properties": {"c": "3"}})
    res = v2.patch(image["id"], [{"op": "replace", "path": "/a", "value": "x"}])
    assert res.status_int == 200, res.text
    res = v2.patch(image["id"], [{"op": "add", "path": "/d", "value": "4"}])
    assert res.status_int == 413
    res = v2.patch(image["id"], [{"op": "remove", "path": "/c"},
                                 {"op": "replace", "path": "/b", "value": "y"}])
    assert res.status_int == 200, res.text
    assert (res.json["a"], res.json["b"], "c" in res.json) == ("x", "y", False)
    # The service's own os_glance_* properties are not the caller's to count.
    other = v2.create(a="1")
    registry.update_image(admin_context(), other["id"],
                          {"properties": {"os_glance_import_task": "t"}})
    res = v2.patch(other["id"], [{"op": "add", "path": "/b", "value": "2"}])
    assert res.status_int == 200, res.text
    assert res.json["os_glance_import_task"] == "t"
    assert v2.patch(other["id"], [{"op": "add", "path": "/c", "value": "3"}]
                    ).status_int == 413


def test_format_lists_are_the_newest_glances(v2: V2, stack) -> None:
    schema = v2.call("GET", "/schemas/image").json["properties"]
    assert schema["disk_format"]["enum"] == [
        None, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso",
        "ploop"]
    assert schema["container_format"]["enum"] == [
        None, "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]
    made = v2.create(name="n", disk_format="vhdx", container_format="docker")
    assert (made["disk_format"], made["container_format"]) == ("vhdx", "docker")
    # v1 takes the same lists.
    res = stack.request("/v1/images", "POST", tenant="t1", headers={
        "x-image-meta-name": "v1", "x-image-meta-disk_format": "ploop",
        "x-image-meta-container_format": "compressed"})
    assert res.status_int == 201, res.text


def test_formats_of_an_importing_image_stay(v2: V2, stack) -> None:
    from glance_clone.common.context import admin_context
    made = v2.create(name="n", disk_format="raw", container_format="bare")
    stack.v2.registry.update_image(admin_context(), made["id"], {"status": "importing"})
    res = v2.patch(made["id"], [{"op": "replace", "path": "/disk_format",
                                 "value": "qcow2"}])
    assert res.status_int == 403
    assert v2.call("GET", "/images/" + made["id"]).json["disk_format"] == "raw"


def test_json_answers_carry_non_ascii_text_unescaped(v2: V2) -> None:
    name = "образ ☃"
    res = v2.call("POST", "/images", {"name": name, "tags": ["снег"], "note": "☃"})
    assert res.status_int == 201
    assert res.content_type == "application/json"
    # UTF-8 bytes as they are: no \uXXXX escapes in the body.
    assert name.encode("utf-8") in res.body and "снег".encode() in res.body
    assert b"\\u" not in res.body
    assert res.json["name"] == name and res.json["note"] == "☃"
    for path in ("/images/" + res.json["id"], "/images"):
        shown = v2.call("GET", path)
        assert name.encode("utf-8") in shown.body and b"\\u" not in shown.body


def test_json_answers_keep_half_surrogates_escaped() -> None:
    """Text UTF-8 cannot carry (half of a UTF-16 pair) stays a JSON escape:
    the answer is still UTF-8 and reads back as the same text."""
    res = json_response(wsgi.Request.blank("/v2/images"), {"name": "a\ud800☃"})
    assert res.body == '{"name":"a\\ud800☃"}'.encode()
    assert res.json == {"name": "a\ud800☃"}
