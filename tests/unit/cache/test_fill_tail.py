"""Following the cache file another process is writing (tail mode).

"Another process" is a second ``ImageCache`` with its own ``FillRegistry``
on the same directory, or a bare descriptor holding the flock of
``incomplete/<id>`` and writing it by hand: flock locks belong to open
files, so they exclude each other within one process as across processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest

from glance_clone.cache import fill as fill_mod
from glance_clone.cache import layout
from glance_clone.cache.fill import CacheFillError, FillReader, Role, State
from glance_clone.cache.image_cache import ImageCache
from tests.unit.cache.conftest import (
    DATA,
    GOOD,
    Fallbacks,
    Upstream,
    read_all,
    start,
    wait_for,
    with_fallback,
)

pytestmark = pytest.mark.timeout(60)

STEP = 100000


class Consumer:
    """Reads a FillReader in a thread, keeping what arrived and how it ended."""

    def __init__(self, reader: FillReader) -> None:
        self.reader = reader
        self.received = bytearray()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            for chunk in self.reader:
                self.received += chunk
        except BaseException as err:  # kept for the test to assert on
            self.error = err
        finally:
            self.reader.close()

    def wait_received(self, count: int) -> None:
        wait_for(lambda: len(self.received) >= count or not self.thread.is_alive(),
                 message="%d bytes to arrive" % count)
        assert len(self.received) >= count, self.error

    def finish(self) -> bytes:
        self.thread.join(30)
        assert not self.thread.is_alive()
        return bytes(self.received)


class OtherWriter:
    """incomplete/img locked and written by hand, as another process's fill."""

    def __init__(self, cache: ImageCache) -> None:
        self.path = cache.layout.incomplete("img")
        fd = layout.open_locked(self.path)
        assert fd is not None
        self.fd = fd

    def write(self, data: bytes, offset: int = 0) -> None:
        os.pwrite(self.fd, data, offset)

    def write_in_steps(self, data: bytes) -> Iterator[int]:
        """Appends ``data`` STEP bytes at a time, yielding the size after each."""
        for offset in range(0, len(data), STEP):
            self.write(data[offset:offset + STEP], offset)
            yield min(offset + STEP, len(data))

    def close(self) -> None:
        """Let go of the lock (and the file)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


@pytest.fixture
def writer(cache: ImageCache) -> Iterator[OtherWriter]:
    other = OtherWriter(cache)
    yield other
    other.close()


def another_process(cache: ImageCache) -> ImageCache:
    other = ImageCache(cache.conf)
    other.fills = fill_mod.FillRegistry()
    return other


def follow(cache: ImageCache, checksum: str | None = GOOD) -> tuple[FillReader, Fallbacks]:
    fill, ours = cache.claim("img")
    assert ours
    assert fill.acquire() is Role.TAILER
    return with_fallback(lambda fb: fill.tail(len(DATA), checksum, fb))


def incomplete_files(cache: ImageCache) -> list[str]:
    return os.listdir(cache.layout.subdir("incomplete"))


def test_tail_reader_streams_the_file_as_the_other_process_writes_it(
        cache: ImageCache, writer: OtherWriter) -> None:
    reader, fallbacks = follow(cache)
    consumer = Consumer(reader)
    for size in writer.write_in_steps(DATA):
        # All but the last byte, which waits for the checksum.
        consumer.wait_received(min(size, len(DATA) - 1))
    assert consumer.finish() == DATA and consumer.error is None
    assert fallbacks.offsets == []
    # The file is its writer's to admit: left where it is.
    assert incomplete_files(cache) == ["img"] and not cache.is_cached("img")
    assert cache.fills.get("img") is None


def test_tail_readers_of_one_process_share_one_poller(
        cache: ImageCache, writer: OtherWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    polling = [0, 0]                # now, most at once
    lock = threading.Lock()
    real_poll = fill_mod.Fill.poll

    def counted_poll(fill: fill_mod.Fill) -> None:
        with lock:
            polling[0] += 1
            polling[1] = max(polling)
        try:
            real_poll(fill)
        finally:
            with lock:
                polling[0] -= 1

    monkeypatch.setattr(fill_mod.Fill, "poll", counted_poll)
    first, _fallbacks = follow(cache)
    readers = [first] + [first.fill.join() for _ in range(5)]
    consumers = [Consumer(r) for r in readers if r is not None]
    assert len(consumers) == 6
    for _size in writer.write_in_steps(DATA):
        pass
    assert [c.finish() for c in consumers] == [DATA] * 6
    assert polling == [0, 1]


MISHAPS: dict[str, Callable[[OtherWriter], None]] = {
    "lets go of its lock": OtherWriter.close,
    "shrinks the file": lambda writer: os.ftruncate(writer.fd, STEP // 2),
    # As after a write error, while its own clients still keep the lock.
    "removes the file": lambda writer: os.unlink(writer.path),
}


@pytest.mark.parametrize("mishap", sorted(MISHAPS))
def test_writer_stopping_short_sends_tail_readers_to_their_fallback(
        cache: ImageCache, writer: OtherWriter, mishap: str) -> None:
    writer.write(DATA[:STEP])
    reader, fallbacks = follow(cache)
    consumer = Consumer(reader)
    consumer.wait_received(STEP)
    MISHAPS[mishap](writer)
    assert consumer.finish() == DATA and consumer.error is None
    assert fallbacks.offsets == [STEP]      # the store read skips what was sent


def test_stalled_writer_sends_tail_readers_to_their_fallback(
        cache: ImageCache, writer: OtherWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fill_mod, "TAIL_STALL_TIMEOUT", 0.2)
    writer.write(DATA[:STEP])
    reader, fallbacks = follow(cache)
    assert read_all(reader) == DATA
    assert fallbacks.offsets == [STEP]
    assert incomplete_files(cache) == ["img"]


def test_wrong_bytes_cut_tail_readers_one_byte_short(cache: ImageCache,
                                                     writer: OtherWriter) -> None:
    bad = bytearray(DATA)
    bad[STEP] ^= 0xFF
    writer.write(bytes(bad))
    reader, fallbacks = follow(cache)
    consumer = Consumer(reader)
    received = consumer.finish()
    assert isinstance(consumer.error, CacheFillError)
    assert "checksum" in str(consumer.error)
    assert len(received) == len(DATA) - 1
    assert fallbacks.offsets == []
    # Moving it to invalid/ is its writer's business.
    assert incomplete_files(cache) == ["img"]
    assert os.listdir(cache.layout.subdir("invalid")) == []


def test_file_longer_than_the_image_is_refused(cache: ImageCache, writer: OtherWriter) -> None:
    writer.write(DATA + b"more")
    reader, _fallbacks = follow(cache)
    with pytest.raises(CacheFillError, match="bytes, the image"):
        read_all(reader)


def test_tailer_completes_while_the_writers_own_client_reads_nothing(
        cache: ImageCache) -> None:
    other = another_process(cache)
    gate = threading.Event()
    upstream = Upstream(chunk=4096, gate=gate)
    idle = start(other, upstream)          # the other process's only client
    tail, fallbacks = follow(cache)
    gate.set()
    assert read_all(tail) == DATA
    assert fallbacks.offsets == [] and idle.offset == 0
    wait_for(lambda: cache.is_cached("img"), message="the other process to admit it")
    assert upstream.pulled == len(upstream.chunks)
    assert read_all(idle) == DATA


def test_writer_releasing_its_claim_sends_tail_readers_to_their_fallback(
        cache: ImageCache) -> None:
    other = another_process(cache)
    claim, _ours = other.claim("img")
    assert claim.acquire() is Role.WRITER     # asking the store, nothing written yet
    reader, fallbacks = follow(cache)
    consumer = Consumer(reader)
    claim.release()                           # the store said no to it
    assert consumer.finish() == DATA and consumer.error is None
    assert fallbacks.offsets == [0]
    assert incomplete_files(cache) == []


def test_tail_readers_leaving_leave_the_file_alone(cache: ImageCache,
                                                  writer: OtherWriter) -> None:
    writer.write(DATA[:STEP])
    reader, _fallbacks = follow(cache)
    assert len(next(reader)) > 0
    fill = reader.fill
    reader.close()
    assert fill.state is State.FAILED and fill.fd == -1
    assert cache.fills.get("img") is None
    assert incomplete_files(cache) == ["img"]
    assert os.pread(writer.fd, STEP + 1, 0) == DATA[:STEP]
    # The next request follows the same writer again.
    again, fallbacks = follow(cache)
    writer.write(DATA[STEP:], STEP)
    assert read_all(again) == DATA and fallbacks.offsets == []
