"""Registry writes whose answer is lost (issue: half-done images).

The registry commits a write and its answer never reaches glance-api (a
reset connection, a timeout): the api must find out what the registry
holds before it undoes anything, and never remove bytes a record may
point at. ``LossyTransport`` sits between the api's registry client and
the in-process registry and drops chosen answers after the registry has
handled the request, or refuses chosen requests before it sees them
(tests/support/lossy_transport.py).
"""

from __future__ import annotations

import pytest

from tests.support import lossy_transport
from tests.support.lossy_transport import LossyTransport, Match

from .helpers import (
    FORMATS,
    Body,
    all_images,
    create,
    create_image,
    image_files,
    md5,
    message,
    meta,
    partial_files,
    registry_update,
    status_of,
    streamed,
)

pytestmark = pytest.mark.timeout(60)


def lossy(stack, settle_time: float = 5.0) -> LossyTransport:
    transport = lossy_transport.install(stack.v1.registry)
    stack.v1.service.writes.settle_time = settle_time
    return transport


def posting(method, target, headers, body) -> bool:
    return method == "POST" and target == "/images"


def to_status(status: str) -> Match:
    def match(method, target, headers, body) -> bool:
        return method == "PUT" and body.get("image", {}).get("status") == status
    return match


def deleting(from_state: str) -> Match:
    def match(method, target, headers, body) -> bool:
        return (method == "DELETE"
                and headers.get("X-Glance-Registry-From-State") == from_state)
    return match


def download(stack, image_id: str) -> bytes:
    response = stack.request("/v1/images/" + image_id, tenant="t1")
    assert response.status_int == 200, response.body
    return response.body


# --- create ------------------------------------------------------------------

def test_create_committed_but_answer_lost_gives_the_one_record(stack):
    transport = lossy(stack)
    transport.lose(posting)
    image = create_image(stack, {"x-image-meta-name": "once"})
    assert image["status"] == "queued"
    assert [(i["id"], i["name"]) for i in all_images(stack)] == [(image["id"], "once")]


def test_create_with_data_whose_create_answer_is_lost_is_active(stack):
    transport = lossy(stack)
    transport.lose(posting)
    image = create_image(stack, body=b"payload")
    assert image["status"] == "active"
    assert download(stack, image["id"]) == b"payload"
    assert len(all_images(stack)) == 1


def test_create_sent_again_after_a_refused_connection(stack):
    transport = lossy(stack)
    transport.refuse(posting, times=2)
    image = create_image(stack, {"x-image-meta-name": "retried"})
    assert [i["id"] for i in all_images(stack)] == [image["id"]]
    assert [c for c in transport.calls if c[0] == "POST"] == [("POST", "/images")] * 3


# --- upload activation ----------------------------------------------------------

def test_activation_committed_but_answer_lost_keeps_the_data(stack):
    transport = lossy(stack)
    transport.lose(to_status("active"))
    image = create_image(stack, body=b"kept bytes")
    assert image["status"] == "active"
    assert image["checksum"] == md5(b"kept bytes")
    assert image_files(stack) == [image["id"]]
    assert download(stack, image["id"]) == b"kept bytes"


def test_activation_not_sent_is_sent_again(stack):
    transport = lossy(stack)
    transport.refuse(to_status("active"))
    image = create_image(stack, body=b"second try")
    assert download(stack, image["id"]) == b"second try"


def test_activation_unconfirmed_for_the_whole_window_never_removes_the_data(stack):
    """The registry took the activation, then stayed unreachable: the api
    answers 503 but leaves the bytes, which the record points at."""
    transport = lossy(stack, settle_time=0.3)
    transport.lose(to_status("active"), then_down=True)
    response = create(stack, FORMATS, b"survivor")
    assert response.status_int == 503, response.body
    assert "registry" in message(response)
    transport.down = False
    image = all_images(stack)[0]
    assert image["status"] == "active"
    assert image_files(stack) == [image["id"]]
    assert download(stack, image["id"]) == b"survivor"


def test_kill_whose_answer_is_lost_still_removes_the_data(stack):
    transport = lossy(stack)
    transport.lose(to_status("killed"))
    response = create(stack, dict(FORMATS, **{"x-image-meta-checksum": md5(b"other")}),
                      b"mismatch")
    assert response.status_int == 400, response.body
    assert [i["status"] for i in all_images(stack)] == ["killed"]
    assert image_files(stack) == [] and partial_files(stack) == []


# --- delete -------------------------------------------------------------------------

@pytest.mark.parametrize("lost", [to_status("pending_delete"), deleting("pending_delete")],
                         ids=["first step", "last step"])
def test_delete_whose_answer_is_lost_finishes_and_answers_200(stack, lost):
    image = create_image(stack, body=b"data")
    lossy(stack).lose(lost)
    assert stack.request("/v1/images/" + image["id"], "DELETE", tenant="t1").status_int == 200
    assert image_files(stack) == []
    headers = meta(stack, image["id"])
    assert (headers["status"], headers["deleted"]) == ("deleted", "True")


def test_delayed_delete_whose_answer_is_lost_answers_200(stack_with):
    stack = stack_with({"delayed_delete": True})
    image = create_image(stack, body=b"data")
    transport = lossy(stack)
    transport.lose(deleting("active"))
    assert stack.request("/v1/images/" + image["id"], "DELETE", tenant="t1").status_int == 200
    headers = meta(stack, image["id"])
    assert (headers["status"], headers["deleted"]) == ("pending_delete", "True")
    assert image_files(stack) == [image["id"]]


def test_delete_never_removes_data_before_the_record_stops_being_active(stack):
    """The first delete write cannot get through: the image stays active
    and downloadable, with its data."""
    image = create_image(stack, body=b"still here")
    transport = lossy(stack, settle_time=0.3)
    transport.refuse(to_status("pending_delete"), times=10 ** 6)
    response = stack.request("/v1/images/" + image["id"], "DELETE", tenant="t1")
    assert response.status_int == 503
    transport.rules.clear()
    assert status_of(stack, image["id"]) == "active"
    assert download(stack, image["id"]) == b"still here"


@pytest.mark.parametrize("left_as", ["pending_delete", "deleted"])
def test_a_retried_delete_finishes_an_interrupted_one(stack, left_as):
    """An api that died part-way through a delete left the image with the
    status set but its row not deleted: a retried DELETE finishes it."""
    image = create_image(stack, body=b"half deleted")
    registry_update(stack, image["id"], {"status": left_as})
    response = stack.request("/v1/images/" + image["id"], "DELETE", tenant="t1")
    assert response.status_int == 200, response.body
    headers = meta(stack, image["id"])
    assert (headers["status"], headers["deleted"]) == ("deleted", "True")
    if left_as == "pending_delete":
        assert image_files(stack) == []
    assert stack.request("/v1/images/" + image["id"], "DELETE",
                         tenant="t1").status_int == 404


def test_an_interrupted_delete_is_finished_with_delayed_delete_too(stack_with):
    stack = stack_with({"delayed_delete": True})
    image = create_image(stack, body=b"half deleted")
    registry_update(stack, image["id"], {"status": "pending_delete"})
    assert stack.request("/v1/images/" + image["id"], "DELETE",
                         tenant="t1").status_int == 200
    headers = meta(stack, image["id"])
    assert (headers["status"], headers["deleted"]) == ("pending_delete", "True")
    assert image_files(stack) == [image["id"]]


# --- §4: a delete cancels the upload in progress ----------------------------------------

def test_deleting_a_saving_image_stops_its_upload_and_removes_the_partial_file(stack):
    image = create_image(stack, FORMATS)
    stack.v1.service.uploader.status_interval = 0
    seen: dict[str, object] = {}

    def delete_midway(read: int) -> None:
        if read == 3:
            seen["partial"] = partial_files(stack)
            seen["delete"] = stack.request("/v1/images/" + image["id"], "DELETE",
                                           tenant="t1").status_int
    body = Body(b"x" * 64 * 1024, chunk=1024, before_chunk=delete_midway)
    response = streamed(stack, "/v1/images/" + image["id"], "PUT", body,
                        content_length=64 * 1024)
    assert seen["delete"] == 200
    assert len(seen["partial"]) == 1      # the transfer was under way
    assert response.status_int == 412, response.body
    assert body.reads < 10                # it stopped, not read to the end
    assert partial_files(stack) == [] and image_files(stack) == []
    assert status_of(stack, image["id"]) == "deleted"


# --- §4: a create needs a tenant ------------------------------------------------------------

def test_a_create_without_a_tenant_is_refused_and_writes_nothing(stack):
    response = create(stack, FORMATS, b"data", tenant=None)
    assert response.status_int == 403, response.body
    assert "tenant" in message(response)
    assert all_images(stack) == []
    assert image_files(stack) == [] and partial_files(stack) == []


def test_an_admin_without_a_tenant_may_create(stack):
    image = create_image(stack, tenant=None, roles="admin")
    assert image["owner"] is None
    assert [i["id"] for i in all_images(stack)] == [image["id"]]
