"""The tee-while-streaming writer: verification, abandonment, write errors,
many readers sharing one upstream, and a pump that does not wait for them."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from glance_clone.cache import fill as fill_mod
from glance_clone.cache import layout
from glance_clone.cache.fill import CacheFillError, Role, State
from glance_clone.cache.image_cache import ImageCache
from tests.unit.cache.conftest import (
    CHUNK,
    DATA,
    GOOD,
    Upstream,
    held_verdicts,
    read_all,
    run_threads,
    start,
    wait_for,
    with_fallback,
)

pytestmark = pytest.mark.timeout(60)

def test_verified_file_is_admitted(cache: ImageCache) -> None:
    cache.queue("img")
    upstream = Upstream()
    assert read_all(start(cache, upstream)) == DATA
    assert upstream.closed
    assert cache.is_cached("img")
    assert cache.list_queued() == []
    assert os.listdir(cache.layout.subdir("incomplete")) == []
    hit = cache.open_cached("img")
    assert hit is not None and hit.entry.checksum == GOOD and hit.entry.hits == 0
    assert b"".join(hit.reader()) == DATA
    hit.close()
    assert cache.list_cached()[0].hits == 1


def test_a_checksum_mismatch_is_not_admitted(cache: ImageCache) -> None:
    reader = start(cache, Upstream(), checksum="0" * 32)
    # The store's bytes at store speed, as an uncached download gets them;
    # closing the stream waits for the verdict on the file.
    assert read_all(reader) == DATA
    assert reader.fill.state is State.FAILED and "checksum" in reader.fill.failure
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]


def test_readers_are_not_held_back_by_the_hashing(cache: ImageCache,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = held_verdicts(monkeypatch)
    reader = start(cache, Upstream())
    assert b"".join(reader) == DATA         # every byte before the verdict
    assert not cache.is_cached("img")
    verdict.set()
    reader.close()
    assert cache.is_cached("img")


def test_a_reader_behind_when_a_mismatch_is_found_is_cut(cache: ImageCache) -> None:
    fast = start(cache, Upstream(), checksum="0" * 32)
    slow = fast.fill.join()
    assert slow is not None
    received = bytearray(next(slow))
    assert read_all(fast) == DATA
    with pytest.raises(CacheFillError, match="checksum"):
        for chunk in slow:
            received += chunk
    slow.close()
    assert len(received) < len(DATA)


def test_short_upstream_is_rejected(cache: ImageCache) -> None:
    reader = start(cache, Upstream(), size=len(DATA) + 10, checksum=None)
    with pytest.raises(CacheFillError, match="expected"):
        read_all(reader)
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]


def test_long_upstream_is_rejected(cache: ImageCache) -> None:
    reader = start(cache, Upstream(), size=len(DATA) - 10, checksum=None)
    with pytest.raises(CacheFillError):
        read_all(reader)
    assert not cache.is_cached("img")


def test_store_error_reaches_the_client(cache: ImageCache) -> None:
    upstream = Upstream(fail_at=2)
    with pytest.raises(CacheFillError, match="store connection lost"):
        read_all(start(cache, upstream))
    assert upstream.closed
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]


def test_client_going_away_moves_the_file_to_invalid(cache: ImageCache) -> None:
    gate = threading.Event()
    upstream = Upstream(gate=gate)
    reader = start(cache, upstream)
    next(reader)
    reader.close()
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]
    assert cache.fills.get("img") is None
    # The pump stops as soon as the store answers again, and closes it.
    gate.set()
    wait_for(lambda: upstream.closed, message="the store stream to be closed")
    assert upstream.pulled == 2
    assert not cache.is_cached("img")
    assert os.path.getsize(cache.layout.invalid("img")) == CHUNK


def test_follower_finishes_after_the_first_client_left(cache: ImageCache) -> None:
    # The gate holds the pump after the first chunk: without it the fill can
    # end (and leave cache.fills) before the follower has joined.
    gate = threading.Event()
    upstream = Upstream(gate=gate)
    first = start(cache, upstream)
    fill = cache.fills.get("img")
    assert fill is not None
    follower = fill.join()
    assert follower is not None
    next(first)
    first.close()
    gate.set()
    assert read_all(follower) == DATA
    assert cache.is_cached("img")
    assert upstream.pulled == len(upstream.chunks)


def failing_nth_write(monkeypatch: pytest.MonkeyPatch, nth: int, err: int) -> None:
    real_write = fill_mod._pwrite_all
    writes = [0]

    def failing_write(fd: int, data: bytes, offset: int) -> None:
        writes[0] += 1
        if writes[0] == nth:
            raise OSError(err, os.strerror(err))
        real_write(fd, data, offset)

    monkeypatch.setattr(fill_mod, "_pwrite_all", failing_write)


def test_write_error_does_not_affect_the_client(cache: ImageCache,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    failing_nth_write(monkeypatch, 3, errno.ENOSPC)
    upstream = Upstream()
    reader, fallbacks = with_fallback(lambda fb: start(cache, upstream, fallback=fb))
    assert read_all(reader) == DATA
    # The pump stopped at the chunk it could not write.
    assert upstream.pulled == 3 and upstream.closed
    assert len(fallbacks.offsets) == 1 and fallbacks.offsets[0] <= 2 * CHUNK
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("incomplete")) == []
    assert os.listdir(cache.layout.subdir("invalid")) == []


def test_write_error_sends_every_reader_to_its_fallback(
        cache: ImageCache, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_nth_write(monkeypatch, 2, errno.EIO)
    gate = threading.Event()
    upstream = Upstream(gate=gate)
    ahead, ahead_fallbacks = with_fallback(lambda fb: start(cache, upstream, fallback=fb))
    fill = cache.fills.get("img")
    assert fill is not None
    behind, behind_fallbacks = with_fallback(fill.join)
    first = next(ahead)
    assert first == DATA[:CHUNK]
    gate.set()
    assert first + read_all(ahead) == DATA
    assert read_all(behind) == DATA
    # Each goes on from where it was, without the file.
    assert (ahead_fallbacks.offsets, behind_fallbacks.offsets) == ([CHUNK], [0])
    assert upstream.closed
    assert not cache.is_cached("img")


def test_deleted_while_filling_is_not_admitted(cache: ImageCache) -> None:
    gate = threading.Event()
    reader = start(cache, Upstream(gate=gate))
    next(reader)
    cache.purge("img")
    gate.set()
    rest = b"".join(reader)
    reader.close()
    assert len(rest) == len(DATA) - CHUNK
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("incomplete")) == []


def test_released_claim_lets_the_next_request_try(cache: ImageCache) -> None:
    fill, ours = cache.claim("img")
    assert ours
    assert cache.claim("img") == (fill, False)
    waiter: list[object] = []
    thread = threading.Thread(target=lambda: waiter.append(fill.join()))
    thread.start()
    fill.release()
    thread.join(10)
    assert waiter == [None]
    again, ours = cache.claim("img")
    assert ours and again is not fill
    again.release()


def test_without_follow_another_process_filling_means_no_caching(cache: ImageCache) -> None:
    other = layout.open_locked(cache.layout.incomplete("img"))
    assert other is not None
    try:
        fill, ours = cache.claim("img")
        assert ours
        assert fill.acquire(follow=False) is Role.NONE
        assert fill.state is State.RELEASED
        assert cache.fills.get("img") is None
        assert os.listdir(cache.layout.subdir("incomplete")) == ["img"]
    finally:
        os.close(other)


def test_released_writer_claim_removes_its_empty_file(cache: ImageCache) -> None:
    fill, _ours = cache.claim("img")
    assert fill.acquire() is Role.WRITER
    assert os.listdir(cache.layout.subdir("incomplete")) == ["img"]
    fill.release()
    assert os.listdir(cache.layout.subdir("incomplete")) == []
    again, ours = cache.claim("img")
    assert ours and again.acquire() is Role.WRITER
    again.release()


def test_already_cached_is_not_filled_again(cache: ImageCache) -> None:
    read_all(start(cache, Upstream()))
    fill, ours = cache.claim("img")
    assert ours
    assert fill.acquire() is Role.CACHED
    assert fill.state is State.RELEASED and cache.fills.get("img") is None


def test_no_room_means_no_caching(cache: ImageCache, monkeypatch: pytest.MonkeyPatch) -> None:
    class Full:
        f_bavail = 1
        f_frsize = 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    fill, _ours = cache.claim("img")
    assert fill.acquire() is Role.WRITER
    assert fill.start(Upstream(), len(DATA), GOOD) is None
    assert fill.state is State.RELEASED
    assert os.listdir(cache.layout.subdir("incomplete")) == []


def test_stale_incomplete_file_is_taken_over(cache: ImageCache) -> None:
    with open(cache.layout.incomplete("img"), "wb") as stale:
        stale.write(b"garbage from a crashed fill" * 10000)
    assert read_all(start(cache, Upstream())) == DATA
    assert cache.is_cached("img")


def test_stale_incomplete_file_is_replaced_not_rewritten(cache: ImageCache) -> None:
    garbage = b"garbage from a crashed fill" * 10000
    path = cache.layout.incomplete("img")
    with open(path, "wb") as stale:
        stale.write(garbage)
    # Someone may still be reading the old file, as a tailer would.
    old = os.open(path, os.O_RDONLY)
    try:
        fill, _ours = cache.claim("img")
        assert fill.acquire() is Role.WRITER
        assert os.fstat(fill.fd).st_ino != os.fstat(old).st_ino
        assert os.fstat(fill.fd).st_size == 0
        reader = fill.start(Upstream(), len(DATA), GOOD)
        assert reader is not None and read_all(reader) == DATA
        assert os.pread(old, len(garbage) + 1, 0) == garbage
        assert os.fstat(old).st_nlink == 0
    finally:
        os.close(old)
    assert cache.is_cached("img")


def test_pump_fills_ahead_of_a_reader_that_does_not_read(cache: ImageCache) -> None:
    upstream = Upstream(chunk=4096)
    idle = start(cache, upstream)
    wait_for(lambda: cache.is_cached("img"), message="the pump to fill the file")
    assert upstream.pulled == len(upstream.chunks) and upstream.closed
    assert idle.offset == 0
    assert read_all(idle) == DATA


def test_many_readers_share_one_upstream(cache: ImageCache) -> None:
    gate = threading.Event()
    upstream = Upstream(chunk=4096, gate=gate)
    first = start(cache, upstream)
    fill = cache.fills.get("img")
    assert fill is not None
    readers = [first] + [fill.join() for _ in range(9)]
    assert all(r is not None for r in readers)

    def consume(index: int) -> bytes:
        return read_all(readers[index])  # type: ignore[arg-type]

    results: list[bytes] = []

    def run() -> None:
        out, errors = run_threads(10, consume)
        assert not errors
        results.extend(out)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: upstream.pulled >= 1, message="the first pull")
    gate.set()
    thread.join(60)
    assert results == [DATA] * 10
    assert upstream.pulled == len(upstream.chunks)
    assert cache.is_cached("img")


def test_no_descriptor_is_leaked(cache: ImageCache, cache_dir: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def open_fds() -> int:
        # Only this cache's image files: a descriptor of an earlier test that
        # closes meanwhile must not make the count differ.
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                continue
            if target.startswith(str(cache_dir)) and "cache.db" not in target:
                count += 1
        return count

    before = open_fds()
    read_all(start(cache, Upstream(), image_id="ok"))
    read_all(start(cache, Upstream(), image_id="bad", checksum="0" * 32))
    abandoned = start(cache, Upstream(), image_id="gone")
    next(abandoned)
    abandoned.close()
    hit = cache.open_cached("ok")
    assert hit is not None
    reader = hit.reader()
    next(reader)
    reader.close()
    failing_nth_write(monkeypatch, 2, errno.ENOSPC)
    upstream = Upstream()
    full, _fallbacks = with_fallback(
        lambda fb: start(cache, upstream, image_id="full", fallback=fb))
    assert read_all(full) == DATA
    assert upstream.closed
    # A pump closes the file when it stops, which may be after its readers.
    wait_for(lambda: open_fds() == before, message="every descriptor to be closed")
