"""Helpers of the glance-api v1 tests: requests as chosen callers, and the
checks that must hold after every failed upload."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import eventlet
import webob

from tests.support.stack import Stack

ADMIN = {"tenant": "admin-t", "roles": "admin", "user": "root"}
FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
NO_IMAGE_ID = "0f3c1c1e-0000-4000-8000-000000000000"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def message(response: webob.Response) -> str:
    """The text of an error body, whatever its content type."""
    return response.body.decode("utf-8", "replace")


def create(stack: Stack, headers: dict[str, str] | None = None, body: bytes | None = None,
           tenant: str | None = "t1", **kwargs: Any) -> webob.Response:
    return stack.request("/v1/images", "POST", body=body, headers=headers,
                         tenant=tenant, **kwargs)


def create_image(stack: Stack, headers: dict[str, str] | None = None,
                 body: bytes | None = None, tenant: str | None = "t1",
                 **kwargs: Any) -> dict:
    """Create an image and return its JSON object; asserts 201."""
    all_headers = dict(FORMATS if body is not None else {})
    all_headers.update(headers or {})
    response = create(stack, all_headers, body, tenant, **kwargs)
    assert response.status_int == 201, response.body
    image: dict = response.json["image"]
    return image


def head(stack: Stack, image_id: str, **caller: Any) -> webob.Response:
    caller = caller or ADMIN
    return stack.request("/v1/images/%s" % image_id, "HEAD", **caller)


def meta(stack: Stack, image_id: str) -> dict[str, str]:
    """The x-image-meta-* headers of an image as an admin sees them."""
    response = head(stack, image_id)
    assert response.status_int == 200, response.status
    prefix = "x-image-meta-"
    return {k.lower()[len(prefix):]: v for k, v in response.headers.items()
            if k.lower().startswith(prefix)}


def status_of(stack: Stack, image_id: str) -> str:
    return meta(stack, image_id)["status"]


def all_images(stack: Stack, **params: str) -> list[dict]:
    """Every image row, deleted and killed ones too, as an admin sees it."""
    query = {"is_public": "none", "changes-since": "2000-01-01T00:00:00", "limit": "1000"}
    query.update(params)
    path = "/v1/images/detail?" + "&".join("%s=%s" % kv for kv in query.items())
    response = stack.request(path, **ADMIN)
    assert response.status_int == 200, response.body
    images: list[dict] = response.json["images"]
    return images


def image_files(stack: Stack) -> list[str]:
    return [name for name in stack.stored_files() if not name.startswith(".")]


def partial_files(stack: Stack) -> list[str]:
    return [name for name in stack.stored_files() if name.startswith(".")]


def assert_no_upload_leftovers(stack: Stack, keep: Iterable[str] = ()) -> None:
    """No image file (but ``keep``), no partial file, no image in saving."""
    assert partial_files(stack) == []
    assert sorted(image_files(stack)) == sorted(keep)
    assert [i["id"] for i in all_images(stack) if i["status"] == "saving"] == []


def registry_update(stack: Stack, image_id: str, values: dict) -> None:
    """Change a record behind glance-api's back (e.g. a v2-only status)."""
    req = webob.Request.blank("/images/%s" % image_id, method="PUT")
    req.headers.update({"X-Identity-Status": "Confirmed", "X-Roles": "admin",
                        "X-Tenant-Id": "admin-t", "X-User-Id": "root",
                        "Content-Type": "application/json"})
    req.body = json.dumps({"image": values}).encode("utf-8")
    response = req.get_response(stack.registry_app)
    assert response.status_int == 200, response.body


def policy_file(tmp_path: Any, rules: dict[str, str]) -> str:
    path = tmp_path / ("policy-%d.json" % time.monotonic_ns())
    path.write_text(json.dumps(rules))
    return str(path)


class Body(io.RawIOBase):
    """A request body stream that can run code part-way through.

    ``before_chunk(n)`` is called before the n-th read (0-based) returns;
    with ``short`` the stream ends early (a client gone mid-body).
    """

    def __init__(self, data: bytes, chunk: int = 1024,
                 before_chunk: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.data = data
        self.chunk = chunk
        self.pos = 0
        self.reads = 0
        self.before_chunk = before_chunk

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if self.before_chunk is not None and self.pos < len(self.data):
            self.before_chunk(self.reads)
        self.reads += 1
        want = self.chunk if size is None or size < 0 else min(size, self.chunk)
        piece = self.data[self.pos:self.pos + want]
        self.pos += len(piece)
        return piece


def streamed(stack: Stack, path: str, method: str, stream: Any,
             headers: dict[str, str] | None = None, content_length: int | None = None,
             content_type: str | None = "application/octet-stream",
             tenant: str | None = "t1", roles: str = "reader,member",
             user: str = "user") -> webob.Response:
    """A request whose body is read from ``stream``: chunked unless
    ``content_length`` is given."""
    req = webob.Request.blank(path, method=method)
    req.headers.update({"X-Identity-Status": "Confirmed", "X-Roles": roles,
                        "X-User-Id": user, "X-Tenant-Id": tenant or ""})
    req.environ["wsgi.input"] = stream
    if content_length is None:
        req.environ.pop("CONTENT_LENGTH", None)
        req.headers["Transfer-Encoding"] = "chunked"
    else:
        req.environ["CONTENT_LENGTH"] = str(content_length)
    if content_type is not None:
        req.environ["CONTENT_TYPE"] = content_type
    for name, value in (headers or {}).items():
        req.headers[name] = value
    return req.get_response(stack.api)


def wait_for_status(stack: Stack, image_id: str, wanted: set[str],
                    timeout: float = 20.0) -> str:
    """Poll (yielding to eventlet, which runs background copies) until the
    image reaches one of ``wanted``; fails at the deadline."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        eventlet.sleep(0.01)
        status = status_of(stack, image_id)
        if status in wanted:
            return status
    raise AssertionError("image %s still %s after %ss" % (image_id, status, timeout))
