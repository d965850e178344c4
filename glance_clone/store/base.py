"""The store driver contract.

A driver keeps image data for one family of URI schemes (``file``,
``http``...). glance-api, the scrubber and the cache tools never touch a
backend directly: they go through ``glance_clone.store.backend.StoreSet``,
which picks a driver by the scheme of a location URL. Every driver moves
data as iterators of ``CHUNK_SIZE`` byte strings so no image is ever held in
memory whole, and raises only ``glance_clone.common.exception`` classes.

Every driver writes through ``glance_clone.common.data_in.Incoming``: it
counts, hashes, inspects and enforces limits, and raises from the data
itself, so a driver only has to clean up when its source raises. Downloads
that a backend may cut short go out through ``data_out.Outgoing``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.data_out import Outgoing
from glance_clone.common.redaction import redact_url

LOG = logging.getLogger(__name__)


# (location url, bytes written, md5 hex digest, location metadata)
AddResult = tuple[str, int, str, dict[str, Any]]


class ReadStream(Protocol):
    """What ``Driver.get`` returns: chunks, and ``close`` to let go of the backend."""

    def __iter__(self) -> Iterator[bytes]: ...

    def __next__(self) -> bytes: ...

    def close(self) -> None: ...


class ChunkIterator(Iterator[bytes]):
    """Yields chunks from a ``read(n)`` callable until it returns ``b""``.

    ``close()`` releases the underlying resource (file, HTTP connection) and
    is safe to call more than once, before, during or after iteration: the
    WSGI server calls it when the client goes away mid-download.
    ``read_errors`` maps exceptions raised by ``read`` to ours.
    """

    def __init__(self, read: Callable[[int], bytes], close: Callable[[], None],
                 chunk_size: int = CHUNK_SIZE,
                 read_errors: Callable[[Exception], Exception] | None = None) -> None:
        self._read = read
        self._close = close
        self._chunk_size = chunk_size
        self._read_errors = read_errors
        self.closed = False

    def __iter__(self) -> ChunkIterator:
        return self

    def __next__(self) -> bytes:
        if self.closed:
            raise StopIteration
        try:
            chunk = self._read(self._chunk_size)
        except Exception as err:
            self.close()
            if self._read_errors is None:
                raise
            raise self._read_errors(err) from err
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()

    def __del__(self) -> None:
        # A caller that drops the iterator without closing it must not leak
        # a file descriptor or a pooled connection.
        with contextlib.suppress(Exception):
            self.close()


class _Slice:
    """``length`` bytes of a stream, from ``offset``, as a ``read`` callable."""

    def __init__(self, chunks: ReadStream, offset: int, length: int) -> None:
        self._chunks = chunks
        self._skip = offset
        self._left = length
        self._pending = b""

    def read(self, size: int) -> bytes:
        while not self._pending and self._left > 0:
            chunk = next(self._chunks, b"")
            if not chunk:
                return b""
            if self._skip >= len(chunk):
                self._skip -= len(chunk)
                continue
            self._pending, self._skip = chunk[self._skip:], 0
        data = self._pending[:min(size, self._left)]
        self._pending = self._pending[len(data):]
        self._left -= len(data)
        return data


def remote_download(read: Callable[[int], bytes], close: Callable[[], None],
                    size: int | None, store: str, name: str,
                    log: logging.Logger, chunk_size: int = CHUNK_SIZE) -> Outgoing:
    """A remote object's body (``read`` until ``b""``, ``chunk_size`` at a
    time) as a checked download.

    The stream raises RemoteDataIncomplete, naming ``store`` ("Swift") and
    logging ``name`` (``container/object``) to ``log``, when it ends before
    ``size`` bytes (unless None) or ``read`` fails, and BadGateway when it
    goes on past ``size``. The store answered and then broke its answer:
    a bad gateway (502 while no byte is out yet; after that the client's
    connection is cut), not an unavailable service (503 says "try again
    later", which a store that dropped one connection does not mean).
    ``read`` may raise our own errors, which pass as they are.
    """
    def read_error(err: Exception) -> exception.GlanceError:
        if isinstance(err, exception.GlanceError):
            return err
        log.error("%s download of %s interrupted: %s", store, name, err)
        return exception.RemoteDataIncomplete(f"{store} store download was interrupted.")

    def short(reason: str) -> exception.GlanceError:
        log.error("%s download of %s: %s", store, name, reason)
        return exception.RemoteDataIncomplete(f"{store} store download ended early.")

    def long(reason: str) -> exception.GlanceError:
        log.error("%s download of %s: %s", store, name, reason)
        return exception.BadGateway(f"{store} store sent more than the object's size.")

    return Outgoing(ChunkIterator(_filling(read), close, chunk_size, read_error), size,
                    short, overflow=long)


def _filling(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """``read`` that returns the whole amount asked for unless the body
    ends. A socket hands over what has arrived; a connection dropped
    mid-body shows as a short read, and only the next read tells. Filling
    each piece finds that out within the piece, so a body that breaks
    within the first piece fails before the answer's status is sent."""

    def fill(amount: int) -> bytes:
        piece = read(amount)
        if len(piece) in (0, amount):
            return piece
        pieces = [piece]
        missing = amount - len(piece)
        while missing > 0 and (more := read(missing)):
            pieces.append(more)
            missing -= len(more)
        return b"".join(pieces)
    return fill


class Driver:
    """Base class of store drivers; subclasses set ``schemes`` and override.

    The constructor does the startup checks and raises ConfigError on bad
    configuration, so a misconfigured glance-api fails at start (exit 3)
    rather than on the first upload.
    """

    #: URI schemes this driver serves; the first one is used for new URLs.
    schemes: tuple[str, ...] = ()

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        """Register the driver's configuration options (none by default)."""

    def owns(self, url: str) -> bool:
        """Whether ``url`` (of one of ``schemes``) is data of this store,
        when several stores share a scheme. By default yes: the URL names
        its own server and container."""
        return True

    def add(self, image_id: str, chunks: Iterable[bytes], size: int) -> AddResult:
        """Store ``chunks`` as image ``image_id``; ``size`` 0 means unknown.

        ``chunks`` is usually an ``Incoming`` (the caller's limits and checks
        ride on it); a plain iterable is wrapped in one (``Incoming.wrap``).
        Returns (url, bytes written, md5 hex, location metadata). Raises
        Duplicate, StorageFull, StorageWriteDenied, StoreAddDisabled,
        Forbidden; whatever the ``chunks`` iterator raises is re-raised after
        the partial data has been removed.
        """
        raise exception.StoreAddDisabled()

    def get(self, url: str) -> tuple[ReadStream, int | None]:
        """Return (chunk iterator, size or None); raises NotFound,
        RemoteServiceUnavailable, BadStoreUri, StoreGetNotSupported."""
        raise exception.StoreGetNotSupported()

    def get_range(self, url: str, offset: int, length: int) -> ReadStream:
        """``length`` bytes from byte ``offset`` of the data at ``url``.

        Raises as ``get``. This default reads from the start and drops what
        comes before ``offset``; drivers whose backend can seek override it.
        """
        chunks, _size = self.get(url)
        return ChunkIterator(_Slice(chunks, offset, length).read, chunks.close,
                             CHUNK_SIZE)

    def get_size(self, url: str) -> int:
        """Return the stored size, 0 if unknown; raises NotFound, BadStoreUri."""
        raise exception.StoreGetNotSupported()

    def delete(self, url: str) -> None:
        """Remove the data at ``url``; raises NotFound, Forbidden, InUseByStore.

        By default a read-only store only logs: the contract says callers
        log and ignore delete-not-supported, so doing it here saves each
        caller a special case. Deleting the image then just forgets the
        location; the remote data is not ours to remove.
        """
        LOG.info("Store %s does not delete data; leaving %s in place",
                 type(self).__name__, redact_url(url))

    def remove_leftovers(self, image_id: str, keep: Iterable[str] = ()) -> None:
        """Remove what a writer of ``image_id`` that died left behind:
        unfinished data, and finished data at a location not in ``keep``
        (the locations its image record holds). Callers call it only once
        no writer of that image can still be running.

        This default removes nothing: the backend's writes are all or
        nothing, or its driver has no way to find them.
        """

    def set_acls(self, url: str, public: bool = False,
                 read_tenants: list[str] | None = None,
                 write_tenants: list[str] | None = None) -> None:
        """Apply image sharing to the backend object; a no-op unless the
        backend has its own access control (none of file, http)."""
