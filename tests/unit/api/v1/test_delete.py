"""DELETE /images/{id} (api-v1.md section 11)."""

from __future__ import annotations

import pytest

from glance_clone.common import exception
from glance_clone.store.file import FileDriver

from .helpers import (
    ADMIN,
    NO_IMAGE_ID,
    create_image,
    head,
    image_files,
    message,
    policy_file,
    registry_update,
    status_of,
)

pytestmark = pytest.mark.timeout(60)


def delete(stack, image_id, **caller):
    caller = caller or {"tenant": "t1"}
    return stack.request("/v1/images/" + image_id, "DELETE", **caller)


def test_delete_removes_record_and_data(stack):
    image = create_image(stack, body=b"data")
    assert image_files(stack) == [image["id"]]
    response = delete(stack, image["id"])
    assert response.status_int == 200
    assert response.body == b""
    assert image_files(stack) == []
    assert head(stack, image["id"], tenant="t1").status_int == 404
    response = head(stack, image["id"], **ADMIN)
    assert response.headers["x-image-meta-status"] == "deleted"
    assert response.headers["x-image-meta-deleted"] == "True"


@pytest.mark.parametrize("status", ["queued", "killed", "saving"])
def test_delete_of_images_without_data(stack, status):
    image = create_image(stack)
    registry_update(stack, image["id"], {"status": status})
    assert delete(stack, image["id"]).status_int == 200
    assert status_of(stack, image["id"]) == "deleted"


def test_admin_may_delete_a_deactivated_image_with_its_data(stack):
    image = create_image(stack, body=b"data")
    registry_update(stack, image["id"], {"status": "deactivated"})
    assert delete(stack, image["id"], **ADMIN).status_int == 200
    assert status_of(stack, image["id"]) == "deleted"
    assert image_files(stack) == []


def test_protected_image_cannot_be_deleted_even_by_admins(stack):
    image = create_image(stack, {"x-image-meta-protected": "True"}, body=b"data")
    for caller in ({"tenant": "t1"}, ADMIN):
        response = delete(stack, image["id"], **caller)
        assert response.status_int == 403
        assert "Image is protected" in message(response)
    assert status_of(stack, image["id"]) == "active"
    assert image_files(stack) == [image["id"]]


def test_delayed_delete_leaves_data_for_the_scrubber(stack_with):
    stack = stack_with({"delayed_delete": True})
    image = create_image(stack, body=b"data")
    assert delete(stack, image["id"]).status_int == 200
    assert status_of(stack, image["id"]) == "pending_delete"
    assert image_files(stack) == [image["id"]]
    response = delete(stack, image["id"], **ADMIN)
    assert response.status_int == 403
    assert "Forbidden to delete a pending_delete image." in message(response)
    assert delete(stack, image["id"]).status_int == 404


def test_delayed_delete_without_data_deletes_at_once(stack_with):
    stack = stack_with({"delayed_delete": True})
    image = create_image(stack)
    assert delete(stack, image["id"]).status_int == 200
    assert status_of(stack, image["id"]) == "deleted"


def test_deleting_twice_is_404(stack):
    image = create_image(stack)
    assert delete(stack, image["id"]).status_int == 200
    response = delete(stack, image["id"], **ADMIN)
    assert response.status_int == 404
    assert "Image %s not found." % image["id"] in message(response)
    assert delete(stack, image["id"]).status_int == 404


def test_missing_image_is_404(stack):
    assert delete(stack, NO_IMAGE_ID).status_int == 404


def test_non_owner_of_public_image_is_403(stack):
    image = create_image(stack, {"x-image-meta-is_public": "1"}, body=b"data", **ADMIN)
    response = delete(stack, image["id"], tenant="t2")
    assert response.status_int == 403
    assert "Forbidden to delete image" in message(response)
    assert status_of(stack, image["id"]) == "active"
    assert image_files(stack) == [image["id"]]


def test_non_owner_of_private_image_is_404(stack):
    image = create_image(stack, body=b"data")
    assert delete(stack, image["id"], tenant="t2").status_int == 404
    assert status_of(stack, image["id"]) == "active"


def test_member_of_shared_image_gets_404_not_500(stack):
    image = create_image(stack, body=b"data")
    assert stack.request("/v1/images/%s/members/t2" % image["id"], "PUT",
                         tenant="t1").status_int == 204
    assert delete(stack, image["id"], tenant="t2").status_int == 404
    assert status_of(stack, image["id"]) == "active"
    assert image_files(stack) == [image["id"]]


def test_delete_policy(stack_with, tmp_path):
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, {
        "delete_image": "role:admin"})})
    image = create_image(stack, body=b"data")
    assert delete(stack, image["id"]).status_int == 403
    assert status_of(stack, image["id"]) == "active"
    assert delete(stack, image["id"], **ADMIN).status_int == 200


@pytest.mark.parametrize("error, status, text", [
    (exception.InUseByStore(), 409, "could not be deleted because it is in use"),
    (exception.Forbidden("denied"), 403, "Forbidden to delete image"),
])
def test_failed_data_removal_restores_the_image(stack, monkeypatch, error, status, text):
    image = create_image(stack, body=b"data")

    def refuse(self, url):
        raise error
    monkeypatch.setattr(FileDriver, "delete", refuse)
    response = delete(stack, image["id"])
    assert response.status_int == status
    assert text in message(response)
    assert status_of(stack, image["id"]) == "active"
    monkeypatch.undo()
    assert stack.request("/v1/images/" + image["id"], tenant="t1").body == b"data"
    assert delete(stack, image["id"]).status_int == 200
    assert image_files(stack) == []


def test_failed_data_removal_keeps_a_deactivated_image_deactivated(stack, monkeypatch):
    image = create_image(stack, body=b"data")
    registry_update(stack, image["id"], {"status": "deactivated"})

    def refuse(self, url):
        raise exception.InUseByStore()
    monkeypatch.setattr(FileDriver, "delete", refuse)
    assert delete(stack, image["id"], **ADMIN).status_int == 409
    assert status_of(stack, image["id"]) == "deactivated"
    assert image_files(stack) == [image["id"]]


def test_data_already_gone_does_not_block_delete(stack):
    image = create_image(stack, body=b"data")
    import os
    os.unlink(os.path.join(stack.datadir, image["id"]))
    assert delete(stack, image["id"]).status_int == 200
    assert status_of(stack, image["id"]) == "deleted"


@pytest.mark.parametrize("stale_status", ["saving", "queued"])
def test_delete_that_read_a_stale_status_retries_and_removes_the_bytes(stack, stale_status):
    """An upload activating the image between the delete's read and write
    must not leave its bytes orphaned. Read as saving: the status write is a
    compare-and-swap. Read as queued without data: the one conditional soft
    delete must refuse, and the retry remove the bytes."""
    image = create_image(stack, body=b"fresh upload")
    v1 = stack.v1
    real_get = v1.registry.get_image
    calls = []

    def stale_then_real(context, image_id):
        calls.append(image_id)
        current = real_get(context, image_id)
        if len(calls) == 1:
            # What the delete would have read just before the upload finished.
            return dict(current, status=stale_status, location=None, location_data=[])
        return current

    v1.registry.get_image = stale_then_real
    try:
        assert delete(stack, image["id"]).status_int == 200
    finally:
        v1.registry.get_image = real_get
    assert len(calls) == 2
    assert image_files(stack) == []
    assert status_of(stack, image["id"]) == "deleted"


def test_image_without_data_is_deleted_in_one_registry_write(stack):
    image = create_image(stack)
    v1 = stack.v1
    real_transport = v1.registry.transport
    sent = []

    class Recording:
        def send(self, method, target, headers, body=None):
            sent.append((method, headers.get("X-Glance-Registry-From-State")))
            return real_transport.send(method, target, headers, body)

    v1.registry.transport = Recording()
    try:
        assert delete(stack, image["id"]).status_int == 200
    finally:
        v1.registry.transport = real_transport
    assert sent == [("GET", None), ("DELETE", "queued")]
    assert status_of(stack, image["id"]) == "deleted"

