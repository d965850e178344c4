"""POST /images: checks, sources and their outcomes (api-v1.md section 9).

Every refused create must leave nothing behind: no record, no file.
"""

from __future__ import annotations

import os

import pytest

from glance_clone.common.chunking import BODY_PIECE
from glance_clone.common.redaction import redact_url

from .helpers import (
    ADMIN,
    FORMATS,
    all_images,
    assert_no_upload_leftovers,
    create,
    create_image,
    image_files,
    md5,
    message,
    policy_file,
    streamed,
    wait_for_status,
)

pytestmark = pytest.mark.timeout(60)

FULL_KEYS = {"id", "name", "status", "size", "virtual_size", "disk_format",
             "container_format", "checksum", "min_disk", "min_ram", "is_public",
             "protected", "owner", "created_at", "updated_at", "deleted_at", "deleted",
             "properties"}


def assert_nothing_created(stack):
    assert all_images(stack) == []
    assert stack.stored_files() == []


# -- plain creates ------------------------------------------------------------------
def test_create_without_data_is_queued(stack):
    response = create(stack, {"x-image-meta-name": "cirros"})
    assert response.status_int == 201
    assert response.content_type == "application/json"
    image = response.json["image"]
    assert set(image) == FULL_KEYS
    assert (image["status"], image["size"], image["owner"]) == ("queued", 0, "t1")
    assert response.headers["Location"] == "http://localhost/v1/images/" + image["id"]
    assert "ETag" not in response.headers
    assert stack.stored_files() == []


def test_create_with_declared_size_zero_is_active(stack):
    image = create_image(stack, {"x-image-meta-size": "0"})
    assert (image["status"], image["size"]) == ("active", 0)


def test_create_with_declared_size_only_is_queued(stack):
    image = create_image(stack, {"x-image-meta-size": "77"})
    assert (image["status"], image["size"]) == ("queued", 77)


def test_create_with_client_chosen_id(stack):
    wanted = "71c675ab-d94f-49cd-a114-e12490b328d9"
    image = create_image(stack, {"x-image-meta-id": wanted})
    assert image["id"] == wanted
    response = create(stack, {"x-image-meta-id": wanted})
    assert response.status_int == 409
    assert "An image with identifier %s already exists" % wanted in message(response)
    assert len(all_images(stack)) == 1


def test_create_with_bad_id_is_400(stack):
    response = create(stack, {"x-image-meta-id": "not-a-uuid"})
    assert response.status_int == 400
    assert "Failed to reserve image. Got error:" in message(response)
    assert "Invalid image id format" in message(response)
    assert_nothing_created(stack)


def test_create_with_out_of_range_value_is_400(stack):
    response = create(stack, {"x-image-meta-min_disk": "2147483648"})
    assert response.status_int == 400
    assert "'min_disk' value out of range, must not exceed 2147483647" in message(response)
    assert_nothing_created(stack)


def test_create_with_body_uploads_and_activates(stack):
    data = os.urandom(300 * 1024 + 7)
    response = create(stack, dict(FORMATS, **{"x-image-meta-name": "disk"}), body=data)
    assert response.status_int == 201
    image = response.json["image"]
    assert (image["status"], image["size"], image["checksum"]) == (
        "active", len(data), md5(data))
    assert response.headers["ETag"] == md5(data)
    assert "location" not in response.text and "file://" not in response.text
    assert image_files(stack) == [image["id"]]
    with open(os.path.join(stack.datadir, image["id"]), "rb") as fh:
        assert fh.read() == data
    assert stack.request("/v1/images/" + image["id"], tenant="t1").body == data


def test_create_with_chunked_body(stack):
    data = os.urandom(150 * 1024)
    from .helpers import Body
    response = streamed(stack, "/v1/images", "POST", Body(data, chunk=10000), FORMATS)
    assert response.status_int == 201, response.body
    image = response.json["image"]
    assert (image["status"], image["size"], image["checksum"]) == (
        "active", len(data), md5(data))


def test_create_with_matching_declared_size_and_checksum(stack):
    data = b"0123456789"
    image = create_image(stack, {"x-image-meta-size": "10",
                                 "x-image-meta-checksum": md5(data)}, body=data)
    assert (image["status"], image["checksum"]) == ("active", md5(data))


def test_create_with_empty_chunked_body_and_size_zero(stack):
    from .helpers import Body
    response = streamed(stack, "/v1/images", "POST", Body(b""),
                        dict(FORMATS, **{"x-image-meta-size": "0"}))
    assert response.status_int == 201, response.body
    assert (response.json["image"]["status"], response.json["image"]["size"]) == ("active", 0)


def test_create_declared_zero_with_a_body_is_a_mismatch(stack):
    response = create(stack, dict(FORMATS, **{"x-image-meta-size": "0"}), body=b"data")
    assert response.status_int == 400
    assert "Supplied size (0) and size generated from uploaded image (4)" in message(response)
    assert [i["status"] for i in all_images(stack)] == ["killed"]
    assert_no_upload_leftovers(stack)


# -- size cap -----------------------------------------------------------------------
@pytest.mark.parametrize("how", ["content-length", "declared"])
def test_size_over_cap_is_refused_before_anything_is_stored(stack_with, how):
    stack = stack_with({"image_size_cap": 100})
    if how == "content-length":
        response = create(stack, FORMATS, body=b"x" * 101)
    else:
        response = create(stack, {"x-image-meta-size": "101"})
    assert response.status_int == 400
    assert "Denying attempt to upload image larger than 100 bytes." in message(response)
    assert_nothing_created(stack)


def test_size_at_cap_is_accepted(stack_with):
    stack = stack_with({"image_size_cap": 100})
    assert create_image(stack, body=b"x" * 100)["size"] == 100


# -- policies, protections, quotas --------------------------------------------------
@pytest.mark.parametrize("rule, headers, body", [
    ("add_image", {}, None),
    ("upload_image", FORMATS, b"data"),
    ("publicize_image", {"x-image-meta-is_public": "true"}, None),
    ("copy_from", {"x-glance-api-copy-from": "http://127.0.0.1:1/x"}, None),
    ("upload_image", {"x-glance-api-copy-from": "http://127.0.0.1:1/x"}, None),
    ("set_image_location", dict(FORMATS, **{"x-image-meta-location": "http://127.0.0.1:1/x"}),
     None),
])
def test_policy_denials_create_nothing(stack_with, tmp_path, rule, headers, body):
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, {rule: "!"})})
    response = create(stack, headers, body=body)
    assert response.status_int == 403
    assert_nothing_created(stack)


def test_publicize_image_is_admin_only_by_default(stack):
    response = create(stack, {"x-image-meta-is_public": "true"})
    assert response.status_int == 403
    assert_nothing_created(stack)
    assert create_image(stack, {"x-image-meta-is_public": "true"}, **ADMIN)["is_public"]


def test_property_quota_is_413_and_creates_nothing(stack_with):
    stack = stack_with({"image_property_quota": 2})
    headers = {"x-image-meta-property-%s" % n: "v" for n in "abc"}
    response = create(stack, headers)
    assert response.status_int == 413
    assert ("The limit has been exceeded on the number of allowed image properties. "
            "Attempted: 3, Maximum: 2") in message(response)
    assert_nothing_created(stack)
    headers.pop("x-image-meta-property-c")
    assert len(create_image(stack, headers)["properties"]) == 2


def test_negative_property_quota_is_unlimited(stack_with):
    stack = stack_with({"image_property_quota": -1})
    headers = {"x-image-meta-property-p%d" % n: "v" for n in range(140)}
    assert len(create_image(stack, headers)["properties"]) == 140


# -- sources --------------------------------------------------------------------------
@pytest.mark.parametrize("headers, body", [
    ({"x-image-meta-location": "http://127.0.0.1:1/a"}, b"data"),
    ({"x-glance-api-copy-from": "http://127.0.0.1:1/a"}, b"data"),
    ({"x-image-meta-location": "http://127.0.0.1:1/a",
      "x-glance-api-copy-from": "http://127.0.0.1:1/b"}, None),
])
def test_multiple_sources_are_400(stack, headers, body):
    response = create(stack, dict(FORMATS, **headers), body=body)
    assert response.status_int == 400
    assert "It's invalid to provide multiple image sources." in message(response)
    assert_nothing_created(stack)


@pytest.mark.parametrize("headers, text", [
    ({"x-image-meta-container_format": "bare"}, "Disk format is not specified."),
    ({"x-image-meta-disk_format": "raw"}, "Container format is not specified."),
])
@pytest.mark.parametrize("source", ["body", "location"])
def test_formats_are_required_for_data_and_locations(stack, remote, headers, text, source):
    body = None
    if source == "body":
        body = b"data"
    else:
        headers = dict(headers, **{"x-image-meta-location": remote.add("img", b"data")})
    response = create(stack, headers, body=body)
    assert response.status_int == 400
    assert text in message(response)
    assert_nothing_created(stack)


def test_formats_are_not_required_for_copy_from(stack, remote):
    url = remote.add("img", b"remote data")
    response = create(stack, {"x-glance-api-copy-from": url})
    assert response.status_int == 201
    assert wait_for_status(stack, response.json["image"]["id"], {"active", "killed"}) == "active"


REFUSED = ["file:///etc/passwd", "filesystem:///var/lib/glance/images/x",
           "swift+config://ref1/container/obj", "gopher://127.0.0.1/x", "nonsense",
           "rbd://pool/image"]


@pytest.mark.parametrize("url", REFUSED)
@pytest.mark.parametrize("header", ["x-image-meta-location", "x-glance-api-copy-from"])
def test_refused_external_sources(stack, header, url):
    response = create(stack, dict(FORMATS, **{header: url}))
    assert response.status_int == 400
    assert "External sources are not supported: '%s'" % redact_url(url) in message(response)
    assert_nothing_created(stack)


@pytest.mark.parametrize("header", ["x-image-meta-location", "x-glance-api-copy-from"])
def test_empty_external_source_is_400(stack, header):
    response = create(stack, dict(FORMATS, **{header: ""}))
    assert response.status_int == 400
    assert "External source should not be empty" in message(response)
    assert_nothing_created(stack)


@pytest.mark.parametrize("url", ["http://10.1.2.3/x", "http://localhost:9292/v1/images",
                                 "http://2130706433/x", "http://[::1]/x",
                                 "http://169.254.169.254/latest/meta-data"])
@pytest.mark.parametrize("header", ["x-image-meta-location", "x-glance-api-copy-from"])
def test_internal_addresses_are_refused(stack_with, url, header):
    stack = stack_with({"import_filtering_opts.allowed_hosts": []})
    response = create(stack, dict(FORMATS, **{header: url}))
    assert response.status_int == 400
    assert "External sources are not supported" in message(response)
    assert_nothing_created(stack)


def test_unknown_target_store_is_400(stack):
    response = create(stack, dict(FORMATS, **{"x-image-meta-store": "swift"}), body=b"d")
    assert response.status_int == 400
    assert "Required store swift is invalid" in message(response)
    assert_nothing_created(stack)


def test_location_activates_with_the_remote_size(stack, remote):
    data = os.urandom(4096)
    url = remote.add("disk.img", data)
    response = create(stack, dict(FORMATS, **{"x-image-meta-location": url}))
    assert response.status_int == 201, response.body
    image = response.json["image"]
    assert (image["status"], image["size"]) == ("active", len(data))
    assert url not in response.text and "location" not in response.text
    assert stack.stored_files() == []
    head = stack.request("/v1/images/" + image["id"], "HEAD", tenant="t1")
    assert url not in str(head.headers)
    download = stack.request("/v1/images/" + image["id"], tenant="t1")
    assert download.status_int == 200 and download.body == data


def test_location_with_matching_declared_size(stack, remote):
    url = remote.add("disk.img", b"x" * 50)
    image = create_image(stack, dict(FORMATS, **{"x-image-meta-location": url,
                                                 "x-image-meta-size": "50"}))
    assert (image["status"], image["size"]) == ("active", 50)


def test_location_with_size_mismatch_is_409(stack, remote):
    url = remote.add("disk.img", b"x" * 50)
    response = create(stack, dict(FORMATS, **{"x-image-meta-location": url,
                                              "x-image-meta-size": "51"}))
    assert response.status_int == 409
    assert ("Provided image size must match the stored image size. (provided size: 51, "
            "stored size: 50)") in message(response)
    assert_nothing_created(stack)


def test_location_missing_remotely_is_404(stack, remote):
    response = create(stack, dict(FORMATS, **{
        "x-image-meta-location": remote.base_url + "/absent"}))
    assert response.status_int == 404
    assert "HTTP datastore could not find image at URI." in message(response)
    assert_nothing_created(stack)


def test_copy_from_copies_in_the_background(stack, remote):
    data = os.urandom(100 * 1024 + 3)
    url = remote.add("source.img", data)
    response = create(stack, dict(FORMATS, **{"x-glance-api-copy-from": url}))
    assert response.status_int == 201, response.body
    image = response.json["image"]
    assert image["status"] == "queued"
    assert url not in response.text
    assert wait_for_status(stack, image["id"], {"active", "killed"}) == "active"
    shown = stack.request("/v1/images/" + image["id"], tenant="t1")
    assert shown.body == data
    assert shown.headers["x-image-meta-checksum"] == md5(data)
    assert image_files(stack) == [image["id"]]
    assert url not in str(shown.headers)


def test_copy_from_a_source_of_unknown_size(stack, remote):
    data = os.urandom(70000)
    url = remote.add("stream.img", data, sized=False)
    response = create(stack, {"x-glance-api-copy-from": url})
    assert response.status_int == 201
    image = response.json["image"]
    assert (image["status"], image["size"]) == ("queued", 0)
    assert wait_for_status(stack, image["id"], {"active", "killed"}) == "active"
    shown = stack.request("/v1/images/" + image["id"], tenant="t1")
    assert shown.body == data
    assert shown.headers["x-image-meta-size"] == str(len(data))


def test_locations_are_for_members_of_the_project_by_default(stack, remote):
    url = remote.add("mine.img", b"abc")
    headers = dict(FORMATS, **{"x-image-meta-location": url})
    assert create(stack, headers, roles="reader").status_int == 403
    assert_nothing_created(stack)
    assert create_image(stack, headers)["status"] == "active"
    # An admin creating for another project passes as an admin.
    owned = create_image(stack, dict(headers, **{"x-image-meta-owner": "t7"}), **ADMIN)
    assert owned["owner"] == "t7"


def test_location_of_unknown_size(stack, remote):
    url = remote.add("stream.img", b"abc", sized=False)
    image = create_image(stack, dict(FORMATS, **{"x-image-meta-location": url}))
    assert (image["status"], image["size"]) == ("active", 0)


def test_copy_from_missing_remotely_is_404_and_creates_nothing(stack, remote):
    response = create(stack, {"x-glance-api-copy-from": remote.base_url + "/absent"})
    assert response.status_int == 404
    assert_nothing_created(stack)


def test_copy_from_with_wrong_declared_size_is_killed(stack, remote):
    url = remote.add("source.img", b"x" * 10)
    response = create(stack, dict(FORMATS, **{"x-glance-api-copy-from": url,
                                              "x-image-meta-size": "11"}))
    assert response.status_int == 201
    image_id = response.json["image"]["id"]
    assert wait_for_status(stack, image_id, {"active", "killed"}) == "killed"
    assert_no_upload_leftovers(stack)


def test_copy_from_whose_source_vanished_is_killed(stack, remote):
    url = remote.add("source.img", b"x" * 10)
    response = create(stack, dict(FORMATS, **{"x-glance-api-copy-from": url,
                                              "x-image-meta-size": "10"}))
    assert response.status_int == 201
    del remote.files["/source.img"]
    image_id = response.json["image"]["id"]
    assert wait_for_status(stack, image_id, {"active", "killed"}) == "killed"
    assert_no_upload_leftovers(stack)


def test_copy_from_into_a_read_only_store_is_killed(stack, remote):
    url = remote.add("source.img", b"x" * 10)
    response = create(stack, dict(FORMATS, **{"x-glance-api-copy-from": url,
                                              "x-image-meta-store": "http"}))
    assert response.status_int == 201
    image_id = response.json["image"]["id"]
    assert wait_for_status(stack, image_id, {"active", "killed"}) == "killed"
    assert_no_upload_leftovers(stack)


def test_upload_body_is_read_in_bounded_pieces(stack):
    from .helpers import Body

    class Recording(Body):
        sizes: list[int] = []

        def read(self, size=-1):
            self.sizes.append(size)
            return super().read(size)
    data = os.urandom(5 * 1024 * 1024)
    body = Recording(data, chunk=len(data))
    response = streamed(stack, "/v1/images", "POST", body, FORMATS, content_length=len(data))
    assert response.status_int == 201
    assert body.sizes and all(0 < size <= BODY_PIECE for size in body.sizes)
    assert response.json["image"]["checksum"] == md5(data)
