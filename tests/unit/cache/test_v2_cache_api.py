"""The v2 cache API (/v2/cache) over the same cache as the cache filter."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from tests.support.stack import make_stack
from tests.unit.api.v1.helpers import policy_file
from tests.unit.cache.conftest import CacheStack, body_of, build_cache_stack

pytestmark = pytest.mark.timeout(60)

DATA = os.urandom(70000)
ADMIN = {"tenant": "admin-t", "roles": "admin"}


@pytest.fixture
def v2stack(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> CacheStack:
    """The cache stack, its v2 API built with image_cache_dir set."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    return build_cache_stack(tmp_path, monkeypatch, cache_dir=cache_dir,
                             overrides={"image_cache_dir": str(cache_dir)})


def admin(cstack: CacheStack, path: str, method: str = "GET", **kw):
    return cstack.request(path, method, **dict(ADMIN, **kw))


def state(cstack: CacheStack) -> dict:
    answer = admin(cstack, "/v2/cache")
    assert answer.status_int == 200, answer.body
    return json.loads(answer.body)


def test_list_queue_and_delete(v2stack: CacheStack) -> None:
    cached, other = v2stack.upload(DATA), v2stack.upload(DATA[:500])
    body_of(v2stack.get(cached))
    body_of(v2stack.get(cached))
    listed = state(v2stack)
    assert [entry["image_id"] for entry in listed["cached_images"]] == [cached]
    assert listed["cached_images"][0]["hits"] == 1
    assert set(listed["cached_images"][0]) == {"image_id", "hits", "last_accessed",
                                               "last_modified", "size"}
    assert listed["queued_images"] == []

    answer = admin(v2stack, "/v2/cache/" + other, "PUT")
    assert answer.status_int == 202, answer.body
    assert state(v2stack)["queued_images"] == [other]
    # The same queue the v1 routes and the prefetcher read.
    assert v2stack.cache.list_queued() == [other]

    assert admin(v2stack, "/v2/cache/" + cached, "DELETE").status_int == 204
    assert admin(v2stack, "/v2/cache/" + other, "DELETE").status_int == 204
    assert state(v2stack) == {"cached_images": [], "queued_images": []}


@pytest.mark.parametrize("target, left", [
    ("cache", {"cached": False, "queued": True}),
    ("queue", {"cached": True, "queued": False}),
    ("", {"cached": False, "queued": False}),
    (None, {"cached": False, "queued": False}),
])
def test_clear_targets(v2stack: CacheStack, target: str | None, left: dict) -> None:
    cached, queued = v2stack.upload(DATA), v2stack.upload(DATA[:500])
    body_of(v2stack.get(cached))
    assert admin(v2stack, "/v2/cache/" + queued, "PUT").status_int == 202
    headers = {} if target is None else {"x-image-cache-clear-target": target}
    answer = admin(v2stack, "/v2/cache", "DELETE", headers=headers)
    assert answer.status_int == 204, answer.body
    after = state(v2stack)
    assert bool(after["cached_images"]) is left["cached"]
    assert bool(after["queued_images"]) is left["queued"]


def test_bad_clear_target_clears_nothing(v2stack: CacheStack) -> None:
    cached = v2stack.upload(DATA)
    body_of(v2stack.get(cached))
    answer = admin(v2stack, "/v2/cache", "DELETE",
                   headers={"x-image-cache-clear-target": "everything"})
    assert answer.status_int == 400
    assert b"x-image-cache-clear-target" in answer.body
    assert len(state(v2stack)["cached_images"]) == 1


def test_queueing_needs_an_active_image(v2stack: CacheStack) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    assert admin(v2stack, "/v2/cache/" + missing, "PUT").status_int == 404
    queued = v2stack.register(DATA, status="queued")
    answer = admin(v2stack, "/v2/cache/" + queued, "PUT")
    assert answer.status_int == 400 and b"active" in answer.body
    assert admin(v2stack, "/v2/cache/..", "DELETE").status_int in (400, 404)
    assert state(v2stack)["queued_images"] == []


def test_admin_only_by_default(v2stack: CacheStack) -> None:
    image = v2stack.upload(DATA)
    for path, method in (("/v2/cache", "GET"), ("/v2/cache", "DELETE"),
                         ("/v2/cache/" + image, "PUT"), ("/v2/cache/" + image, "DELETE")):
        answer = v2stack.request(path, method, tenant="t1", roles="reader,member")
        assert answer.status_int == 403, (path, method)
    assert v2stack.cache.list_queued() == []


def test_each_route_has_its_rule(tmp_path: pathlib.Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    rules = policy_file(tmp_path, {"cache_list": "", "cache_image": "role:admin",
                                   "cache_delete": "role:admin"})
    stack = build_cache_stack(tmp_path, monkeypatch, cache_dir=cache_dir, overrides={
        "image_cache_dir": str(cache_dir), "oslo_policy.policy_file": rules})
    image = stack.upload(DATA)
    assert stack.request("/v2/cache", tenant="t1").status_int == 200
    assert stack.request("/v2/cache/" + image, "PUT", tenant="t1").status_int == 403


def test_no_body_and_no_other_methods(v2stack: CacheStack) -> None:
    assert admin(v2stack, "/v2/cache", "GET", body=b"{}").status_int == 400
    assert admin(v2stack, "/v2/cache", "POST").status_int == 405


def test_without_a_cache_directory_the_api_is_not_there(cstack: CacheStack) -> None:
    # cstack's v2 API was built before image_cache_dir was set.
    answer = admin(cstack, "/v2/cache")
    assert answer.status_int == 404
    assert b"not supported" in answer.body


def test_an_unusable_cache_directory_is_a_503_saying_why(tmp_path: pathlib.Path) -> None:
    stack = make_stack(tmp_path, {"image_cache_dir": str(tmp_path / "missing")})
    answer = stack.request("/v2/cache", **ADMIN)
    assert answer.status_int == 503
    assert b"image cache is disabled" in answer.body
    assert stack.request("/v2/cache", tenant="t1").status_int == 403
