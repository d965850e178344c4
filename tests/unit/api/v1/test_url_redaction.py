"""Refused locations and copy-from URLs are named by scheme and host only,
in answers and in logs: never their user, password, path, query string, or
where they redirect to."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from glance_clone.common import log

from .helpers import FORMATS, all_images, create, message

pytestmark = pytest.mark.timeout(30)

SECRETS = ("s3cret", "t0ken", "/private")
REFUSED_TARGET = "http://admin:s3cret@169.254.169.254/private?sig=t0ken"


class Redirecting(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(302)
        self.send_header("Location", REFUSED_TARGET)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def library_log_levels() -> Iterator[None]:
    """The client libraries' loggers as glance-api sets them up."""
    loggers = [logging.getLogger(e.partition("=")[0]) for e in log.LIBRARY_LEVELS]
    saved = [logger.level for logger in loggers]
    log.set_library_levels(log.LIBRARY_LEVELS)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def assert_hidden(text: str, *extra: str) -> None:
    for secret in SECRETS + extra:
        assert secret not in text, (secret, text)


@pytest.mark.parametrize("header", ["x-image-meta-location", "x-glance-api-copy-from"])
@pytest.mark.parametrize("url", [
    "http://admin:s3cret@10.0.0.1:8080/private?sig=t0ken",
    "ftp://admin:s3cret@10.0.0.1/private?sig=t0ken",
])
def test_a_refused_source_is_named_by_scheme_and_host(stack, caplog, header, url):
    caplog.set_level(logging.DEBUG)
    response = create(stack, dict(FORMATS, **{header: url}))
    assert response.status_int == 400
    scheme = url.partition(":")[0]
    assert ("External sources are not supported: '%s://10.0.0.1'" % scheme
            in message(response))
    assert_hidden(message(response) + caplog.text, "8080")
    assert all_images(stack) == []


def test_a_refused_location_update_is_named_by_scheme_and_host(stack, caplog):
    caplog.set_level(logging.DEBUG)
    image = create(stack, {"x-image-meta-name": "queued"}).json["image"]
    response = stack.request("/v1/images/" + image["id"], "PUT", tenant="t1", headers=dict(
        FORMATS, **{"x-image-meta-location": "http://admin:s3cret@10.0.0.1/private?sig=t0ken"}))
    assert response.status_int == 400
    assert "External sources are not supported: 'http://10.0.0.1'" in message(response)
    assert_hidden(message(response) + caplog.text)


@pytest.mark.parametrize("header", ["x-image-meta-location", "x-glance-api-copy-from"])
def test_a_redirect_target_is_never_named(stack, caplog, redirecting, header):
    caplog.set_level(logging.DEBUG)
    response = create(stack, dict(FORMATS, **{header: redirecting + "/image?key=t0ken"}))
    assert response.status_int == 400
    assert ("External sources are not supported: 'http://127.0.0.1' redirects to a "
            "refused source" in message(response))
    assert_hidden(message(response) + caplog.text, "169.254")
    assert all_images(stack) == []


def test_an_unreachable_source_is_logged_without_path_or_query(stack, caplog):
    caplog.set_level(logging.DEBUG)
    # Port 1 on loopback refuses the connection.
    response = create(stack, dict(FORMATS, **{
        "x-image-meta-location": "http://admin:s3cret@127.0.0.1:1/private?sig=t0ken"}))
    assert response.status_int == 503
    assert "HTTP store cannot reach http://127.0.0.1" in caplog.text
    assert_hidden(message(response) + caplog.text)
