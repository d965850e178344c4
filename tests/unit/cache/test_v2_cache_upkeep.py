"""The v2.18 cache routes: /v2/cache/nodes/{id}, /v2/cache/clean, /v2/cache/prune."""

from __future__ import annotations

import json
import os
import pathlib
import time

import pytest

from glance_clone.cache import layout
from tests.unit.api.v1.helpers import policy_file
from tests.unit.cache.conftest import CacheStack, body_of, build_cache_stack

pytestmark = pytest.mark.timeout(60)

DATA = os.urandom(70000)
ADMIN = {"tenant": "admin-t", "roles": "admin"}
MEMBER = {"tenant": "t1", "roles": "reader,member"}
NODE = "http://api-2.example:9292"
ROUTES = (("/v2/cache/nodes/%s", "GET"), ("/v2/cache/clean", "POST"),
          ("/v2/cache/prune", "POST"))


def stack_with_cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                     **overrides) -> CacheStack:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    return build_cache_stack(tmp_path, monkeypatch, cache_dir=cache_dir,
                             overrides={"image_cache_dir": str(cache_dir), **overrides})


@pytest.fixture
def v2stack(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> CacheStack:
    return stack_with_cache(tmp_path, monkeypatch, worker_self_reference_url=NODE)


def cached(cstack: CacheStack, data: bytes = DATA) -> str:
    image_id = cstack.upload(data)
    body_of(cstack.get(image_id))
    assert image_id in cstack.cached_files()
    return image_id


def test_nodes_names_this_node_when_the_image_is_cached_here(v2stack: CacheStack) -> None:
    image = cached(v2stack)
    other = v2stack.upload(DATA[:500])
    answer = v2stack.request("/v2/cache/nodes/" + image, **ADMIN)
    assert answer.status_int == 200, answer.body
    assert answer.content_type == "application/json"
    assert json.loads(answer.body) == [NODE]
    assert json.loads(v2stack.request("/v2/cache/nodes/" + other, **ADMIN).body) == []
    missing = "00000000-0000-0000-0000-000000000000"
    assert v2stack.request("/v2/cache/nodes/" + missing, **ADMIN).status_int == 404
    assert v2stack.request("/v2/cache/nodes/" + image, body=b"{}",
                           **ADMIN).status_int == 400


def test_nodes_without_a_node_url_is_a_conflict(tmp_path: pathlib.Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_with_cache(tmp_path, monkeypatch)
    image = cached(stack)
    answer = stack.request("/v2/cache/nodes/" + image, **ADMIN)
    assert answer.status_int == 409
    assert b"worker_self_reference_url" in answer.body


def test_clean_removes_invalid_and_stalled_files(v2stack: CacheStack) -> None:
    kept = cached(v2stack)
    invalid = v2stack.cache_dir / "invalid"
    incomplete = v2stack.cache_dir / "incomplete"
    (invalid / "broken").write_bytes(b"x")
    for name in ("stalled", "fresh"):
        (incomplete / name).write_bytes(b"partial")
    old = time.time() - v2stack.conf.image_cache_stall_time - 60
    os.utime(incomplete / "stalled", (old, old))
    answer = v2stack.request("/v2/cache/clean", "POST", **ADMIN)
    assert answer.status_int == 200, answer.body
    assert json.loads(answer.body) == {"verified": 1, "corrupt": 0, "invalid_removed": 1,
                                       "stalled_removed": 1, "busy_skipped": 0}
    assert v2stack.files_in("invalid") == []
    assert v2stack.files_in("incomplete") == ["fresh"]
    assert v2stack.cached_files() == [kept]


def test_clean_takes_an_empty_object(v2stack: CacheStack) -> None:
    answer = v2stack.request("/v2/cache/clean", "POST", body=b"{}", **ADMIN)
    assert answer.status_int == 200, answer.body


def test_prune_brings_the_cache_under_its_limit(v2stack: CacheStack) -> None:
    images = [cached(v2stack, DATA[:size]) for size in (30000, 20000, 10000)]
    assert v2stack.cache.cache_size() == 60000
    v2stack.conf.set_override("image_cache_max_size", 25000)
    answer = v2stack.request("/v2/cache/prune", "POST", **ADMIN)
    assert answer.status_int == 200, answer.body
    # Least recently used first, until under the limit: the two read first.
    assert json.loads(answer.body) == {"total_files_pruned": 2, "total_bytes_pruned": 50000}
    assert v2stack.cached_files() == [images[2]]
    assert v2stack.cache.cache_size() <= 25000
    answer = v2stack.request("/v2/cache/prune", "POST", **ADMIN)
    assert json.loads(answer.body) == {"total_files_pruned": 0, "total_bytes_pruned": 0}


def test_prune_while_another_runs_is_a_conflict(v2stack: CacheStack) -> None:
    image = cached(v2stack)
    v2stack.conf.set_override("image_cache_max_size", 0)
    with layout.held_lock(str(v2stack.cache_dir / layout.PRUNER_LOCK)) as held:
        assert held
        answer = v2stack.request("/v2/cache/prune", "POST", **ADMIN)
    assert answer.status_int == 409
    assert v2stack.cached_files() == [image]


@pytest.mark.parametrize("path, method", ROUTES)
def test_admin_only_by_default(v2stack: CacheStack, path: str, method: str) -> None:
    image = cached(v2stack)
    (v2stack.cache_dir / "invalid" / "broken").write_bytes(b"x")
    v2stack.conf.set_override("image_cache_max_size", 0)
    answer = v2stack.request(path.replace("%s", image), method, **MEMBER)
    assert answer.status_int == 403
    assert v2stack.cached_files() == [image]
    assert v2stack.files_in("invalid") == ["broken"]


def test_each_route_has_its_rule(tmp_path: pathlib.Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rules = policy_file(tmp_path, {"list_cached_nodes": "", "cache_clean": "",
                                   "cache_prune": "role:admin"})
    stack = stack_with_cache(tmp_path, monkeypatch, worker_self_reference_url=NODE,
                             **{"oslo_policy.policy_file": rules})
    image = stack.upload(DATA)
    assert stack.request("/v2/cache/nodes/" + image, **MEMBER).status_int == 200
    assert stack.request("/v2/cache/clean", "POST", **MEMBER).status_int == 200
    assert stack.request("/v2/cache/prune", "POST", **MEMBER).status_int == 403


@pytest.mark.parametrize("path, method", ROUTES)
def test_without_a_cache_directory_the_routes_are_not_there(cstack: CacheStack, path: str,
                                                            method: str) -> None:
    # cstack's v2 API was built before image_cache_dir was set.
    image = cstack.upload(DATA)
    answer = cstack.request(path.replace("%s", image), method, **ADMIN)
    assert answer.status_int == 404
    assert b"not supported" in answer.body


def test_other_methods_are_refused(v2stack: CacheStack) -> None:
    assert v2stack.request("/v2/cache/clean", **ADMIN).status_int == 405
    assert v2stack.request("/v2/cache/prune", "PUT", **ADMIN).status_int == 405
    assert v2stack.request("/v2/cache/nodes/x", "POST", **ADMIN).status_int == 405
