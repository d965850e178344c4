"""Image bytes coming in: the one pipeline every store, task and tool writes through.

``Incoming`` wraps the chunks of an upload (a request body, a copy-from
source, a replicated image) and, while they stream:

- counts them and stops at the first limit passed (size cap, storage
  quota), raising that limit's error mid-stream;
- hashes them (md5 and the multihash; see ``hashing.Digests``);
- shows them to an inspector (disk-format checks) that may refuse them;
- at the end, checks the expected size and checksum and asks the
  inspector for its verdict, raising instead of ending the iteration.

A store reads it either as an iterator of chunks (file store) or as a file
(``read``, ``window``: the HTTP client libraries of Swift and S3). A store
only keeps what it wrote once its source ended cleanly, and every refusal is
raised from the data itself, so the store's own clean-up on a failing source
runs and nothing is kept: no second pass over stored data.

HTTP client libraries may wrap or swallow an exception raised inside
``read``; the first one raised is kept in ``error`` and ``reraise`` gives it
precedence over what the library made of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NoReturn, Protocol

from glance_clone.common import exception
from glance_clone.common.hashing import Digests, Multihash


class Inspector(Protocol):
    """What ``Incoming`` needs of a disk-format inspector."""

    def feed(self, chunk: bytes) -> None:
        """See the next chunk; raise to refuse the stream now."""

    def finish(self) -> None:
        """The stream ended; raise to refuse it."""


Limit = tuple[int, Callable[[], Exception]]


class Incoming:
    """Chunks on their way into a store, counted, hashed, inspected and checked.

    ``limits``: (bytes, error factory) pairs; passing one raises its error.
    ``expected_size`` / ``expected_checksum`` / ``expected_multihash``:
    what the caller declared or the image records; a difference raises
    ImageDataMismatch at the end of the stream. ``multihash`` names the
    algorithm of the multihash to compute beside the md5.
    """

    def __init__(self, chunks: Iterable[bytes], *, limits: Iterable[Limit] = (),
                 expected_size: int | None = None, expected_checksum: str | None = None,
                 expected_multihash: Multihash | None = None, multihash: str | None = None,
                 inspector: Inspector | None = None, background: bool | None = None) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._close = getattr(chunks, "close", None)
        self._limits = sorted(limits, key=lambda limit: limit[0])
        self._next_limit = self._limits[0][0] if self._limits else None
        self.expected_size = expected_size
        self.expected_checksum = expected_checksum or None
        self.expected_multihash = expected_multihash
        self.digests = Digests(multihash, background)
        self.inspector = inspector
        self.bytes_read = 0
        self.error: BaseException | None = None
        self.ended = False
        self._pending = b""
        self._offset = 0

    @classmethod
    def wrap(cls, chunks: Iterable[bytes]) -> Incoming:
        """``chunks`` itself if it is an Incoming, else a plain one around it."""
        return chunks if isinstance(chunks, Incoming) else cls(chunks)

    # -- results -------------------------------------------------------------------
    @property
    def checksum(self) -> str:
        """The md5 hex digest of the bytes read so far."""
        return self.digests.md5

    @property
    def multihash(self) -> str | None:
        return self.digests.multihash

    # -- as an iterator --------------------------------------------------------------
    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._offset < len(self._pending):
            # A file-style reader left part of a chunk: hand out the rest.
            rest = self._pending[self._offset:]
            self._pending, self._offset = b"", 0
            return rest
        return self._take()

    def _take(self) -> bytes:
        """The next chunk from the source, accounted; StopIteration at the end."""
        if self.ended:
            raise StopIteration
        try:
            chunk = b""
            while not chunk:
                chunk = next(self._chunks)
            self._account(chunk)
            return chunk
        except StopIteration:
            self.ended = True
            self._check_end()
            raise
        except BaseException as err:
            self._failed(err)
            raise

    def _failed(self, err: BaseException) -> None:
        self.ended = True
        if self.error is None:
            self.error = err

    def _account(self, chunk: bytes) -> None:
        self.bytes_read += len(chunk)
        if self._next_limit is not None and self.bytes_read > self._next_limit:
            for limit, error in self._limits:
                if self.bytes_read > limit:
                    raise error()
        self.digests.update(chunk)
        if self.inspector is not None:
            self.inspector.feed(chunk)

    def _check_end(self) -> None:
        try:
            self._verify()
        except BaseException as err:
            self._failed(err)
            raise

    def _verify(self) -> None:
        """Every byte is in: raise if it is not what was declared or inspected."""
        size = self.bytes_read
        if self.expected_size is not None and self.expected_size != size:
            raise exception.ImageDataMismatch(
                "Supplied size (%d) and size generated from uploaded image (%d) "
                "did not match. Setting image status to 'killed'."
                % (self.expected_size, size))
        if self.expected_checksum and self.expected_checksum != self.checksum:
            raise exception.ImageDataMismatch(
                "Supplied checksum (%s) and checksum generated from uploaded "
                "image (%s) did not match. Setting image status to 'killed'."
                % (self.expected_checksum, self.checksum))
        if self.expected_multihash is not None:
            reason = self.digests.mismatch(None, self.expected_multihash)
            if reason:
                raise exception.ImageDataMismatch(
                    "Image data does not match the image's recorded multihash (%s)"
                    % reason)
        if self.inspector is not None:
            self.inspector.finish()

    # -- as a file ---------------------------------------------------------------------
    def _fill(self) -> bool:
        """Have unread bytes at hand; False once the chunks are exhausted."""
        while self._offset >= len(self._pending):
            try:
                chunk = self._take()
            except StopIteration:
                return False
            self._pending, self._offset = chunk, 0
        return True

    def at_end(self) -> bool:
        """True when no byte is left; may raise what the stream raises."""
        return not self._fill()

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (the rest of the current chunk when negative)."""
        if size == 0 or not self._fill():
            return b""
        start = self._offset
        available = len(self._pending) - start
        count = available if size is None or size < 0 else min(size, available)
        if start == 0 and count == len(self._pending):
            data = self._pending
        else:
            data = self._pending[start:start + count]
        self._offset = start + count
        return data

    def read_block(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end: one S3 part, one RBD object.

        A block that is exactly one incoming chunk is that chunk, not a
        copy (request bodies come in ``chunking.BODY_PIECE`` pieces, RBD's
        write size); smaller chunks are joined, which copies them once.
        """
        pieces = []
        wanted = size
        while wanted > 0:
            data = self.read(wanted)
            if not data:
                break
            pieces.append(data)
            wanted -= len(data)
        return b"".join(pieces)

    def window(self, limit: int, exact: bool = False) -> Window:
        """A file-like view that ends after ``limit`` bytes."""
        return Window(self, limit, exact)

    def close(self) -> None:
        if self._close is not None:
            close, self._close = self._close, None
            close()

    def reraise(self, err: BaseException,
                translate: Callable[[Exception], exception.GlanceError]) -> NoReturn:
        """Raise what a store write that failed with ``err`` should raise.

        What the data raised comes first, even when an HTTP client wrapped
        it: the caller's error (size cap, client gone, refused content) is
        the real one. A backend error is turned into ours by ``translate``;
        ours and BaseExceptions go on as they are.
        """
        if self.error is err:
            raise err
        if self.error is not None:
            raise self.error from None
        if isinstance(err, Exception) and not isinstance(err, exception.GlanceError):
            raise translate(err) from err
        raise err


class Window:
    """At most ``limit`` bytes of an Incoming: one segment or one object.

    With ``exact``, running out of data early raises ImageDataMismatch
    (the body was announced with that Content-Length).
    """

    def __init__(self, source: Incoming, limit: int, exact: bool = False) -> None:
        self._source = source
        self.remaining = limit
        self._limit = limit
        self._exact = exact

    def read(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._source.read(size)
        if not data and self._exact:
            err = exception.ImageDataMismatch(
                "Image data ended after %d of the %d bytes declared"
                % (self._limit - self.remaining, self._limit))
            if self._source.error is None:
                self._source.error = err
            raise err
        self.remaining -= len(data)
        return data

