"""Fixtures of the glance-api v2 tests: the in-process api + registry and a
client that speaks JSON as chosen callers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import webob

from tests.support.stack import Stack, make_stack

ADMIN = {"tenant": "admin-t", "roles": "admin", "user": "root"}
PATCH21 = "application/openstack-images-v2.1-json-patch"
PATCH20 = "application/openstack-images-v2.0-json-patch"


class V2:
    """Calls /v2 as a project (``tenant``) with ``roles``."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def call(self, method: str, path: str, body: Any = None, tenant: str | None = "t1",
             roles: str = "reader,member", content_type: str | None = None,
             raw: bytes | None = None, headers: dict[str, str] | None = None,
             user: str = "user") -> webob.Response:
        req = webob.Request.blank("/v2" + path, method=method)
        req.headers.update({"X-Identity-Status": "Confirmed", "X-Roles": roles,
                            "X-User-Id": user, "X-Tenant-Id": tenant or ""})
        if body is not None:
            raw = json.dumps(body).encode("utf-8")
            content_type = content_type or "application/json"
        if raw is not None:
            req.body = raw
        if content_type:
            req.content_type = content_type
        req.headers.update(headers or {})
        res = req.get_response(self.stack.api)
        assert res.status_int < 500, (method, path, res.status, res.text)
        return res

    def create(self, caller: dict | None = None, **image: Any) -> dict:
        """Create ``image`` as ``caller`` (call's keywords; t1 by default)."""
        res = self.call("POST", "/images", image, **(caller or {}))
        assert res.status_int == 201, res.text
        return res.json

    def patch(self, image_id: str, ops: list, tenant: str = "t1",
              media: str = PATCH21, **kw: Any) -> webob.Response:
        return self.call("PATCH", "/images/" + image_id, raw=json.dumps(ops).encode(),
                         content_type=media, tenant=tenant, **kw)

    def upload(self, image_id: str, data: bytes, tenant: str = "t1",
               content_type: str = "application/octet-stream", **kw: Any) -> webob.Response:
        return self.call("PUT", "/images/%s/file" % image_id, raw=data,
                         content_type=content_type, tenant=tenant, **kw)

    def names(self, query: str = "", tenant: str = "t1", **kw: Any) -> list[str]:
        res = self.call("GET", "/images" + query, tenant=tenant, **kw)
        assert res.status_int == 200, res.text
        return sorted(image["name"] for image in res.json["images"])


@pytest.fixture
def stack(tmp_path: Any) -> Stack:
    return make_stack(tmp_path)


@pytest.fixture
def v2(stack: Stack) -> V2:
    return V2(stack)


@pytest.fixture
def v2_with(tmp_path: Any) -> Callable[..., V2]:
    count = [0]

    def build(overrides: dict[str, Any] | None = None) -> V2:
        count[0] += 1
        base = tmp_path / ("stack%d" % count[0])
        base.mkdir()
        return V2(make_stack(base, overrides))
    return build
