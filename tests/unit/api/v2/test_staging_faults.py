"""A staging area that refuses data (full, over quota, read-only) is
answered as a store that does: 413 or 503, the stage undone."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import Any

import pytest
import webob

from .conftest import V2
from .test_import import new_image, stage, staged_files


def _stage(v2: V2, image_id: str, data: bytes) -> webob.Response:
    """A stage as the owner, whatever its status (V2.call refuses 5xx)."""
    req = webob.Request.blank("/v2/images/%s/stage" % image_id, method="PUT")
    req.headers.update({"X-Identity-Status": "Confirmed", "X-Roles": "reader,member",
                        "X-User-Id": "user", "X-Tenant-Id": "t1",
                        "Content-Type": "application/octet-stream"})
    req.body = data
    return req.get_response(v2.stack.api)


class _Refusing:
    """A staged file whose writes fail with ``code``."""

    def __init__(self, staged: Any, code: int) -> None:
        self.staged = staged
        self.code = code

    def __getattr__(self, name: str) -> Any:
        return getattr(self.staged, name)

    def write(self, data: bytes) -> int:
        raise OSError(self.code, "refused")


@pytest.mark.parametrize("code, status", [
    (errno.ENOSPC, 413), (errno.EDQUOT, 413), (errno.EACCES, 503), (errno.EROFS, 503)])
def test_a_refusing_staging_area(v2: V2, monkeypatch, code: int, status: int) -> None:
    area = v2.stack.v2.importer.staging
    real = area._open_part

    @contextlib.contextmanager
    def refusing(image_id: str) -> Iterator[Any]:
        with real(image_id) as staged:
            yield _Refusing(staged, code)

    monkeypatch.setattr(area, "_open_part", refusing)
    image = new_image(v2)
    res = _stage(v2, image["id"], b"x" * 100)
    assert res.status_int == status, res.text
    assert ("full" if status == 413 else "permissions") in res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and shown["size"] is None
    assert staged_files(v2) == []
    monkeypatch.undo()
    assert stage(v2, image["id"], b"x" * 100).status_int == 204
