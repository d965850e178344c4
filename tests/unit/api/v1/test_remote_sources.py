"""Remote sources that misbehave: locations and copy-from URLs served by a
web server on 127.0.0.1 that sends less than it announced, stalls, or
trickles. Each gets a clear 5xx (or a killed image for a background copy)
and leaves nothing behind."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import (
    FORMATS,
    all_images,
    assert_no_upload_leftovers,
    create,
    create_image,
    message,
    wait_for_status,
)

pytestmark = pytest.mark.timeout(60)

ANNOUNCED = 5000
# Small limits, so stalls show within a test's patience.
TIMEOUTS = {"glance_store.http_stall_timeout": 0.3,
            "glance_store.http_transfer_deadline": 30.0}


class Handler(http.server.BaseHTTPRequestHandler):
    """``/short/N`` announces 5000 bytes and sends N; ``/unsized/N`` sends N
    without a Content-Length; ``/stall/answer`` never answers, and
    ``/stall/get`` only answers HEAD; ``/stall/body`` sends 1000 of 5000
    bytes, then nothing; ``/trickle`` sends one byte every 50 ms."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _release(self) -> threading.Event:
        return self.server.release  # type: ignore[attr-defined,no-any-return]

    def _head(self, length: int | None) -> None:
        self.send_response(200)
        if length is None:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        if self.path == "/stall/answer":
            self._release().wait(10)
        self._head(None if self.path.startswith("/unsized/") else ANNOUNCED)

    def do_GET(self) -> None:  # noqa: N802
        kind, _, count = self.path.strip("/").partition("/")
        self.close_connection = True
        if self.path in ("/stall/answer", "/stall/get"):
            self._release().wait(10)
        elif self.path == "/stall/body":
            self._head(ANNOUNCED)
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self._release().wait(10)
        elif self.path == "/trickle":
            self._head(ANNOUNCED)
            while not self._release().wait(0.05):
                self.wfile.write(b"x")
                self.wfile.flush()
        elif kind in ("short", "unsized"):
            self._head(ANNOUNCED if kind == "short" else None)
            self.wfile.write(b"x" * int(count))


@pytest.fixture
def source() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def location_image(stack: Any, url: str, **headers: str) -> dict:
    return create_image(stack, dict(FORMATS, **{"x-image-meta-location": url}, **headers))


def download(stack: Any, image: dict) -> Any:
    return stack.request("/v1/images/" + image["id"], tenant="t1")


def copy_from(stack: Any, url: str) -> str:
    response = create(stack, dict(FORMATS, **{"x-glance-api-copy-from": url}))
    assert response.status_int == 201, response.body
    image_id: str = response.json["image"]["id"]
    return image_id


# -- fewer bytes than announced ------------------------------------------------------
@pytest.mark.parametrize("sent", [0, 1000])
def test_a_location_sending_less_than_announced_is_502(stack, source, sent):
    image = location_image(stack, "%s/short/%d" % (source, sent))
    response = download(stack, image)
    assert response.status_int == 502, response.status
    assert "The remote server sent less image data than it announced." in message(response)


def test_a_location_of_unknown_size_sending_less_than_the_image_is_502(stack, source):
    image = location_image(stack, source + "/unsized/0",
                           **{"x-image-meta-size": str(ANNOUNCED)})
    response = download(stack, image)
    assert response.status_int == 502, response.status
    assert "the store sent 0 of its 5000 bytes" in message(response)


@pytest.mark.parametrize("sent", [0, 1000])
def test_a_copy_from_sending_less_than_announced_is_killed(stack, source, sent, caplog):
    image_id = copy_from(stack, "%s/short/%d" % (source, sent))
    assert wait_for_status(stack, image_id, {"active", "killed"}) == "killed"
    assert_no_upload_leftovers(stack)
    assert "The remote server sent less image data than it announced." in caplog.text


# -- stalls and the deadline -----------------------------------------------------------
@pytest.mark.parametrize("header", ["x-image-meta-location", "x-glance-api-copy-from"])
def test_a_source_that_never_answers_is_refused_with_504(stack_with, source, header):
    stack = stack_with(TIMEOUTS)
    response = create(stack, dict(FORMATS, **{header: source + "/stall/answer"}))
    assert response.status_int == 504, response.status
    assert "The remote server sent nothing for 0.3 seconds." in message(response)
    assert all_images(stack) == []


def test_a_location_stalling_mid_body_is_504(stack_with, source):
    stack = stack_with(TIMEOUTS)
    image = location_image(stack, source + "/stall/body")
    response = download(stack, image)
    assert response.status_int == 504, response.status
    assert "The remote server sent nothing for 0.3 seconds." in message(response)


@pytest.mark.parametrize("path", ["/stall/get", "/stall/body"])
def test_a_stalled_copy_from_is_killed(stack_with, source, path, caplog):
    stack = stack_with(TIMEOUTS)
    image_id = copy_from(stack, source + path)
    assert wait_for_status(stack, image_id, {"active", "killed"}) == "killed"
    assert_no_upload_leftovers(stack)
    assert "The remote server sent nothing for 0.3 seconds." in caplog.text


def test_a_trickling_copy_from_is_killed_at_the_deadline(stack_with, source, caplog):
    stack = stack_with({"glance_store.http_stall_timeout": 5.0,
                        "glance_store.http_transfer_deadline": 0.5})
    image_id = copy_from(stack, source + "/trickle")
    assert wait_for_status(stack, image_id, {"active", "killed"}) == "killed"
    assert_no_upload_leftovers(stack)
    assert "did not send the image data within 0.5 seconds" in caplog.text
