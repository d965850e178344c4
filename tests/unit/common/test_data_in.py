"""The incoming-bytes pipeline: counting, hashing, limits and end checks."""

from __future__ import annotations

import hashlib

import pytest

from glance_clone.common import exception
from glance_clone.common.data_in import Incoming


class CapExceeded(Exception):
    pass


def image(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def chunks_of(data: bytes, size: int, fail_after: int | None = None):
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise CapExceeded()
        yield data[start:start + size]


def test_reading_as_a_file_splits_chunks_and_hashes() -> None:
    data = image(300_000)
    reader = Incoming(chunks_of(data, 100_000))
    first = reader.window(150_000)
    got = b"".join(iter(lambda: first.read(64 * 1024), b""))
    assert got == data[:150_000]
    assert not reader.at_end()
    rest = b"".join(iter(lambda: reader.read(-1), b""))
    assert got + rest == data
    assert reader.at_end() and reader.read(10) == b""
    assert reader.bytes_read == len(data)
    assert reader.checksum == hashlib.md5(data).hexdigest()


def test_iterating_after_a_partial_read_hands_out_the_rest() -> None:
    reader = Incoming([b"abcdef", b"gh"])
    assert reader.read(2) == b"ab"
    assert list(reader) == [b"cdef", b"gh"]


def test_the_sources_error_is_kept() -> None:
    reader = Incoming(chunks_of(b"x" * 300, 100, fail_after=200))
    assert reader.read(1000) == b"x" * 100
    reader.read(1000)
    with pytest.raises(CapExceeded):
        reader.read(1000)
    assert isinstance(reader.error, CapExceeded)


def test_exact_window_refuses_short_data() -> None:
    reader = Incoming([b"abc"])
    window = reader.window(5, exact=True)
    assert window.read(10) == b"abc"
    with pytest.raises(exception.ImageDataMismatch):
        window.read(10)
    assert isinstance(reader.error, exception.ImageDataMismatch)


def test_the_smallest_limit_passed_raises_its_error_mid_stream() -> None:
    seen = []

    def source():
        for _ in range(10):
            seen.append(1)
            yield b"x" * 100
    data = Incoming(source(), limits=[
        (1000, lambda: exception.ImageSizeLimitExceeded(limit=1000)),
        (250, lambda: exception.StorageQuotaFull(reason="250 bytes left"))])
    with pytest.raises(exception.StorageQuotaFull):
        list(data)
    assert len(seen) == 3
    assert isinstance(data.error, exception.StorageQuotaFull)


@pytest.mark.parametrize("declared, message", [
    ({"expected_size": 11}, "Supplied size (11) and size generated from uploaded image (10)"),
    ({"expected_checksum": hashlib.md5(b"y").hexdigest()},
     "checksum generated from uploaded image (%s)" % hashlib.md5(b"x" * 10).hexdigest()),
])
def test_declared_size_and_checksum_are_checked_as_the_stream_ends(
        declared: dict, message: str) -> None:
    data = Incoming([b"x" * 6, b"x" * 4], **declared)
    assert next(data) == b"x" * 6
    assert next(data) == b"x" * 4
    with pytest.raises(exception.ImageDataMismatch) as err:
        next(data)
    assert message in str(err.value)
    assert isinstance(data.error, exception.ImageDataMismatch)


def test_matching_declarations_pass() -> None:
    data = Incoming([b"x" * 6, b"x" * 4], expected_size=10,
                    expected_checksum=hashlib.md5(b"x" * 10).hexdigest())
    assert b"".join(data) == b"x" * 10


class Recorder:
    def __init__(self, refuse_at_end: bool = False) -> None:
        self.fed: list[bytes] = []
        self.finished = False
        self.refuse_at_end = refuse_at_end

    def feed(self, chunk: bytes) -> None:
        self.fed.append(chunk)

    def finish(self) -> None:
        self.finished = True
        if self.refuse_at_end:
            raise exception.Invalid("refused")


def test_the_inspector_sees_every_chunk_and_may_refuse_at_the_end() -> None:
    inspector = Recorder(refuse_at_end=True)
    data = Incoming([b"ab", b"", b"cd"], inspector=inspector)
    with pytest.raises(exception.Invalid):
        list(data)
    assert inspector.fed == [b"ab", b"cd"] and inspector.finished
    assert data.at_end()


@pytest.mark.parametrize("background", [True, False])
def test_md5_and_multihash_off_the_thread_or_not(background: bool) -> None:
    data = image(3 * 1024 * 1024 + 5)
    incoming = Incoming(chunks_of(data, 1024 * 1024), multihash="sha512",
                        background=background)
    assert b"".join(incoming) == data
    assert incoming.checksum == hashlib.md5(data).hexdigest()
    assert incoming.multihash == hashlib.sha512(data).hexdigest()


def test_a_recorded_multihash_must_match() -> None:
    data = image(5000)
    recorded = ("sha512", hashlib.sha512(data).hexdigest())
    assert b"".join(Incoming(chunks_of(data, 1000), multihash="sha512",
                             expected_multihash=recorded)) == data
    altered = data[:-1] + b"!"
    with pytest.raises(exception.ImageDataMismatch, match="recorded multihash"):
        list(Incoming(chunks_of(altered, 1000), multihash="sha512",
                      expected_multihash=recorded))
    # One recorded with another algorithm than ours cannot be compared.
    assert b"".join(Incoming(chunks_of(altered, 1000), multihash="sha256",
                             expected_multihash=recorded)) == altered


def test_wrap_keeps_an_incoming_as_it_is() -> None:
    data = Incoming([b"a"])
    assert Incoming.wrap(data) is data
    assert isinstance(Incoming.wrap([b"a"]), Incoming)


def test_read_block_joins_small_chunks_and_passes_whole_ones_on_uncopied() -> None:
    whole = [image(4096), image(4096)]
    reader = Incoming(whole + [b"ab", b"cd", b"e"])
    # A block the size of the incoming chunks is that chunk itself: an RBD
    # write of a 4 MiB request-body piece costs no copy.
    assert reader.read_block(4096) is whole[0]
    assert reader.read_block(4096) is whole[1]
    assert reader.read_block(4) == b"abcd"
    assert reader.read_block(4) == b"e"
    assert reader.read_block(4) == b""
