"""Streaming to and from remote stores (Swift, S3, RBD), one chunk at a time.

Uploads: ``SourceReader`` reads the incoming chunk iterator as the file an
HTTP client library wants, hashing and counting on the way. Downloads:
``checked_download`` yields a response body as chunks and raises when it ends
short or is cut off.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import NoReturn

from glance_clone.common import exception
from glance_clone.store.base import CHUNK_SIZE, ChunkIterator


class SourceReader:
    """An upload's chunk iterator read as a file, hashed and counted on the way.

    HTTP client libraries pull request bodies through ``read``. They may
    wrap or swallow an exception raised by the chunk iterator (the caller's
    size cap, a client gone), so it is kept in ``error`` and the driver
    re-raises that one (``reraise``). Holds at most one incoming chunk.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""
        self._offset = 0
        self._ended = False
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.bytes_read = 0
        self.error: BaseException | None = None

    def _fill(self) -> bool:
        """Have unread bytes at hand; False once the chunks are exhausted."""
        while self._offset >= len(self._pending):
            if self._ended:
                return False
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._ended = True
                return False
            except BaseException as err:
                self.error = err
                self._ended = True
                raise
            self._pending, self._offset = chunk, 0
        return True

    def at_end(self) -> bool:
        """True when no byte is left; may raise what the chunk iterator raises."""
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
        self.md5.update(data)
        self.bytes_read += count
        return data

    def read_block(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end: one S3 part, one RBD object.

        Incoming chunks that fit whole are joined without being sliced, so
        a block costs one copy of its bytes.
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

    def window(self, limit: int, exact: bool = False) -> SourceWindow:
        """A file-like view that ends after ``limit`` bytes."""
        return SourceWindow(self, limit, exact)

    def reraise(self, err: BaseException,
                translate: Callable[[Exception], exception.GlanceError]) -> NoReturn:
        """Raise what an upload that failed with ``err`` should raise.

        What the chunks raised comes first, even when the HTTP client wrapped
        it: the caller's error (size cap, client gone) is the real one. A
        backend error is turned into ours by ``translate``; ours and
        BaseExceptions go on as they are.
        """
        if self.error is err:
            raise err
        if self.error is not None:
            raise self.error from None
        if isinstance(err, Exception) and not isinstance(err, exception.GlanceError):
            raise translate(err) from err
        raise err


class SourceWindow:
    """At most ``limit`` bytes of a SourceReader: one segment or one object.

    With ``exact``, running out of data early raises ImageDataMismatch
    (the body was announced with that Content-Length).
    """

    def __init__(self, reader: SourceReader, limit: int, exact: bool = False) -> None:
        self._reader = reader
        self.remaining = limit
        self._limit = limit
        self._exact = exact

    def read(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._reader.read(size)
        if not data and self._exact:
            err = exception.ImageDataMismatch(
                "Image data ended after %d of the %d bytes declared"
                % (self._limit - self.remaining, self._limit))
            self._reader.error = err
            raise err
        self.remaining -= len(data)
        return data


def checked_download(read: Callable[[int], bytes], close: Callable[[], None],
                     size: int | None, store: str, name: str,
                     log: logging.Logger, chunk_size: int = CHUNK_SIZE) -> ChunkIterator:
    """``chunk_size`` chunks from ``read`` until it returns ``b""``.

    The iterator raises RemoteServiceUnavailable, naming ``store`` ("Swift")
    and logging ``name`` (``container/object``) to ``log``, when the data
    ends before ``size`` bytes (unless None) or ``read`` fails.
    """
    seen = 0

    def read_checked(amount: int) -> bytes:
        nonlocal seen
        data = read(amount)
        if data:
            seen += len(data)
        elif size is not None and seen != size:
            log.error("%s download of %s ended after %d of %d bytes",
                      store, name, seen, size)
            raise exception.RemoteServiceUnavailable(f"{store} store download ended early.")
        return data

    def read_error(err: Exception) -> exception.GlanceError:
        if isinstance(err, exception.GlanceError):
            return err
        log.error("%s download interrupted: %s", store, err)
        return exception.RemoteServiceUnavailable(f"{store} store download was interrupted.")

    return ChunkIterator(read_checked, close, chunk_size, read_error)
