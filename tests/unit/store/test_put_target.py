"""PUT targets of the export task: filtered, verified, nothing left on a
bad transfer."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from glance_clone.common import exception
from glance_clone.store import put_target
from tests.unit.store.conftest import make_conf

DATA = b"exported" * 40_000
MD5 = hashlib.md5(DATA, usedforsecurity=False).hexdigest()


class Target(http.server.ThreadingHTTPServer):
    """Keeps the objects PUT to it, as an object store would: only whole
    bodies whose ETag header (when sent) matches."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[str, bytes] = {}
        self.headers_seen: list[dict[str, str]] = []
        self.answer_etag: str | None = None
        self.status = 201

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Target

    def do_PUT(self) -> None:
        self.server.headers_seen.append(dict(self.headers))
        length = int(self.headers["Content-Length"])
        data = self.rfile.read(length)
        if len(data) < length:
            return
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if self.headers.get("ETag") not in (None, md5):
            self.send_response(422)
        elif self.server.status >= 300:
            self.send_response(self.server.status)
        else:
            self.server.objects[self.path] = data
            self.send_response(self.server.status)
            etag = self.server.answer_etag
            self.send_header("ETag", '"%s"' % (md5 if etag is None else etag))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serving() -> Iterator[Target]:
    """A running target, stopped when the generator is closed."""
    server = Target()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    yield from serving()


def writer(allowed: bool = True) -> put_target.PutTarget:
    hosts = ["127.0.0.1"] if allowed else []
    return put_target.PutTarget(make_conf(import_filtering_opts={
        "allowed_hosts": hosts, "allowed_ports": []}))


def chunks(data: bytes = DATA, fail_at: int | None = None) -> Iterator[bytes]:
    for start in range(0, len(data), 65536):
        if fail_at is not None and start >= fail_at:
            raise exception.StoreError("File store read failed.")
        yield data[start:start + 65536]


def test_put_sends_length_and_md5_and_verifies_the_etag(target: Target) -> None:
    result = writer().put(target.url + "/c/obj?sig=secret", chunks(), len(DATA), MD5)
    assert result == {"size": len(DATA), "checksum": MD5, "etag": MD5,
                      "verified": "etag"}
    assert target.objects == {"/c/obj?sig=secret": DATA}
    sent = target.headers_seen[0]
    assert sent["Content-Length"] == str(len(DATA)) and "Transfer-Encoding" not in sent
    assert sent["ETag"] == MD5 and sent["Content-MD5"]


def test_a_non_md5_etag_verifies_the_length(target: Target) -> None:
    target.answer_etag = "abc-2"
    result = writer().put(target.url + "/o", chunks(), len(DATA), MD5)
    assert result["verified"] == "length" and result["etag"] == "abc-2"


def test_wrong_etag_from_the_target_fails(target: Target) -> None:
    target.answer_etag = "0" * 32
    with pytest.raises(exception.BadGateway, match="reports ETag 0+ for data"):
        writer().put(target.url + "/o", chunks(), len(DATA), MD5)


def test_data_not_matching_the_image_is_refused_by_the_target(target: Target) -> None:
    with pytest.raises(exception.BadGateway, match=r"does not match the image \(.*\)$"):
        writer().put(target.url + "/o", chunks(), len(DATA), "1" * 32)
    assert target.objects == {}


def test_a_source_failing_midway_leaves_nothing(target: Target) -> None:
    with pytest.raises(exception.StoreError):
        writer().put(target.url + "/o", chunks(fail_at=100_000), len(DATA), MD5)
    assert target.objects == {}


def test_error_answers_and_refused_targets(target: Target) -> None:
    target.status = 403
    with pytest.raises(exception.BadGateway, match=r"answered 403") as err:
        writer().put(target.url + "/c/o?temp_url_sig=secret", chunks(), len(DATA), MD5)
    assert "secret" not in str(err.value) and "/c/o" in str(err.value)
    with pytest.raises(exception.ExternalSourceRefused):
        writer(allowed=False).put(target.url + "/o", chunks(), len(DATA), MD5)
    for url in ("file:///etc/passwd", "ftp://x/y", None):
        with pytest.raises(exception.Invalid):
            writer().put(url, chunks(), len(DATA), MD5)  # type: ignore[arg-type]


def test_s3_signature_v2_urls_get_no_signed_headers(target: Target) -> None:
    # Signature version 2 signs Content-Type and Content-MD5 (as empty).
    url = target.url + "/b/k?AWSAccessKeyId=a&Signature=s&Expires=1"
    assert writer().put(url, chunks(), len(DATA), MD5)["verified"] == "etag"
    sent = target.headers_seen[0]
    assert "Content-Type" not in sent and "Content-MD5" not in sent
    assert sent["ETag"] == MD5
