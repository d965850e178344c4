"""Image bytes going out: the one check every download path streams through.

``Outgoing`` passes chunks on (from a store to a client, from the cache to
a client, from one deployment to another) and raises instead of letting a
stream end at the wrong length or, when asked to verify, with the wrong
checksum. Raising makes the WSGI server cut the connection, so a client
sees a failed transfer, never a silently short or altered image.

Bytes that go out unchanged from a file (the file store, a cache hit) need
not pass through Python at all: the WSGI server asks the body
``allow_regions()`` and, when it is answered True, takes ``FileRegion``
items among the chunks and hands them to the kernel (sendfile(2)). Only a
stream that is not hashed on its way can pass regions; a region counts
as its length, and the server raises ``region.short(sent)`` when the file
ends before the region does, so the length check still holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Generator, Iterable
from typing import Any

from glance_clone.common import exception
from glance_clone.common.hashing import Digests, Multihash

ErrorFactory = Callable[[str], Exception]


@dataclasses.dataclass(frozen=True)
class FileRegion:
    """``length`` bytes of the open file ``fd`` from ``offset``, sent as they
    are on disk; ``short(sent)`` is what to raise when the file ends after
    ``sent`` of them. The file stays open until the body is closed."""

    fd: int
    offset: int
    length: int
    short: Callable[[int], Exception]

    def __len__(self) -> int:
        return self.length


def allow_regions(body: Any) -> bool:
    """Ask ``body`` (a response body) to pass ``FileRegion`` items from now
    on where it can; whether it may."""
    allow = getattr(body, "allow_regions", None)
    return bool(allow is not None and allow())


class Outgoing:
    """Chunks counted (and hashed, with ``digest``) on their way out.

    ``error(reason)`` builds what is raised when fewer than ``expected_size``
    bytes pass (None: any size), the md5 is not ``expected_checksum`` or
    the multihash not ``expected_multihash``;
    ``overflow(reason)`` (default: ``error``) when more pass. With a
    hash to verify, the last chunk is held back until the digests match,
    so a bad stream never looks complete. With ``digest``, the md5 (and
    the ``multihash`` algorithm's digest) of what passed is computed.
    ``on_chunk(total)`` is told the running count (progress reports).
    """

    def __init__(self, chunks: Iterable[bytes], expected_size: int | None,
                 error: ErrorFactory, *, overflow: ErrorFactory | None = None,
                 expected_checksum: str | None = None,
                 expected_multihash: Multihash | None = None,
                 digest: bool = False, multihash: str | None = None,
                 on_chunk: Callable[[int], None] | None = None) -> None:
        self.chunks = chunks
        self.expected_size = expected_size
        self.expected_checksum = expected_checksum or None
        self.expected_multihash = expected_multihash
        self._error = error
        self._overflow = overflow or error
        if expected_multihash is not None:
            multihash = expected_multihash[0]
        self.verifying = bool(self.expected_checksum or expected_multihash)
        self._digests = (Digests(multihash) if (digest or self.verifying or multihash)
                         else None)
        self._on_chunk = on_chunk
        self.bytes_sent = 0
        self.finished = False
        self._closed = False
        self._gen = self._generate()

    @property
    def closed(self) -> bool:
        """Whether what it wraps was let go (closed, or read to its end)."""
        return bool(getattr(self.chunks, "closed", self._closed))

    @property
    def checksum(self) -> str | None:
        """The md5 of what passed, when hashing."""
        return self._digests.md5 if self._digests is not None else None

    @property
    def multihash(self) -> str | None:
        """The multihash of what passed, when computing one."""
        return self._digests.multihash if self._digests is not None else None

    @property
    def hashing(self) -> bool:
        """Whether what passes is hashed (then it must pass as bytes)."""
        return self._digests is not None

    def allow_regions(self) -> bool:
        """Let the chunks pass file regions, when nothing hashes them."""
        return not self.hashing and allow_regions(self.chunks)

    def __iter__(self) -> Outgoing:
        return self

    def __next__(self) -> bytes:
        return next(self._gen)

    def _generate(self) -> Generator[bytes, None, None]:
        expected = self.expected_size
        held = b""
        hold = self.verifying
        for chunk in self.chunks:
            if not chunk:
                continue
            self.bytes_sent += len(chunk)
            if expected is not None and self.bytes_sent > expected:
                raise self._overflow("sent more than its %d bytes" % expected)
            if self._digests is not None:
                self._digests.update(chunk)
            if self._on_chunk is not None:
                self._on_chunk(self.bytes_sent)
            if hold:
                if held:
                    yield held
                held = chunk
            else:
                yield chunk
        if expected is not None and self.bytes_sent != expected:
            raise self._error("sent %d of its %d bytes" % (self.bytes_sent, expected))
        if self.verifying:
            assert self._digests is not None
            reason = self._digests.mismatch(self.expected_checksum,
                                            self.expected_multihash)
            if reason:
                raise self._error(reason)
        self.finished = True
        if held:
            yield held

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(ValueError):
            self._gen.close()
        close: Any = getattr(self.chunks, "close", None)
        if close is not None:
            close()


def download_body(chunks: Any, size: int, image_id: str) -> Outgoing:
    """A download's body that refuses to end at the wrong length.

    Raising makes the WSGI server cut the connection, so the client sees a
    failed transfer instead of a silently short image. Before the first
    byte is out, the error is still a status: 502, the store (often a
    remote web server behind a location) sent something else than the image.
    """
    def short(reason: str) -> exception.GlanceError:
        return exception.RemoteDataIncomplete("Image %s: the store %s" % (image_id, reason))

    def long(reason: str) -> exception.GlanceError:
        return exception.BadGateway("Image %s: the store %s" % (image_id, reason))
    return Outgoing(chunks, size, short, overflow=long)
