"""Strict HTTP framing on a real glance-api, with raw sockets.

Each refused request is an image upload: the answer must be 400 or 501,
the connection must close, and nothing may be stored. The framing does not
depend on the backends, so one deployment on SQLite and files serves all.
"""

from __future__ import annotations

import socket
import uuid

import pytest
import requests

from tests.functional import harness
from tests.support.raw_http import read_to_end

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def glance(tmp_path_factory):
    dep = harness.Deployment(tmp_path_factory.mktemp("framing"))
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def exchange(dep: harness.Deployment, raw: bytes) -> bytes:
    """Send ``raw`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", dep.api.port), timeout=30) as sock:
        sock.sendall(raw)
        return read_to_end(sock)


def upload(name: str, framing: list[str], body: bytes) -> bytes:
    headers = ["Host: glance", "X-Identity-Status: Confirmed", "X-Tenant-Id: t1",
               "X-User-Id: u1", "X-Roles: member", "x-image-meta-name: " + name,
               "x-image-meta-disk_format: raw", "x-image-meta-container_format: bare",
               "Content-Type: application/octet-stream", "Connection: close", *framing]
    return ("POST /v1/images HTTP/1.1\r\n%s\r\n" % "".join(
        h + "\r\n" for h in headers)).encode("latin-1") + body


def images_named(dep: harness.Deployment, name: str) -> list[dict]:
    """Images called ``name`` in any status (changes-since lists them all)."""
    response = requests.get(dep.url + "/v1/images/detail", headers=harness.admin(), params={
        "name": name, "is_public": "none", "changes-since": "2000-01-01T00:00:00"})
    assert response.status_code == 200
    return response.json()["images"]


def assert_nothing_stored(dep: harness.Deployment, name: str) -> None:
    images = images_named(dep, name)
    # The chunked-body cases fail mid-upload: the image exists, killed.
    assert all(image["status"] == "killed" for image in images), images
    assert not [f for f in dep.stored_files() for i in images if f.startswith(i["id"])]


REFUSED = {
    "identity": (["Transfer-Encoding: identity"], b"hello", 501),
    "gzip": (["Transfer-Encoding: gzip"], b"hello", 501),
    "gzip-chunked": (["Transfer-Encoding: gzip, chunked"], b"5\r\nhello\r\n0\r\n\r\n", 501),
    "chunked-twice": (["Transfer-Encoding: chunked, chunked"], b"5\r\nhello\r\n0\r\n\r\n", 400),
    "chunked-two-headers": (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
                            b"5\r\nhello\r\n0\r\n\r\n", 400),
    "chunked-and-length": (["Transfer-Encoding: chunked", "Content-Length: 5"],
                           b"5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-longer": (["Transfer-Encoding: chunked"], b"3\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-shorter": (["Transfer-Encoding: chunked"], b"5\r\nhel\r\n0\r\n\r\n", 400),
    "chunk-size-0x": (["Transfer-Encoding: chunked"], b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    "length-plus": (["Content-Length: +5"], b"hello", 400),
    "length-list": (["Content-Length: 5, 5"], b"hello", 400),
    "length-twice": (["Content-Length: 5", "Content-Length: 5"], b"hello", 400),
    "value-nul": (["Content-Length: 5", "x-image-meta-property-a: a\x00b"], b"hello", 400),
    "value-cr": (["Content-Length: 5", "x-image-meta-property-a: a\rb"], b"hello", 400),
    "name-space": (["Content-Length: 5", "x-image-meta-property a: b"], b"hello", 400),
    "name-at": (["Content-Length: 5", "x-image@meta: b"], b"hello", 400),
    "folded": (["Content-Length: 5", "x-image-meta-property-a: a", " Set-Cookie: x=y"],
               b"hello", 400),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_framing_stores_nothing(glance, case):
    framing, body, status = REFUSED[case]
    name = "framing-%s-%s" % (case, uuid.uuid4().hex[:8])
    answer = exchange(glance, upload(name, framing, body))
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 %d " % status), answer
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    assert b"Set-Cookie" not in answer
    assert_nothing_stored(glance, name)


def test_a_valid_chunked_upload_is_stored(glance):
    name = "framing-ok-%s" % uuid.uuid4().hex[:8]
    answer = exchange(glance, upload(name, ["Transfer-Encoding: chunked"],
                                     b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 201 "), answer
    (image,) = images_named(glance, name)
    assert image["status"] == "active" and image["size"] == 5
    data = requests.get(glance.url + "/v1/images/" + image["id"], headers=harness.admin())
    assert data.content == b"hello"


def test_keep_alive_carries_requests_one_after_the_other(glance):
    request = (b"GET /healthcheck HTTP/1.1\r\nHost: glance\r\n\r\n"
               b"GET /healthcheck HTTP/1.1\r\nHost: glance\r\nConnection: close\r\n\r\n")
    answer = exchange(glance, request)
    assert answer.count(b"HTTP/1.1 200 ") == 2 and answer.endswith(b"OK")


def test_slow_clients_do_not_stop_the_api_serving_others(glance):
    # More connections sending their headers slowly than a worker has
    # greenthreads (1000): the longest-waiting ones are closed instead.
    slow = []
    try:
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", glance.api.port), timeout=30)
            sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: glance\r\nX-Slow: ")
            slow.append(sock)
        for _ in range(3):
            response = requests.get(glance.url + "/v1/images", headers=harness.admin(),
                                    timeout=10)
            assert response.status_code == 200
    finally:
        for sock in slow:
            sock.close()
