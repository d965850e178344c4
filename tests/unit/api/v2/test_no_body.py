"""Newer Glance refuses a body on the v2 calls that take none (400), and
nothing happens."""

from __future__ import annotations

import pytest

from .conftest import ADMIN, V2


@pytest.mark.parametrize("method, path", [
    ("GET", "/schemas/image"), ("GET", "/images/{id}"), ("DELETE", "/images/{id}"),
    ("POST", "/images/{id}/actions/deactivate"), ("PUT", "/images/{id}/tags/t"),
    ("DELETE", "/images/{id}/tags/t"), ("GET", "/images/{id}/file"),
    ("GET", "/images/{id}/members"), ("GET", "/images/{id}/members/t2"),
    ("DELETE", "/images/{id}/members/t2"), ("GET", "/info/import"),
    ("GET", "/images/{id}/tasks")])
def test_a_body_where_none_is_taken_is_refused(v2: V2, method: str, path: str) -> None:
    image = v2.create(name="i", visibility="shared", disk_format="raw",
                      container_format="bare")
    assert v2.upload(image["id"], b"data").status_int == 204
    assert v2.call("POST", "/images/%s/members" % image["id"],
                   {"member": "t2"}).status_int == 200
    v2.call("PUT", "/images/%s/tags/t" % image["id"])
    res = v2.call(method, path.format(id=image["id"]), raw=b'{"x": 1}',
                  content_type="application/json", **ADMIN)
    assert res.status_int == 400, res.text
    assert "A body is not expected with this request." in res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "active" and shown["tags"] == ["t"]
    members = v2.call("GET", "/images/%s/members" % image["id"]).json["members"]
    assert [m["member_id"] for m in members] == ["t2"]
    # Without the body, the same call is answered.
    assert v2.call(method, path.format(id=image["id"]), **ADMIN).status_int < 300
