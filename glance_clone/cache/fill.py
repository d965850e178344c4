"""Writing an image into the cache while it streams to its readers.

One ``Fill`` per image being cached in this process, found through the
process-wide ``FillRegistry`` of its cache directory, so that any number of
concurrent requests for the same uncached image cost one store read:

- The first request *claims* the image (state PENDING) and asks the store.
  Requests arriving meanwhile wait for it. If the first one gets no data
  (403, 404 ...) it *releases* the claim and a waiting request tries itself.
- With data flowing (STREAMING) every request is a ``FillReader`` of the
  same file. Readers read ``incomplete/<id>`` at their own pace; whichever
  reader has consumed everything written so far pulls the next chunk from
  the store and appends it (one puller at a time). A slow or departed
  client therefore never holds the others back.
- The last byte of the image is only handed out once the whole file has
  been verified: size, and MD5 against the image's checksum. On a mismatch
  the file goes to ``invalid/`` and every reader's stream is cut one byte
  short, so no client mistakes bad data for a complete download.
- Verified files are recorded and renamed to ``<dir>/<id>`` (DONE).
- When every reader has gone before the end, the store stream is closed and
  the partial file goes to ``invalid/``.
- A write error (disk full, I/O error) discards the file (DISCARDED) but no
  download: the reader holding the chunk that failed keeps pulling from the
  store directly; readers that were behind finish from what was written,
  then re-open the image through their ``fallback`` (a second store read,
  only in this failure case).

Across processes (several api workers, the prefetcher) the flock on
``incomplete/<id>`` lets only one of them write the cache file. A worker
that finds the lock taken still gives its own concurrent requests one
shared store read, through a private unlinked file that is never admitted.
So with N workers a burst of misses for one image costs at most N store
reads (one per worker that received some of the requests), and only the
first worker's copy enters the cache.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from glance_clone.cache import layout
from glance_clone.common import exception

if TYPE_CHECKING:
    from glance_clone.cache.image_cache import ImageCache

LOG = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024

Fallback = Callable[[], Iterator[bytes]]


class State(enum.Enum):
    PENDING = "pending"        # claimed; the claimant is asking the store
    STREAMING = "streaming"    # data flowing into incomplete/<id>
    DONE = "done"              # verified and complete (admitted unless doomed)
    FAILED = "failed"          # bad data or store error: readers are cut off
    DISCARDED = "discarded"    # write error: readers finish without the file
    RELEASED = "released"      # the claimant got no data; nothing was written


class CacheFillError(exception.StoreError):
    message = "The image data could not be verified."


class Fill:
    """One image being written into the cache by this process."""

    def __init__(self, cache: ImageCache, image_id: str) -> None:
        self.cache = cache
        self.image_id = image_id
        self.cond = threading.Condition()
        self.state = State.PENDING
        self.fd = -1
        self.upstream: Iterator[bytes] | None = None
        self._upstream_close: Callable[[], None] | None = None
        self.expected_size = 0
        self.expected_checksum: str | None = None
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.written = 0
        self.readers = 0
        self.pulling = False
        self.doomed = False
        self.private = False
        self.failure = ""

    # -- claimant -----------------------------------------------------------------
    def start(self, chunks: Any, size: int, checksum: str | None,
              fallback: Fallback | None = None,
              share_privately: bool = True) -> FillReader | None:
        """Begin writing ``chunks``; returns the claimant's reader.

        When another process is filling the same image, the data still
        goes through a private unlinked file shared by this process's
        readers, and is never admitted (``share_privately``; otherwise
        None). None, and the claim released, when the image cannot be
        cached now: it is already complete, or the disk lacks room. The
        caller then streams ``chunks`` uncached.
        """
        reason = self._open(size, share_privately)
        if reason:
            LOG.info("Not caching image %s: %s", self.image_id, reason)
            self.release()
            return None
        with self.cond:
            self.upstream = iter(chunks)
            self._upstream_close = getattr(chunks, "close", None)
            self.expected_size = size
            self.expected_checksum = checksum or None
            self.state = State.STREAMING
            self.readers += 1
            self.cond.notify_all()
        return FillReader(self, fallback)

    def _open(self, size: int, share_privately: bool) -> str:
        """Lock and truncate incomplete/<id>; a reason not to cache, or ''."""
        paths = self.cache.layout
        if os.path.exists(paths.complete(self.image_id)):
            return "it is already cached"
        try:
            stats = os.statvfs(paths.subdir("incomplete"))
            free = stats.f_bavail * stats.f_frsize
            if free < size:
                return "only %d bytes free in the cache, %d needed" % (free, size)
            fd = layout.open_locked(paths.incomplete(self.image_id))
            if fd is None:
                if not share_privately:
                    return "another process is caching it"
                # Another process writes incomplete/<id>; our readers share
                # a nameless file instead, which nothing else can see.
                fd, name = tempfile.mkstemp(dir=paths.subdir("incomplete"), prefix=".shared-")
                os.unlink(name)
                self.private = True
            elif os.path.exists(paths.complete(self.image_id)):
                os.unlink(paths.incomplete(self.image_id))
                os.close(fd)
                return "it is already cached"
            os.ftruncate(fd, 0)
        except OSError as err:
            LOG.warning("Cannot cache image %s: %s", self.image_id, err)
            return "cannot write in the cache: %s" % err.strerror
        self.fd = fd
        return ""

    def release(self) -> None:
        """Give up a claim that produced no data; waiting requests retry."""
        with self.cond:
            if self.state is State.PENDING:
                self.state = State.RELEASED
            self.cond.notify_all()
        self.cache.fills.remove(self)

    # -- any request --------------------------------------------------------------
    def join(self, fallback: Fallback | None = None) -> FillReader | None:
        """A reader of this fill, waiting while it is only claimed.

        None when the fill is over (complete, failed or released); the
        caller then looks at the cache again.
        """
        with self.cond:
            while self.state is State.PENDING:
                self.cond.wait()
            if self.state is not State.STREAMING:
                return None
            self.readers += 1
        return FillReader(self, fallback)

    def doom(self) -> None:
        """The image was deleted: finish serving, but never admit the file."""
        with self.cond:
            self.doomed = True

    # -- used by readers, under ``cond`` -------------------------------------------
    def deliverable(self) -> int:
        """Bytes readers may hand out: all but the last until verified."""
        if self.state is State.DONE or self.state is State.DISCARDED:
            return self.written
        return min(self.written, self.expected_size - 1)

    # -- the puller, without ``cond`` held ---------------------------------------
    def pull(self) -> bytes | None:
        """Append the next upstream chunk to the file.

        Returns the chunk when it could not be written (the fill is then
        DISCARDED and the caller owns ``upstream``), else None. Raises what
        the upstream raised, after failing the fill.
        """
        assert self.upstream is not None
        try:
            chunk = next(self.upstream)
        except StopIteration:
            self._finish()
            return None
        except BaseException as err:
            self._fail("the store stream failed: %s" % err, invalid=True)
            raise
        if self.written + len(chunk) > self.expected_size:
            self._fail("the store returned more than %d bytes" % self.expected_size,
                       invalid=True)
            raise CacheFillError("Image %s: the store returned more data than "
                                 "expected" % self.image_id)
        try:
            _pwrite_all(self.fd, chunk, self.written)
        except OSError as err:
            self._discard(err)
            return chunk
        self._md5.update(chunk)
        with self.cond:
            self.written += len(chunk)
            self.pulling = False
            self.cond.notify_all()
        return None

    def take_upstream(self) -> Iterator[bytes]:
        """The rest of the store stream, for the reader whose write failed."""
        assert self.upstream is not None
        return self.upstream

    def close_upstream(self) -> None:
        if self._upstream_close is not None:
            close, self._upstream_close = self._upstream_close, None
            with contextlib.suppress(Exception):
                close()

    def _finish(self) -> None:
        digest = self._md5.hexdigest()
        if self.written != self.expected_size:
            self._fail("the store returned %d bytes, expected %d"
                       % (self.written, self.expected_size), invalid=True)
            return
        if self.expected_checksum and digest != self.expected_checksum:
            self._fail("checksum %s does not match the image's %s"
                       % (digest, self.expected_checksum), invalid=True)
            return
        self.close_upstream()
        admitted = False
        if self.private:
            LOG.debug("Image %s served to this process's readers; another process "
                      "caches it", self.image_id)
        elif self.doomed:
            LOG.info("Image %s was deleted while being cached; not keeping it",
                     self.image_id)
            self.cache.drop_incomplete(self.image_id, self.fd)
        else:
            admitted = self.cache.admit(self.image_id, self.fd, self.written, digest)
        with self.cond:
            self.state = State.DONE
            self.pulling = False
            self.cond.notify_all()
        self.cache.fills.remove(self)
        if admitted:
            LOG.info("Cached image %s (%d bytes)", self.image_id, self.written)
        self._close_fd_if_idle()

    def _fail(self, reason: str, invalid: bool) -> None:
        """End the fill with bad data: readers are cut off."""
        with self.cond:
            if not self._mark_failed(reason):
                return
        self._cleanup_failed(reason, invalid)

    def _mark_failed(self, reason: str) -> bool:
        """Under ``cond``: STREAMING -> FAILED; False if already over."""
        if self.state is not State.STREAMING:
            return False
        self.state = State.FAILED
        self.failure = reason
        self.pulling = False
        self.cond.notify_all()
        return True

    def _cleanup_failed(self, reason: str, invalid: bool) -> None:
        LOG.warning("Not caching image %s: %s", self.image_id, reason)
        self.close_upstream()
        if invalid:
            self.cache.reject_incomplete(self.image_id, self.fd, reason)
        else:
            self.cache.drop_incomplete(self.image_id, self.fd)
        self.cache.fills.remove(self)
        self._close_fd_if_idle()

    def _discard(self, err: OSError) -> None:
        with self.cond:
            self.state = State.DISCARDED
            self.pulling = False
            self.cond.notify_all()
        LOG.warning("Cannot write image %s into the cache (%s); serving it uncached",
                    self.image_id, err)
        self.cache.drop_incomplete(self.image_id, self.fd)
        self.cache.fills.remove(self)

    def reader_left(self) -> None:
        reason = "every client went away before the end"
        with self.cond:
            self.readers -= 1
            # Decided under the same lock as the count, so no request can
            # join a fill that is about to be abandoned.
            abandoned = self.readers == 0 and self._mark_failed(reason)
        if abandoned:
            self._cleanup_failed(reason, invalid=True)
        else:
            self._close_fd_if_idle()

    def _close_fd_if_idle(self) -> None:
        with self.cond:
            if self.readers or self.state in (State.PENDING, State.STREAMING) \
                    or self.fd < 0:
                return
            fd, self.fd = self.fd, -1
        os.close(fd)
        if self.state is State.DISCARDED:
            self.close_upstream()


class FillReader:
    """One client's stream of a ``Fill``; a WSGI app_iter (has ``close``)."""

    def __init__(self, fill: Fill, fallback: Fallback | None) -> None:
        self.fill = fill
        self.fallback = fallback
        self.offset = 0
        self._own: Any = None       # a stream this reader reads alone
        self._closed = False
        self._gen = self._generate()

    @property
    def size(self) -> int:
        return self.fill.expected_size

    def __iter__(self) -> FillReader:
        return self

    def __next__(self) -> bytes:
        return next(self._gen)

    def _next_step(self) -> tuple[str, int]:
        fill = self.fill
        with fill.cond:
            while True:
                limit = fill.deliverable()
                if self.offset < limit:
                    return "read", limit
                state = fill.state
                if state is State.DONE:
                    return "end", 0
                if state is State.STREAMING and not fill.pulling:
                    fill.pulling = True
                    return "pull", 0
                if state is State.DISCARDED:
                    return "fallback", 0
                if state is State.FAILED:
                    raise CacheFillError("Image %s: %s" % (fill.image_id, fill.failure))
                fill.cond.wait()

    def _generate(self) -> Generator[bytes, None, None]:
        fill = self.fill
        while True:
            step, limit = self._next_step()
            if step == "read":
                data = os.pread(fill.fd, min(CHUNK_SIZE, limit - self.offset), self.offset)
                if not data:
                    raise CacheFillError("Image %s: cache file ended early" % fill.image_id)
                self.offset += len(data)
                yield data
            elif step == "pull":
                try:
                    unwritten = fill.pull()
                except BaseException:
                    with fill.cond:
                        fill.pulling = False
                        fill.cond.notify_all()
                    raise
                if unwritten is not None:
                    # Our write failed: we hold the stream position, go on alone.
                    self._own = fill.take_upstream()
                    yield unwritten
                    yield from self._own
                    return
            elif step == "fallback":
                yield from self._fallback()
                return
            else:
                return

    def _fallback(self) -> Iterator[bytes]:
        if self.fallback is None:
            raise CacheFillError("Image %s: the cache write failed" % self.fill.image_id)
        LOG.info("Re-reading image %s from the store after a cache write error "
                 "(%d bytes already sent)", self.fill.image_id, self.offset)
        self._own = self.fallback()
        skip = self.offset
        for chunk in self._own:
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk, skip = chunk[skip:], 0
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError):
            self._gen.close()
        own, self._own = self._own, None
        if own is not None and own is self.fill.upstream:
            self.fill.close_upstream()
        elif own is not None:
            close = getattr(own, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self.fill.reader_left()

    def __del__(self) -> None:
        # A reader dropped without close() must not pin the fill open.
        with contextlib.suppress(Exception):
            self.close()


class FillRegistry:
    """The fills of one cache directory in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fills: dict[str, Fill] = {}

    def claim(self, cache: ImageCache, image_id: str) -> tuple[Fill, bool]:
        """The running fill of ``image_id``, or a new claim (second item True)."""
        with self._lock:
            fill = self._fills.get(image_id)
            if fill is not None:
                return fill, False
            fill = Fill(cache, image_id)
            self._fills[image_id] = fill
            return fill, True

    def get(self, image_id: str) -> Fill | None:
        with self._lock:
            return self._fills.get(image_id)

    def remove(self, fill: Fill) -> None:
        with self._lock:
            if self._fills.get(fill.image_id) is fill:
                del self._fills[fill.image_id]


_REGISTRIES: dict[str, FillRegistry] = {}
_REGISTRIES_LOCK = threading.Lock()


def registry_for(base: str) -> FillRegistry:
    """The process-wide registry of a cache directory.

    Process-wide on purpose: the cache and cachemanage filters, and the app
    rebuilt by a SIGHUP reload, must all see the same fills.
    """
    key = os.path.realpath(base)
    with _REGISTRIES_LOCK:
        registry = _REGISTRIES.get(key)
        if registry is None:
            registry = _REGISTRIES[key] = FillRegistry()
        return registry


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]
        offset += written

