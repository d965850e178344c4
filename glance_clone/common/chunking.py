"""Byte streams in bounded chunks: reading request bodies, enforcing limits,
checking sizes while streaming."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from glance_clone.common import exception

CHUNK_SIZE = 64 * 1024
# Request bodies are read in larger pieces: fewer Python-level iterations
# per gigabyte on the upload path, still bounded memory.
READ_SIZE = 1024 * 1024


def body_chunks(stream: BinaryIO, expected: int | None, size: int = READ_SIZE) -> Iterator[bytes]:
    """Chunks of a request body; raises ClientDisconnected when it ends short.

    ``expected`` is the Content-Length, or None for a chunked body.
    """
    remaining = expected
    while remaining is None or remaining > 0:
        want = size if remaining is None else min(size, remaining)
        try:
            chunk = stream.read(want)
        except (OSError, ValueError):
            raise exception.ClientDisconnected()
        if not chunk:
            if remaining:
                raise exception.ClientDisconnected()
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def limited_chunks(chunks: Iterator[bytes], limit: int,
                   error: Callable[[], Exception]) -> Iterator[bytes]:
    """Pass chunks on, raising ``error()`` as soon as more than ``limit`` bytes passed."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise error()
        yield chunk


class SizeCheckedIter:
    """A download body that refuses to end at the wrong length.

    If the store yields fewer or more bytes than announced, raising makes
    the WSGI server cut the connection, so the client sees a failed
    transfer instead of a silently short image. Before the first byte is
    out, the error is still a status: 502, the store (often a remote web
    server behind a location) sent something else than the image.
    """

    def __init__(self, chunks: Any, expected: int, image_id: str) -> None:
        self.chunks = chunks
        self.expected = expected
        self.image_id = image_id

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self.chunks:
            seen += len(chunk)
            if seen > self.expected:
                break
            yield chunk
        if seen < self.expected:
            raise exception.RemoteDataIncomplete(
                "Image %s: the store sent %d of its %d bytes"
                % (self.image_id, seen, self.expected))
        if seen > self.expected:
            raise exception.BadGateway(
                "Image %s: the store sent more than its %d bytes"
                % (self.image_id, self.expected))

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
