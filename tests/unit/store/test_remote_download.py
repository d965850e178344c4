"""How a remote store's download (Swift, S3, RBD) fails: a body that ends
early or breaks is a bad gateway (502), never "try again later" (503)."""

from __future__ import annotations

import logging

import pytest

from glance_clone.common import exception, faults
from glance_clone.store.base import remote_download

pytestmark = pytest.mark.timeout(10)
LOG = logging.getLogger(__name__)


def reads(*pieces: bytes | Exception):
    """A ``read`` callable giving ``pieces`` in turn (raising the errors), then b""."""
    queue = list(pieces)

    def read(_amount: int) -> bytes:
        piece = queue.pop(0) if queue else b""
        if isinstance(piece, Exception):
            raise piece
        return piece
    return read


def drain(size: int, *pieces: bytes | Exception) -> list[bytes]:
    closed = []
    stream = remote_download(reads(*pieces), lambda: closed.append(1), size, "Swift",
                             "glance/img", LOG)
    try:
        return list(stream)
    finally:
        stream.close()   # as the WSGI server does, whatever happened
        assert closed == [1], "the store's connection was not let go once"


@pytest.mark.parametrize("pieces, text", [
    ((b"abc", ConnectionResetError("reset by peer")), "interrupted"),
    ((b"abc",), "ended early"),
], ids=["connection dropped", "body ended early"])
def test_a_body_that_ends_early_is_a_502_naming_the_store(pieces, text):
    with pytest.raises(exception.RemoteDataIncomplete) as err:
        drain(10, *pieces)
    assert "Swift" in str(err.value) and text in str(err.value)
    assert faults.to_http(err.value).code == 502


def test_a_body_longer_than_announced_is_a_502_that_says_so():
    with pytest.raises(exception.BadGateway, match="more than") as err:
        drain(2, b"abc")
    assert not isinstance(err.value, exception.RemoteDataIncomplete)


def test_our_own_errors_from_read_pass_unchanged():
    with pytest.raises(exception.GatewayTimeout):
        drain(10, exception.GatewayTimeout())


def test_a_whole_body_passes():
    assert drain(6, b"abc", b"def") == [b"abcdef"]


def test_short_reads_are_filled_so_a_break_shows_in_the_first_piece():
    # The first read returns what had arrived when the connection dropped.
    stream = remote_download(reads(b"ab", b"c", ConnectionResetError()), lambda: None,
                             10, "S3", "b/k", LOG, chunk_size=8)
    with pytest.raises(exception.RemoteDataIncomplete):
        next(stream)
    stream = remote_download(reads(b"ab", b"cd", b"ef"), lambda: None, 6, "S3", "b/k", LOG,
                             chunk_size=4)
    assert list(stream) == [b"abcd", b"ef"]
