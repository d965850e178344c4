"""GET /v2/info/usage: the caller's quota usage, counted from the registry."""

from __future__ import annotations

from collections.abc import Callable

from .conftest import V2

MIB = 1024 ** 2


def _image(v2: V2, tenant: str = "t1") -> str:
    return v2.create({"tenant": tenant}, name="i", disk_format="raw",
                     container_format="bare")["id"]


def test_usage_counts_the_callers_images(v2_with: Callable[..., V2]) -> None:
    v2 = v2_with({"user_storage_quota": "10MB"})
    stored = _image(v2)
    assert v2.upload(stored, b"x" * (2 * MIB + 5)).status_int == 204
    _image(v2)  # queued: counted, takes nothing
    staged = _image(v2)
    res = v2.call("PUT", "/images/%s/stage" % staged, raw=b"y" * MIB,
                  content_type="application/octet-stream")
    assert res.status_int == 204, res.text
    other = _image(v2, tenant="t2")
    assert v2.upload(other, b"z" * (3 * MIB), tenant="t2").status_int == 204

    res = v2.call("GET", "/info/usage")
    assert res.status_int == 200
    assert res.json == {"usage": {
        "image_size_total": {"usage": 2, "limit": 10},
        "image_stage_total": {"usage": 1, "limit": -1},
        "image_count_total": {"usage": 3, "limit": -1},
        "image_count_uploading": {"usage": 1, "limit": -1}}}
    assert v2.call("GET", "/info/usage", tenant="t2").json["usage"] == {
        "image_size_total": {"usage": 3, "limit": 10},
        "image_stage_total": {"usage": 0, "limit": -1},
        "image_count_total": {"usage": 1, "limit": -1},
        "image_count_uploading": {"usage": 0, "limit": -1}}


def test_no_storage_quota_is_no_limit(v2: V2) -> None:
    assert v2.call("GET", "/info/usage").json["usage"]["image_size_total"] == {
        "usage": 0, "limit": -1}


def test_usage_takes_no_body_and_only_get(v2: V2) -> None:
    res = v2.call("GET", "/info/usage", body={"a": 1})
    assert res.status_int == 400
    assert "body" in res.text
    assert v2.call("POST", "/info/usage", body={}).status_int == 405
