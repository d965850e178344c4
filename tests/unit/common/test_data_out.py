"""The outgoing-bytes check: wrong lengths and checksums never end cleanly."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from glance_clone.common.data_out import FileRegion, Outgoing


class Wrong(Exception):
    pass


def test_a_short_or_long_stream_raises() -> None:
    with pytest.raises(Wrong, match="sent 5 of its 10 bytes"):
        list(Outgoing(iter([b"abc", b"de"]), 10, Wrong))
    long = Outgoing(iter([b"abc", b"defgh"]), 4, Wrong)
    assert next(long) == b"abc"
    with pytest.raises(Wrong, match="sent more than its 4 bytes"):
        next(long)
    assert list(Outgoing(iter([b"abc", b"d"]), 4, Wrong)) == [b"abc", b"d"]


def test_a_bad_checksum_holds_back_the_last_chunk() -> None:
    out = Outgoing(iter([b"abc", b"def"]), 6, Wrong,
                   expected_checksum=hashlib.md5(b"abcdeX").hexdigest())
    assert next(out) == b"abc"
    with pytest.raises(Wrong, match="checksum"):
        next(out)
    assert not out.finished


def test_a_good_checksum_passes_everything() -> None:
    out = Outgoing(iter([b"abc", b"def"]), 6, Wrong,
                   expected_checksum=hashlib.md5(b"abcdef").hexdigest())
    assert list(out) == [b"abc", b"def"] and out.finished


def test_a_bad_multihash_holds_back_the_last_chunk() -> None:
    good = ("sha512", hashlib.sha512(b"abcdef").hexdigest())
    out = Outgoing(iter([b"abc", b"def"]), 6, Wrong, expected_multihash=good,
                   expected_checksum=hashlib.md5(b"abcdef").hexdigest())
    assert list(out) == [b"abc", b"def"] and out.finished
    out = Outgoing(iter([b"abc", b"deX"]), 6, Wrong, expected_multihash=good)
    assert next(out) == b"abc"
    with pytest.raises(Wrong, match="sha512 .*, expected " + good[1]):
        next(out)
    assert not out.finished


def test_digest_and_progress() -> None:
    counts: list[int] = []
    out = Outgoing(iter([b"ab", b"", b"cd"]), None, Wrong, digest=True,
                   on_chunk=counts.append)
    assert b"".join(out) == b"abcd"
    assert out.checksum == hashlib.md5(b"abcd").hexdigest()
    assert counts == [2, 4] and out.bytes_sent == 4
    out = Outgoing(iter([b"ab", b"cd"]), None, Wrong, multihash="sha256")
    assert b"".join(out) == b"abcd"
    assert out.multihash == hashlib.sha256(b"abcd").hexdigest()


def test_close_closes_what_it_wraps() -> None:
    closed = []

    class Chunks:
        def __iter__(self):
            return iter([b"ab"])

        def close(self):
            closed.append(True)
    Outgoing(Chunks(), 2, Wrong).close()
    assert closed == [True]


class RegionSource:
    """Chunks that pass a file region once allowed to."""

    def __init__(self, region_length: int) -> None:
        self.region = FileRegion(-1, 0, region_length, Wrong)
        self.asked = False

    def allow_regions(self) -> bool:
        self.asked = True
        return True

    def __iter__(self) -> Iterator[bytes | FileRegion]:
        yield b"abc"
        if self.asked:
            yield self.region


def test_regions_pass_counted_by_their_length() -> None:
    source = RegionSource(7)
    out = Outgoing(source, 10, Wrong)
    assert out.allow_regions() and source.asked
    assert list(out) == [b"abc", source.region] and out.bytes_sent == 10
    short = Outgoing(RegionSource(6), 10, Wrong)
    assert short.allow_regions()
    with pytest.raises(Wrong, match="sent 9 of its 10 bytes"):
        list(short)


def test_a_hashed_stream_passes_no_regions() -> None:
    source = RegionSource(3)
    out = Outgoing(source, 3, Wrong, expected_checksum=hashlib.md5(b"abc").hexdigest())
    assert not out.allow_regions() and not source.asked
    assert not Outgoing(RegionSource(3), 6, Wrong, digest=True).allow_regions()
    assert not Outgoing(iter([b"abc"]), 3, Wrong).allow_regions()
