"""HEAD /images/{id} and GET /images/{id} (download), api-v1.md sections 7-8."""

from __future__ import annotations

import os

import pytest

from glance_clone.common import exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.data_out import download_body

from .helpers import (
    ADMIN,
    NO_IMAGE_ID,
    create_image,
    head,
    md5,
    message,
    policy_file,
    registry_update,
)

pytestmark = pytest.mark.timeout(60)


def download(stack, image_id, **caller):
    caller = caller or {"tenant": "t1"}
    return stack.request("/v1/images/" + image_id, **caller)


# -- HEAD ---------------------------------------------------------------------------
def test_head_of_missing_image_is_404(stack):
    response = head(stack, NO_IMAGE_ID, tenant="t1")
    assert response.status_int == 404
    response = stack.request("/v1/images/" + NO_IMAGE_ID, "GET", tenant="t1",
                             headers={"Accept": "text/plain"})
    assert "Image with identifier %s not found" % NO_IMAGE_ID in message(response)


def test_head_of_someone_elses_private_image_is_404(stack):
    image = create_image(stack, tenant="t1")
    assert head(stack, image["id"], tenant="t2").status_int == 404
    assert head(stack, image["id"], tenant="t1").status_int == 200


def test_public_image_is_visible_to_all(stack):
    image = create_image(stack, {"x-image-meta-is_public": "yes"}, **ADMIN)
    assert head(stack, image["id"], tenant="t2").headers["x-image-meta-is_public"] == "True"


def test_admin_sees_deleted_images_others_do_not(stack):
    image = create_image(stack, tenant="t1")
    assert stack.request("/v1/images/" + image["id"], "DELETE", tenant="t1").status_int == 200
    assert head(stack, image["id"], tenant="t1").status_int == 404
    response = head(stack, image["id"], **ADMIN)
    assert response.status_int == 200
    assert response.headers["x-image-meta-status"] == "deleted"
    assert response.headers["x-image-meta-deleted"] == "True"
    assert "x-image-meta-deleted_at" in response.headers


def test_admin_sees_pending_delete_images(stack_with):
    stack = stack_with({"delayed_delete": True})
    image = create_image(stack, body=b"data")
    assert stack.request("/v1/images/" + image["id"], "DELETE", tenant="t1").status_int == 200
    response = head(stack, image["id"], **ADMIN)
    assert response.headers["x-image-meta-status"] == "pending_delete"
    assert response.headers["x-image-meta-deleted"] == "True"
    assert head(stack, image["id"], tenant="t1").status_int == 404


# -- download -----------------------------------------------------------------------
def test_download_streams_the_data_with_its_headers(stack):
    data = os.urandom(200 * 1024)
    image = create_image(stack, {"x-image-meta-property-k": "v"}, body=data)
    response = download(stack, image["id"])
    assert response.status_int == 200
    assert response.content_type == "application/octet-stream"
    assert response.body == data
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["x-image-meta-size"] == str(len(data))
    assert response.headers["ETag"] == md5(data)
    assert response.headers["x-image-meta-checksum"] == md5(data)
    assert response.headers["x-image-meta-property-k"] == "v"


def test_download_of_an_empty_image_does_not_touch_the_store(stack, monkeypatch):
    image = create_image(stack, {"x-image-meta-size": "0"})
    assert image["status"] == "active"

    def no_store(*args):
        raise AssertionError("store used for an empty image")
    monkeypatch.setattr("glance_clone.store.backend.StoreSet.get", no_store)
    response = download(stack, image["id"])
    assert response.status_int == 200
    assert response.body == b""
    assert response.headers["Content-Length"] == "0"


def test_download_of_a_queued_image_is_404(stack):
    image = create_image(stack)
    response = download(stack, image["id"])
    assert response.status_int == 404
    assert "Image %s is not active" % image["id"] in message(response)


def test_download_of_a_deactivated_image_is_403(stack):
    image = create_image(stack, body=b"data")
    registry_update(stack, image["id"], {"status": "deactivated"})
    for caller in ({"tenant": "t1"}, ADMIN):
        response = download(stack, image["id"], **caller)
        assert response.status_int == 403
        assert "Image %s is deactivated" % image["id"] in message(response)


def test_download_of_missing_image_is_404(stack):
    assert download(stack, NO_IMAGE_ID).status_int == 404
    other = create_image(stack, body=b"data", tenant="t2")
    assert download(stack, other["id"]).status_int == 404


def test_download_with_store_data_gone_is_404(stack):
    image = create_image(stack, body=b"data")
    os.unlink(os.path.join(stack.datadir, image["id"]))
    assert download(stack, image["id"]).status_int == 404


def test_download_policy_is_checked_with_image_target(stack_with, tmp_path):
    rules = {"download_image": "not 'secret':%(classification)s"}
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, rules)})
    open_image = create_image(stack, {"x-image-meta-property-classification": "open"},
                              body=b"data")
    secret = create_image(stack, {"x-image-meta-property-classification": "secret"},
                          body=b"data")
    assert download(stack, open_image["id"]).status_int == 200
    assert download(stack, secret["id"]).status_int == 403
    assert head(stack, secret["id"], tenant="t1").status_int == 200


def test_download_policy_denial_wins_over_not_active(stack_with, tmp_path):
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, {
        "download_image": "!"})})
    queued = create_image(stack)
    assert download(stack, queued["id"]).status_int == 403
    assert download(stack, NO_IMAGE_ID).status_int == 404


def test_get_image_policy_applies_to_head_and_download(stack_with, tmp_path):
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, {
        "get_image": "role:admin"})})
    image = create_image(stack, body=b"data")
    assert head(stack, image["id"], tenant="t1").status_int == 403
    assert download(stack, image["id"]).status_int == 403
    assert download(stack, image["id"], **ADMIN).status_int == 200


def test_short_store_data_aborts_the_body():
    body = download_body(iter([b"abc", b"de"]), 10, "img")
    with pytest.raises(exception.RemoteDataIncomplete, match="sent 5 of its 10 bytes"):
        b"".join(body)
    body = download_body(iter([b"abc", b"defgh"]), 4, "img")
    with pytest.raises(exception.BadGateway, match="more than its 4 bytes"):
        b"".join(body)
    assert b"".join(download_body(iter([b"abc", b"d"]), 4, "img")) == b"abcd"


def test_download_is_streamed_and_closed_when_the_client_stops(stack):
    data = os.urandom(3 * CHUNK_SIZE)
    image = create_image(stack, body=data)
    response = download(stack, image["id"])
    body = response.app_iter
    first = next(iter(body))
    assert 0 < len(first) <= CHUNK_SIZE < len(data)
    store_chunks = body._source.chunks
    assert not store_chunks.closed
    body.close()
    assert store_chunks.closed
