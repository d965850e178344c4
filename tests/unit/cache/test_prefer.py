"""A v2 download that prefers stores (``?prefer=``) and the image cache:
checked as the API checks it, then served from the cache."""

from __future__ import annotations

import os
import pathlib

import pytest

from tests.unit.api.v1.helpers import policy_file
from tests.unit.cache.conftest import CacheStack, body_of, build_cache_stack

DATA = os.urandom(100 * 1024 + 3)


def named(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
          **extra: str) -> CacheStack:
    return build_cache_stack(tmp_path, monkeypatch, overrides={
        "enabled_backends": {"fast": "file", "cheap": "file"},
        "glance_store.default_backend": "fast",
        "fast.filesystem_store_datadir": str(tmp_path / "fast"),
        "cheap.filesystem_store_datadir": str(tmp_path / "cheap"),
        **extra})


def test_a_hit_that_prefers_stores_comes_from_the_cache(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cstack = named(tmp_path, monkeypatch, **{
        "oslo_policy.policy_file": policy_file(tmp_path,
                                               {"download_from_store": "role:admin"})})
    image_id = cstack.upload(DATA)
    path = "/v2/images/%s/file" % image_id
    miss = cstack.request(path + "?prefer=fast", tenant="t1", roles="admin")
    assert miss.status_int == 200 and body_of(miss) == DATA
    assert cstack.reads.count == 1 and cstack.cached_files() == [image_id]
    # cheap holds no copy: the hit does not care where the data would come from.
    hit = cstack.request(path + "?prefer=cheap,fast", tenant="t1", roles="admin")
    assert hit.status_int == 200 and body_of(hit) == DATA
    assert cstack.reads.count == 1
    # The API's refusals stand, with the data cached.
    assert cstack.request(path + "?prefer=tape", tenant="t1",
                          roles="admin").status_int == 400
    assert cstack.request(path + "?prefer=fast", tenant="t1",
                          roles="reader,member").status_int == 403
    member = cstack.request(path, tenant="t1", roles="reader,member")
    assert body_of(member) == DATA and cstack.reads.count == 1


def test_a_hit_that_prefers_stores_without_named_stores_is_400(
        cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    path = "/v2/images/%s/file" % image_id
    assert body_of(cstack.request(path, tenant="t1")) == DATA
    assert cstack.cached_files() == [image_id]
    assert cstack.request(path + "?prefer=file", tenant="t1").status_int == 400
    assert cstack.reads.count == 1
