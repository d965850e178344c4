"""The tee-while-streaming writer: verification, abandonment, write errors,
and many readers sharing one upstream."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Iterator

import pytest

from glance_clone.cache import fill as fill_mod
from glance_clone.cache import layout
from glance_clone.cache.fill import CacheFillError, State
from glance_clone.cache.image_cache import ImageCache
from tests.unit.cache.conftest import run_threads, wait_for

pytestmark = pytest.mark.timeout(60)

CHUNK = fill_mod.CHUNK_SIZE
DATA = bytes(range(256)) * 1024 + b"tail"        # 4 chunks and a bit
GOOD = hashlib.md5(DATA).hexdigest()


class Upstream:
    """A store stream: counts pulls, remembers close, can fail or gate."""

    def __init__(self, data: bytes = DATA, chunk: int = CHUNK,
                 fail_at: int | None = None, gate: threading.Event | None = None) -> None:
        self.chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
        self.pulled = 0
        self.closed = False
        self.fail_at = fail_at
        self.gate = gate
        self._it = self._generate()

    def _generate(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.gate is not None and index > 0:
                assert self.gate.wait(30)
            if self.fail_at == index:
                raise OSError("store connection lost")
            self.pulled += 1
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        return self._it

    def close(self) -> None:
        self.closed = True


def read_all(reader: fill_mod.FillReader) -> bytes:
    try:
        return b"".join(reader)
    finally:
        reader.close()


def start(cache: ImageCache, upstream: Upstream, image_id: str = "img",
          checksum: str | None = GOOD, size: int = len(DATA),
          fallback=None) -> fill_mod.FillReader:
    fill, ours = cache.claim(image_id)
    assert ours
    reader = fill.start(upstream, size, checksum, fallback)
    assert reader is not None
    return reader


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


def test_checksum_mismatch_withholds_the_end(cache: ImageCache) -> None:
    reader = start(cache, Upstream(), checksum="0" * 32)
    received = bytearray()
    with pytest.raises(CacheFillError, match="checksum"):
        for chunk in reader:
            received += chunk
    reader.close()
    assert len(received) < len(DATA)
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]


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
    with pytest.raises(IOError, match="store connection lost"):
        read_all(start(cache, upstream))
    assert upstream.closed
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]


def test_client_going_away_moves_the_file_to_invalid(cache: ImageCache) -> None:
    upstream = Upstream()
    reader = start(cache, upstream)
    next(reader)
    reader.close()
    assert upstream.closed
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]
    assert cache.fills.get("img") is None


def test_follower_finishes_after_the_first_client_left(cache: ImageCache) -> None:
    upstream = Upstream()
    first = start(cache, upstream)
    fill = cache.fills.get("img")
    assert fill is not None
    follower = fill.join()
    assert follower is not None
    next(first)
    first.close()
    assert read_all(follower) == DATA
    assert cache.is_cached("img")
    assert upstream.pulled == len(upstream.chunks)


def test_write_error_does_not_affect_the_client(cache: ImageCache,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = fill_mod._pwrite_all
    writes = [0]

    def failing_write(fd: int, data: bytes, offset: int) -> None:
        writes[0] += 1
        if writes[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data, offset)

    monkeypatch.setattr(fill_mod, "_pwrite_all", failing_write)
    upstream = Upstream()
    assert read_all(start(cache, upstream)) == DATA
    assert upstream.pulled == len(upstream.chunks) and upstream.closed
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("incomplete")) == []
    assert os.listdir(cache.layout.subdir("invalid")) == []


def test_write_error_sends_readers_behind_to_their_fallback(
        cache: ImageCache, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = fill_mod._pwrite_all
    writes = [0]

    def failing_write(fd: int, data: bytes, offset: int) -> None:
        writes[0] += 1
        if writes[0] == 2:
            raise OSError(errno.EIO, "I/O error")
        real_write(fd, data, offset)

    monkeypatch.setattr(fill_mod, "_pwrite_all", failing_write)
    fallbacks = []

    def fallback() -> Iterator[bytes]:
        again = Upstream(chunk=1000)
        fallbacks.append(again)
        return iter(again)

    upstream = Upstream()
    leader = start(cache, upstream)
    fill = cache.fills.get("img")
    assert fill is not None
    behind = fill.join(fallback)
    assert behind is not None
    assert read_all(leader) == DATA
    assert read_all(behind) == DATA
    assert len(fallbacks) == 1
    assert not cache.is_cached("img")


def test_deleted_while_filling_is_not_admitted(cache: ImageCache) -> None:
    reader = start(cache, Upstream())
    next(reader)
    cache.purge("img")
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


def test_another_process_filling_is_shared_privately(cache: ImageCache) -> None:
    other = layout.open_locked(cache.layout.incomplete("img"))
    assert other is not None
    try:
        os.write(other, b"the other process's bytes")
        upstream = Upstream()
        first = start(cache, upstream)
        fill = cache.fills.get("img")
        assert fill is not None and fill.private
        second = fill.join()
        assert second is not None
        assert read_all(first) == DATA and read_all(second) == DATA
        assert upstream.pulled == len(upstream.chunks)
        assert not cache.is_cached("img")
        assert os.listdir(cache.layout.subdir("incomplete")) == ["img"]
        assert os.pread(other, 100, 0) == b"the other process's bytes"
        fill, ours = cache.claim("img")
        assert ours
        assert fill.start(Upstream(), len(DATA), GOOD, share_privately=False) is None
        assert fill.state is State.RELEASED
        assert cache.fills.get("img") is None
    finally:
        os.close(other)


def test_no_room_means_no_caching(cache: ImageCache, monkeypatch: pytest.MonkeyPatch) -> None:
    class Full:
        f_bavail = 1
        f_frsize = 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    fill, _ours = cache.claim("img")
    assert fill.start(Upstream(), len(DATA), GOOD) is None


def test_stale_incomplete_file_is_taken_over(cache: ImageCache) -> None:
    with open(cache.layout.incomplete("img"), "wb") as stale:
        stale.write(b"garbage from a crashed fill" * 10000)
    assert read_all(start(cache, Upstream())) == DATA
    assert cache.is_cached("img")


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


def test_no_descriptor_is_leaked(cache: ImageCache, monkeypatch: pytest.MonkeyPatch) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    read_all(start(cache, Upstream(), image_id="ok"))
    with pytest.raises(CacheFillError):
        read_all(start(cache, Upstream(), image_id="bad", checksum="0" * 32))
    abandoned = start(cache, Upstream(), image_id="gone")
    next(abandoned)
    abandoned.close()
    hit = cache.open_cached("ok")
    assert hit is not None
    reader = hit.reader()
    next(reader)
    reader.close()
    real_write = fill_mod._pwrite_all
    calls = [0]

    def fail_second(fd: int, data: bytes, offset: int) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.ENOSPC, "full")
        real_write(fd, data, offset)

    monkeypatch.setattr(fill_mod, "_pwrite_all", fail_second)
    upstream = Upstream()
    read_all(start(cache, upstream, image_id="full"))
    assert upstream.closed
    assert open_fds() == before
