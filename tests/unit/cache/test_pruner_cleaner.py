"""glance-cache-pruner and glance-cache-cleaner logic."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from glance_clone.cache import cleaner, layout, pruner
from glance_clone.cache.image_cache import ImageCache
from glance_clone.common.chunking import CHUNK_SIZE

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
    size = 3 * CHUNK_SIZE + 5
    put(cache, "busy", size, 1.0)
    hit = cache.open_cached("busy")
    assert hit is not None
    reader = hit.reader()
    first = next(reader)
    assert pruner.prune(cache, 0).removed == 1
    assert not cache.is_cached("busy")
    rest = b"".join(reader)
    reader.close()
    assert len(first) + len(rest) == size


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


def test_cleaner_hashes_cached_files_again(cache: ImageCache) -> None:
    put(cache, "good", 5000, 1.0)
    put(cache, "rotten", 5000, 1.0)
    path = cache.layout.complete("rotten")
    st = os.stat(path)
    with open(path, "r+b") as handle:       # a bit flipped on disk, mtime kept
        handle.seek(4000)
        handle.write(b"\0")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = cleaner.clean(cache, stall_time=500)
    assert [e.image_id for e in cache.list_cached()] == ["good"]
    # Where the ctime is recorded the hit check already refuses the file;
    # either way it is gone.
    assert result.corrupt + result.invalid_removed >= 1
    assert os.listdir(cache.layout.subdir("invalid")) == []


def test_verify_checks_the_multihash_too(cache: ImageCache) -> None:
    data = os.urandom(5000)
    for image_id, multihash in (("good", hashlib.sha512(data).hexdigest()),
                                ("bad", hashlib.sha512(b"other").hexdigest())):
        fd = os.open(cache.layout.incomplete(image_id), os.O_RDWR | os.O_CREAT, 0o640)
        os.write(fd, data)
        # md5 unknown: only the multihash can tell.
        assert cache.admit(image_id, fd, len(data), "", ("sha512", multihash))
        os.close(fd)
    entry = cache.driver.get_entry("good")
    assert entry is not None and entry.multihash == ("sha512", hashlib.sha512(data).hexdigest())
    assert cache.verify_cached() == (2, 1)
    assert [e.image_id for e in cache.list_cached()] == ["good"]
    assert os.listdir(cache.layout.subdir("invalid")) == ["bad"]


def test_verify_hashes_the_whole_file(cache: ImageCache) -> None:
    put(cache, "img", 5000, 1.0)
    cached = cache.open_cached("img")
    assert cached is not None and cached.verify() == ""
    with open(cache.layout.complete("img"), "r+b") as handle:
        handle.seek(10)
        handle.write(b"\xff")
    assert cached.verify() != ""
    cached.close()
