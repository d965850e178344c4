"""glance-cache-pruner and glance-cache-cleaner logic."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from glance_clone.cache import cleaner, layout, pruner
from glance_clone.cache.image_cache import ImageCache

pytestmark = pytest.mark.timeout(30)


def put(cache: ImageCache, image_id: str, size: int, accessed: float) -> None:
    data = os.urandom(size)
    fd = os.open(cache.layout.incomplete(image_id), os.O_RDWR | os.O_CREAT, 0o640)
    os.write(fd, data)
    assert cache.admit(image_id, fd, size, hashlib.md5(data).hexdigest())
    cache.driver.record_hit(image_id, fd, accessed)
    os.close(fd)


def test_prunes_least_recently_used_until_under_the_limit(cache: ImageCache) -> None:
    put(cache, "old", 1000, 100.0)
    put(cache, "newest", 1000, 300.0)
    put(cache, "middle", 1000, 200.0)
    result = pruner.prune(cache, 2000)
    assert result.removed == 1 and result.size_after <= 2000
    assert sorted(e.image_id for e in cache.list_cached()) == ["middle", "newest"]
    result = pruner.prune(cache, 1000)
    assert [e.image_id for e in cache.list_cached()] == ["newest"]
    assert pruner.prune(cache, 1000).removed == 0


def test_prune_does_not_cut_a_download_short(cache: ImageCache) -> None:
    put(cache, "busy", 200000, 1.0)
    hit = cache.open_cached("busy")
    assert hit is not None
    reader = hit.reader()
    first = next(reader)
    assert pruner.prune(cache, 0).removed == 1
    assert not cache.is_cached("busy")
    rest = b"".join(reader)
    reader.close()
    assert len(first) + len(rest) == 200000


def test_second_pruner_does_nothing(cache: ImageCache) -> None:
    put(cache, "img", 1000, 1.0)
    with layout.held_lock(os.path.join(cache.layout.base, layout.PRUNER_LOCK)) as held:
        assert held
        result = pruner.prune(cache, 0)
    assert not result.ran
    assert cache.is_cached("img")


def test_prune_leaves_fills_in_progress_alone(cache: ImageCache) -> None:
    with open(cache.layout.incomplete("filling"), "wb") as handle:
        handle.write(b"x" * 5000)
    put(cache, "img", 10, 1.0)
    pruner.prune(cache, 0)
    assert os.listdir(cache.layout.subdir("incomplete")) == ["filling"]


def test_cleaner_removes_invalid_and_stalled_files(cache: ImageCache) -> None:
    for name in ("bad1", "bad2"):
        with open(cache.layout.invalid(name), "wb") as handle:
            handle.write(b"x")
    for name in ("stalled", "fresh", "busy"):
        with open(cache.layout.incomplete(name), "wb") as handle:
            handle.write(b"x")
    old = time.time() - 1000
    os.utime(cache.layout.incomplete("stalled"), (old, old))
    os.utime(cache.layout.incomplete("busy"), (old, old))
    writer = layout.open_locked(cache.layout.incomplete("busy"))
    assert writer is not None
    try:
        result = cleaner.clean(cache, stall_time=500)
    finally:
        os.close(writer)
    assert (result.invalid_removed, result.stalled_removed, result.busy_skipped) == (2, 1, 1)
    assert os.listdir(cache.layout.subdir("invalid")) == []
    assert sorted(os.listdir(cache.layout.subdir("incomplete"))) == ["busy", "fresh"]
