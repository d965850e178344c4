"""PUT /images/{id}: checks, properties and uploads (api-v1.md section 10)."""

from __future__ import annotations

import os

import pytest

from .helpers import (
    ADMIN,
    FORMATS,
    NO_IMAGE_ID,
    create_image,
    md5,
    message,
    meta,
    policy_file,
    registry_update,
    status_of,
    wait_for_status,
)

pytestmark = pytest.mark.timeout(60)

FULL_KEYS = {"id", "name", "status", "size", "virtual_size", "disk_format",
             "container_format", "checksum", "min_disk", "min_ram", "is_public",
             "protected", "owner", "created_at", "updated_at", "deleted_at", "deleted",
             "properties"}


def update(stack, image_id, headers=None, body=None, **caller):
    caller = caller or {"tenant": "t1"}
    return stack.request("/v1/images/" + image_id, "PUT", body=body, headers=headers,
                         **caller)


@pytest.fixture
def active(stack):
    return create_image(stack, {"x-image-meta-name": "a", "x-image-meta-property-p": "1",
                                "x-image-meta-property-q": "2"}, body=b"x" * 10)


def test_metadata_update(stack, active):
    response = update(stack, active["id"], {"x-image-meta-name": "renamed",
                                            "x-image-meta-min_ram": "64",
                                            "x-image-meta-property-p": "1"})
    assert response.status_int == 200
    assert response.content_type == "application/json"
    image = response.json["image"]
    assert set(image) == FULL_KEYS
    assert (image["name"], image["min_ram"], image["status"]) == ("renamed", 64, "active")
    assert response.headers["ETag"] == md5(b"x" * 10)
    assert "file://" not in response.text
    assert meta(stack, active["id"])["name"] == "renamed"


def test_purge_is_the_default(stack, active):
    image = update(stack, active["id"], {"x-image-meta-property-r": "3"}).json["image"]
    assert image["properties"] == {"r": "3"}
    image = update(stack, active["id"], {"x-image-meta-name": "b"}).json["image"]
    assert image["properties"] == {}
    assert "property-r" not in meta(stack, active["id"])


@pytest.mark.parametrize("word", ["false", "0", "no"])
def test_purge_false_merges(stack, active, word):
    image = update(stack, active["id"], {"x-image-meta-property-r": "3",
                                         "x-image-meta-property-p": "changed",
                                         "x-glance-registry-purge-props": word}).json["image"]
    assert image["properties"] == {"p": "changed", "q": "2", "r": "3"}


def test_upload_never_purges(stack):
    image = create_image(stack, dict(FORMATS, **{"x-image-meta-property-keep": "me"}))
    response = update(stack, image["id"], body=b"data")
    assert response.status_int == 200
    assert response.json["image"]["properties"] == {"keep": "me"}


def test_upload_into_a_queued_image(stack):
    image = create_image(stack, FORMATS)
    data = os.urandom(70000)
    response = update(stack, image["id"], {"x-image-meta-checksum": md5(data)}, body=data)
    assert response.status_int == 200
    updated = response.json["image"]
    assert (updated["status"], updated["size"], updated["checksum"]) == (
        "active", len(data), md5(data))
    assert stack.request("/v1/images/" + image["id"], tenant="t1").body == data


def test_upload_sets_formats_in_the_same_request(stack):
    image = create_image(stack)
    response = update(stack, image["id"], FORMATS, body=b"data")
    assert response.status_int == 200
    assert response.json["image"]["status"] == "active"


def test_upload_without_formats_is_400_and_changes_nothing(stack):
    image = create_image(stack, {"x-image-meta-disk_format": "raw", "x-image-meta-name": "n"})
    response = update(stack, image["id"], {"x-image-meta-name": "changed"}, body=b"data")
    assert response.status_int == 400
    assert "Container format is not specified." in message(response)
    assert meta(stack, image["id"])["name"] == "n"
    assert status_of(stack, image["id"]) == "queued"
    assert stack.stored_files() == []


def test_upload_into_an_active_image_is_409(stack, active):
    response = update(stack, active["id"], body=b"more")
    assert response.status_int == 409
    assert "Cannot upload to an unqueued image" in message(response)


@pytest.mark.parametrize("header", ["x-image-meta-location", "x-glance-api-copy-from"])
def test_source_on_a_non_queued_image_is_400(stack, active, header):
    response = update(stack, active["id"], {header: "http://127.0.0.1:1/x"})
    assert response.status_int == 400
    assert ("Attempted to update Location field for an image not in queued status."
            in message(response))


def test_location_on_a_queued_image_activates(stack, remote):
    image = create_image(stack, FORMATS)
    url = remote.add("img", b"y" * 33)
    response = update(stack, image["id"], {"x-image-meta-location": url})
    assert response.status_int == 200, response.body
    assert (response.json["image"]["status"], response.json["image"]["size"]) == ("active", 33)
    assert url not in response.text
    assert stack.request("/v1/images/" + image["id"], tenant="t1").body == b"y" * 33


def test_a_location_needs_a_member_of_the_images_project(stack, remote):
    image = create_image(stack, FORMATS)
    url = remote.add("img", b"y" * 33)
    reader = {"tenant": "t1", "roles": "reader"}
    response = update(stack, image["id"], {"x-image-meta-location": url}, **reader)
    assert response.status_int == 403, response.body
    # Under the new defaults modify_image refuses a reader first.
    assert "modify_image" in message(response)
    assert status_of(stack, image["id"]) == "queued"
    # The rule looks at the image's project, not the caller's: an admin of
    # another project passes as an admin.
    response = update(stack, image["id"], {"x-image-meta-location": url}, **ADMIN)
    assert response.status_int == 200, response.body
    assert status_of(stack, image["id"]) == "active"


def test_location_with_size_mismatch_is_409_and_changes_nothing(stack, remote):
    image = create_image(stack, dict(FORMATS, **{"x-image-meta-size": "5"}))
    url = remote.add("img", b"y" * 33)
    response = update(stack, image["id"], {"x-image-meta-location": url})
    assert response.status_int == 409
    assert "(provided size: 5, stored size: 33)" in message(response)
    assert status_of(stack, image["id"]) == "queued"


def test_copy_from_on_a_queued_image(stack, remote):
    image = create_image(stack, FORMATS)
    url = remote.add("img", b"z" * 1000)
    response = update(stack, image["id"], {"x-glance-api-copy-from": url})
    assert response.status_int == 200
    assert response.json["image"]["status"] == "queued"
    assert wait_for_status(stack, image["id"], {"active", "killed"}) == "active"
    assert stack.request("/v1/images/" + image["id"], tenant="t1").body == b"z" * 1000


@pytest.mark.parametrize("header", ["x-image-meta-location", "x-glance-api-copy-from"])
def test_refused_sources_on_update(stack, header):
    image = create_image(stack, FORMATS)
    response = update(stack, image["id"], {header: "file:///etc/passwd"})
    assert response.status_int == 400
    assert "External sources are not supported: 'file://'" in message(response)
    assert status_of(stack, image["id"]) == "queued"


@pytest.mark.parametrize("field, value", [("status", "queued"), ("status", "killed"),
                                          ("id", NO_IMAGE_ID)])
def test_status_and_id_cannot_change(stack, active, field, value):
    for caller in ({"tenant": "t1"}, ADMIN):
        response = update(stack, active["id"], {"x-image-meta-" + field: value}, **caller)
        assert response.status_int == 403
        assert "Forbidden to modify '%s' of image." % field in message(response)
    assert status_of(stack, active["id"]) == "active"


def test_same_status_and_id_are_accepted(stack, active):
    response = update(stack, active["id"], {"x-image-meta-status": "active",
                                            "x-image-meta-id": active["id"]})
    assert response.status_int == 200


@pytest.mark.parametrize("field, value", [("size", "11"), ("checksum", md5(b"other"))])
@pytest.mark.parametrize("status", ["active", "deactivated"])
def test_non_admin_cannot_change_size_or_checksum_of_active(stack, active, field, value,
                                                            status):
    registry_update(stack, active["id"], {"status": status})
    response = update(stack, active["id"], {"x-image-meta-" + field: value})
    assert response.status_int == 403
    assert "Forbidden to modify '%s' of %s image." % (field, status) in message(response)
    same = "10" if field == "size" else md5(b"x" * 10)
    assert update(stack, active["id"], {"x-image-meta-" + field: same}).status_int == 200
    response = update(stack, active["id"], {"x-image-meta-" + field: value}, **ADMIN)
    assert response.status_int == 200
    assert str(response.json["image"][field]) == value


def test_non_admin_may_set_size_of_a_queued_image(stack):
    image = create_image(stack)
    assert update(stack, image["id"], {"x-image-meta-size": "99"}).json["image"]["size"] == 99


def test_deleted_image_cannot_be_updated(stack, active):
    assert stack.request("/v1/images/" + active["id"], "DELETE", tenant="t1").status_int == 200
    response = update(stack, active["id"], {"x-image-meta-name": "x"}, **ADMIN)
    assert response.status_int == 403
    assert "Forbidden to update deleted image." in message(response)
    assert update(stack, active["id"], {"x-image-meta-name": "x"}).status_int == 404


def test_missing_image_is_404(stack):
    response = update(stack, NO_IMAGE_ID, {"x-image-meta-name": "x"})
    assert response.status_int == 404
    assert "Image with identifier %s not found" % NO_IMAGE_ID in message(response)


def test_non_owner_of_public_image_is_403(stack):
    image = create_image(stack, {"x-image-meta-is_public": "true", "x-image-meta-name": "p"},
                         **ADMIN)
    response = update(stack, image["id"], {"x-image-meta-name": "mine"}, tenant="t2")
    assert response.status_int == 403
    assert "Forbidden to update image" in message(response)
    assert meta(stack, image["id"])["name"] == "p"


def test_non_owner_of_private_image_is_404(stack, active):
    assert update(stack, active["id"], {"x-image-meta-name": "x"}, tenant="t2").status_int == 404


def test_member_of_shared_image_gets_404_not_500(stack, active):
    assert stack.request("/v1/images/%s/members/t2" % active["id"], "PUT",
                         tenant="t1").status_int == 204
    assert stack.request("/v1/images/" + active["id"], "HEAD", tenant="t2").status_int == 200
    response = update(stack, active["id"], {"x-image-meta-name": "x"}, tenant="t2")
    assert response.status_int == 404
    assert meta(stack, active["id"])["name"] == "a"


def test_owner_change_is_ignored_for_non_admins(stack, active):
    response = update(stack, active["id"], {"x-image-meta-owner": "t9"})
    assert response.status_int == 200
    assert response.json["image"]["owner"] == "t1"
    response = update(stack, active["id"], {"x-image-meta-owner": "t9"}, **ADMIN)
    assert response.json["image"]["owner"] == "t9"


def test_making_public_needs_publicize_image(stack, active):
    response = update(stack, active["id"], {"x-image-meta-is_public": "true"})
    assert response.status_int == 403
    assert meta(stack, active["id"])["is_public"] == "False"
    response = update(stack, active["id"], {"x-image-meta-is_public": "true"}, **ADMIN)
    assert response.json["image"]["is_public"] is True


def test_protected_can_be_cleared(stack, active):
    assert update(stack, active["id"], {"x-image-meta-protected": "true"}).json[
        "image"]["protected"] is True
    assert update(stack, active["id"], {"x-image-meta-protected": "false"}).json[
        "image"]["protected"] is False


@pytest.mark.parametrize("rule, headers, body", [
    ("modify_image", {"x-image-meta-name": "x"}, None),
    ("upload_image", {}, b"data"),
    ("copy_from", {"x-glance-api-copy-from": "http://127.0.0.1:1/x"}, None),
    ("set_image_location", {"x-image-meta-location": "http://127.0.0.1:1/x"}, None),
])
def test_policy_denials_change_nothing(stack_with, tmp_path, rule, headers, body):
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, {rule: "!"})})
    image = create_image(stack, dict(FORMATS, **{"x-image-meta-name": "n"}))
    response = update(stack, image["id"], headers, body=body)
    assert response.status_int == 403
    assert meta(stack, image["id"])["name"] == "n"
    assert status_of(stack, image["id"]) == "queued"


def test_property_quota_counts_merged_properties_unless_purging(stack_with):
    stack = stack_with({"image_property_quota": 3})
    image = create_image(stack, {"x-image-meta-property-a": "1",
                                 "x-image-meta-property-b": "2"})
    merge = {"x-glance-registry-purge-props": "false"}
    response = update(stack, image["id"], dict(merge, **{"x-image-meta-property-c": "3",
                                                        "x-image-meta-property-d": "4"}))
    assert response.status_int == 413
    assert "Attempted: 4, Maximum: 3" in message(response)
    assert sorted(k for k in meta(stack, image["id"]) if k.startswith("property-")) == [
        "property-a", "property-b"]
    response = update(stack, image["id"], dict(merge, **{"x-image-meta-property-a": "9",
                                                        "x-image-meta-property-c": "3"}))
    assert response.status_int == 200
    purge = {"x-image-meta-property-%s" % n: "v" for n in "wxy"}
    assert update(stack, image["id"], purge).status_int == 200
    purge["x-image-meta-property-z"] = "v"
    assert update(stack, image["id"], purge).status_int == 413


def test_invalid_headers_are_400_on_update(stack, active):
    response = update(stack, active["id"], {"x-image-meta-min_ram": "lots"})
    assert response.status_int == 400
    assert "Cannot convert image min_ram 'lots' to an integer." in message(response)
    response = update(stack, active["id"], {"x-image-meta-min_disk": "2147483648"})
    assert response.status_int == 400
    assert "Failed to update image metadata. Got error:" in message(response)


def test_size_cap_applies_to_update(stack_with):
    stack = stack_with({"image_size_cap": 10})
    image = create_image(stack, FORMATS)
    response = update(stack, image["id"], body=b"x" * 11)
    assert response.status_int == 400
    assert "Denying attempt to upload image larger than 10 bytes." in message(response)
    assert status_of(stack, image["id"]) == "queued"
