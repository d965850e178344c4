"""Failed uploads (api-v1.md section 9, upload failures; README lifecycle).

After every failed upload: the right status and message, the image killed
(or never created), no image file and no partial file in the store
directory, and no image left in ``saving``.
"""

from __future__ import annotations

import os

import pytest

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain.upload import Uploader
from glance_clone.registry.client.v1.client import RegistryClient
from glance_clone.store.backend import StoreSet
from glance_clone.store.file import FileDriver
from tests.support.wsgi_transport import transport_for

from .helpers import (
    ADMIN,
    FORMATS,
    Body,
    all_images,
    assert_no_upload_leftovers,
    create_image,
    image_files,
    md5,
    message,
    registry_update,
    status_of,
    streamed,
)

pytestmark = pytest.mark.timeout(60)

MODES = ["create", "update"]


def upload(stack, mode, stream, headers=None, content_length=None,
           content_type="application/octet-stream", **caller):
    """POST a new image, or PUT into a fresh queued one; returns (response, image id)."""
    caller = caller or {"tenant": "t1"}
    headers = dict(FORMATS, **(headers or {}))
    if mode == "create":
        response = streamed(stack, "/v1/images", "POST", stream, headers,
                            content_length, content_type, **caller)
        image_id = response.json["image"]["id"] if response.status_int == 201 else None
        if image_id is None:
            found = all_images(stack)
            image_id = found[0]["id"] if found else None
        return response, image_id
    image = create_image(stack, FORMATS, **caller)
    response = streamed(stack, "/v1/images/" + image["id"], "PUT", stream, headers,
                        content_length, content_type, **caller)
    return response, image["id"]


def assert_failed(stack, image_id, mode, created_status="killed", keep=()):
    """A failed create leaves a killed image (or none); a failed update too."""
    if image_id is not None:
        assert status_of(stack, image_id) == created_status
    assert_no_upload_leftovers(stack, keep)


# -- refused before any byte is read --------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
def test_wrong_content_type_is_400(stack, mode, content_type):
    response, image_id = upload(stack, mode, Body(b"data"), content_length=4,
                                content_type=content_type)
    assert response.status_int == 400
    assert "Content-Type must be application/octet-stream" in message(response)
    if mode == "create":
        assert all_images(stack) == []
    else:
        assert status_of(stack, image_id) == "queued"
    assert_no_upload_leftovers(stack)


@pytest.mark.parametrize("mode", MODES)
def test_declared_size_over_quota_is_413_before_storing(stack_with, mode):
    stack = stack_with({"user_storage_quota": "100B"})
    response, image_id = upload(stack, mode, Body(b"x" * 101), content_length=101)
    assert response.status_int == 413
    assert "Denying attempt to upload image because it exceeds the quota" in message(response)
    assert_failed(stack, image_id, mode)


# -- stopped mid-stream -----------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_chunked_body_over_size_cap_is_413(stack_with, mode):
    stack = stack_with({"image_size_cap": 5000})
    response, image_id = upload(stack, mode, Body(b"x" * 9000, chunk=1000))
    assert response.status_int == 413
    assert "Denying attempt to upload image larger than 5000 bytes." in message(response)
    assert_failed(stack, image_id, mode)


@pytest.mark.parametrize("mode", MODES)
def test_chunked_body_with_false_declared_size_is_still_capped(stack_with, mode):
    stack = stack_with({"image_size_cap": 5000})
    response, image_id = upload(stack, mode, Body(b"x" * 9000, chunk=1000),
                                {"x-image-meta-size": "4000"})
    assert response.status_int == 413
    assert_failed(stack, image_id, mode)


@pytest.mark.parametrize("mode", MODES)
def test_chunked_body_over_storage_quota_is_413(stack_with, mode):
    stack = stack_with({"user_storage_quota": "1KB"})
    response, image_id = upload(stack, mode, Body(b"x" * 3000, chunk=500))
    assert response.status_int == 413
    assert "exceeds the quota" in message(response)
    assert_failed(stack, image_id, mode)


def test_storage_quota_counts_existing_images_of_the_owner(stack_with):
    stack = stack_with({"user_storage_quota": "1KB"})
    first = create_image(stack, body=b"x" * 600)
    other_owner = create_image(stack, body=b"x" * 600, tenant="t2")
    response, image_id = upload(stack, "create", Body(b"x" * 600), content_length=600)
    assert response.status_int == 413
    assert status_of(stack, image_id) == "killed"
    assert_no_upload_leftovers(stack, keep=[first["id"], other_owner["id"]])
    # Deleting frees the space.
    assert stack.request("/v1/images/" + first["id"], "DELETE", tenant="t1").status_int == 200
    assert create_image(stack, body=b"x" * 600)["status"] == "active"


def test_killed_images_do_not_count_against_the_quota(stack_with):
    stack = stack_with({"user_storage_quota": "1KB"})
    response, _ = upload(stack, "create", Body(b"x" * 600), {"x-image-meta-size": "5"},
                         content_length=600)
    assert response.status_int == 400
    assert create_image(stack, body=b"x" * 1000)["status"] == "active"


@pytest.mark.parametrize("mode", MODES)
def test_client_disconnect_is_400(stack, mode):
    response, image_id = upload(stack, mode, Body(b"x" * 100), content_length=1000)
    assert response.status_int == 400
    assert "Client disconnected before sending all data to backend" in message(response)
    assert_failed(stack, image_id, mode)


# -- checked after storing ---------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_size_mismatch_is_400_killed_and_data_removed(stack, mode):
    response, image_id = upload(stack, mode, Body(b"x" * 10), {"x-image-meta-size": "11"})
    assert response.status_int == 400
    assert ("Supplied size (11) and size generated from uploaded image (10) did not "
            "match. Setting image status to 'killed'.") in message(response)
    assert_failed(stack, image_id, mode)


@pytest.mark.parametrize("mode", MODES)
def test_checksum_mismatch_is_400_killed_and_data_removed(stack, mode):
    response, image_id = upload(stack, mode, Body(b"x" * 10), {
        "x-image-meta-checksum": md5(b"y" * 10)}, content_length=10)
    assert response.status_int == 400
    assert "checksum generated from uploaded image (%s) did not match" % md5(
        b"x" * 10) in message(response)
    assert_failed(stack, image_id, mode)


def test_size_declared_at_create_is_checked_by_a_later_upload(stack):
    image = create_image(stack, dict(FORMATS, **{"x-image-meta-size": "20"}))
    response = stack.request("/v1/images/" + image["id"], "PUT", body=b"x" * 10,
                             tenant="t1")
    assert response.status_int == 400
    assert "Supplied size (20)" in message(response)
    assert_failed(stack, image["id"], "update")


# -- store failures --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_read_only_store_is_410(stack, mode):
    response, image_id = upload(stack, mode, Body(b"data"), {"x-image-meta-store": "http"},
                                content_length=4)
    assert response.status_int == 410
    assert ("Error in store configuration. Adding images to store is disabled."
            in message(response))
    assert_failed(stack, image_id, mode)


def failing_add(error):
    def add(self, image_id, chunks, size):
        for count, _chunk in enumerate(chunks):
            if count == 1:
                raise error
        raise error
    return add


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error, status, text", [
    (exception.StorageFull(), 413, "Image storage media is full"),
    (exception.StorageWriteDenied(), 503, "Insufficient permissions on image storage media"),
    (exception.Forbidden("Forbidden upload attempt"), 403, "Forbidden upload attempt"),
    (exception.StoreError("File store write failed: EIO"), 500, "Failed to upload image "),
])
def test_store_errors(stack, monkeypatch, mode, error, status, text):
    monkeypatch.setattr(FileDriver, "add", failing_add(error))
    response, image_id = upload(stack, mode, Body(b"x" * 5000, chunk=1000))
    assert response.status_int == status
    assert text in message(response)
    assert "Traceback" not in message(response)
    assert_failed(stack, image_id, mode)


@pytest.mark.parametrize("mode", MODES)
def test_existing_store_file_is_409_and_left_alone(stack, mode):
    if mode == "create":
        image_id = "71c675ab-d94f-49cd-a114-e12490b328d9"
        headers = {"x-image-meta-id": image_id}
    else:
        image_id = create_image(stack, FORMATS)["id"]
        headers = {}
    with open(os.path.join(stack.datadir, image_id), "wb") as fh:
        fh.write(b"someone else's bytes")
    path = "/v1/images" if mode == "create" else "/v1/images/" + image_id
    response = streamed(stack, path, "POST" if mode == "create" else "PUT",
                        Body(b"new bytes"), dict(FORMATS, **headers))
    assert response.status_int == 409
    assert "Attempt to upload duplicate image" in message(response)
    assert status_of(stack, image_id) == "killed"
    assert_no_upload_leftovers(stack, keep=[image_id])
    with open(os.path.join(stack.datadir, image_id), "rb") as fh:
        assert fh.read() == b"someone else's bytes"


# -- races -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("deleter", ["owner", "admin"])
@pytest.mark.parametrize("uploader", [{"tenant": "t1"}, ADMIN])
def test_delete_during_upload_wins(stack, mode, deleter, uploader):
    """The uploader loses with 412 whether its compare-and-swap finds the
    image deleted (admins see deleted rows) or gone (others do not)."""
    deleter_caller = uploader if deleter == "owner" else ADMIN
    image_ids = []
    answers = []

    def delete_now(count):
        if count == 2 and not answers:
            found = [i for i in all_images(stack) if i["status"] == "saving"]
            assert len(found) == 1
            image_ids.append(found[0]["id"])
            answers.append(stack.request("/v1/images/" + found[0]["id"], "DELETE",
                                         **deleter_caller))
    response, _ = upload(stack, mode, Body(os.urandom(10000), chunk=1000,
                                           before_chunk=delete_now), **uploader)
    assert answers[0].status_int == 200
    assert response.status_int == 412
    assert status_of(stack, image_ids[0]) == "deleted"
    assert_no_upload_leftovers(stack)


def test_second_upload_into_a_saving_image_is_409(stack):
    image = create_image(stack, FORMATS)
    answers = []

    def upload_again(count):
        if count == 1 and not answers:
            answers.append(stack.request("/v1/images/" + image["id"], "PUT",
                                         body=b"other", tenant="t1"))
    response = streamed(stack, "/v1/images/" + image["id"], "PUT",
                        Body(b"x" * 5000, chunk=1000, before_chunk=upload_again))
    assert answers[0].status_int == 409
    assert "Cannot upload to an unqueued image" in message(answers[0])
    assert response.status_int == 200
    assert response.json["image"]["status"] == "active"
    assert image_files(stack) == [image["id"]]
    assert stack.request("/v1/images/" + image["id"], tenant="t1").body == b"x" * 5000


def test_upload_losing_the_queued_to_saving_race_leaves_the_winner_alone(stack):
    """Two uploads passed the checks; the one whose compare-and-swap fails
    must not touch the image the other one is filling."""
    image = create_image(stack, FORMATS)
    registry_update(stack, image["id"], {"status": "saving"})
    registry = RegistryClient(stack.conf, transport=transport_for(stack.registry_app),
                              base_url="http://registry")
    uploader = Uploader(stack.conf, registry, StoreSet(stack.conf))
    context = RequestContext(tenant="t1", user="user", roles=("reader", "member"))
    with pytest.raises(exception.Duplicate) as err:
        uploader.upload(context, image, iter([b"data"]), 4)
    assert str(err.value) == "Attempt to upload duplicate image"
    assert status_of(stack, image["id"]) == "saving"
    assert stack.stored_files() == []


@pytest.mark.parametrize("mode", MODES)
def test_token_rejected_when_activating_is_401_and_data_removed(stack, monkeypatch, mode):
    real_update = RegistryClient.update_image

    def expired(self, context, image_id, values, *args, **kwargs):
        if values.get("status") == "active":
            raise exception.NotAuthenticated("token expired")
        return real_update(self, context, image_id, values, *args, **kwargs)
    monkeypatch.setattr(RegistryClient, "update_image", expired)
    response, image_id = upload(stack, mode, Body(b"x" * 3000, chunk=1000))
    assert response.status_int == 401
    assert_failed(stack, image_id, mode)
