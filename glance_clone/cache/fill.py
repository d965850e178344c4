"""Writing an image into the cache while it streams to its readers.

Any number of concurrent requests for the same uncached image cost one
store read, across every process sharing the cache directory (api
workers, glance-cache-prefetcher). In each process, one ``Fill`` per image,
found through the process-wide ``FillRegistry`` of the directory:

- The first request in a process *claims* the image (state PENDING) and,
  before anything asks the store, *acquires* ``incomplete/<id>``:

  - It takes the file's flock: this process is the image's WRITER. It asks
    the store, and a pump thread appends the store stream to the file at
    store speed, whatever the pace of its readers. If the store gives no
    data (403, 404 ...) the claim is *released* and a waiting request
    tries itself.
  - Another process holds the lock: this process is a TAILER. It never asks
    the store; its readers stream the other process's file as it grows.

  Requests arriving meanwhile in the same process wait for the claim, then
  read the same fill (``join``).
- With data flowing (STREAMING) every request is a ``FillReader`` of the
  file, reading at its own pace and waiting for the file to grow. A slow
  or departed client never holds anyone back, here or in other processes.
- A file is admitted only once it has been verified whole: size, MD5
  against the image's checksum and, for an image that has one, its
  multihash (both hashed side by side). The writer's readers get every
  byte as soon as it is written, at store speed: they are the store's
  bytes, as an uncached download's are, and hashing them on the way would
  slow every miss to the hashing rate. Once the store stream has ended
  the writer hashes the file (from the page cache) and admits it; a
  mismatch moves it to ``invalid/`` and cuts the streams of readers that
  have not got every byte yet. A tailer hashes what it sees appear, in
  order (one reader at a time polls the file's size), and hands out the
  last byte only once all of it matched: it cannot know how its writer
  will judge the file.
- The writer records verified files and renames them to ``<dir>/<id>``
  (DONE). A tailer never admits, moves or deletes the file it follows.
- When every reader of the writer has gone before the store stream ended,
  the pump stops, the store stream is closed and the partial file goes to
  ``invalid/``. Once the stream has ended the file is verified and admitted
  whether or not anyone is still reading it.
- The file becoming unusable does not fail a download (DISCARDED): every
  reader goes on through its ``fallback``, its own store read skipping
  what it has already sent. For a writer: a write error (disk full, I/O
  error), after which the file is removed. For a tailer: the other
  process removes the file or lets go of its lock with the file short,
  the file shrinks, or it stops growing for ``TAIL_STALL_TIMEOUT`` seconds.

A locked ``incomplete/<id>`` only ever holds bytes written by its current
lock holder, appended in order: a writer that finds a non-empty file left
by a dead process replaces it with a new one instead of rewriting it, as a
tailer may still be reading the old one.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from glance_clone.cache import layout
from glance_clone.common import exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.hashing import Digests, Multihash

if TYPE_CHECKING:
    from glance_clone.cache.image_cache import ImageCache

LOG = logging.getLogger(__name__)

# A tailer looks at the size of the file it follows this often (a green
# sleep under the api's eventlet) ...
TAIL_POLL_INTERVAL = 0.015
# ... gives up on a file that stops growing although its writer holds the
# lock, after this many seconds ...
TAIL_STALL_TIMEOUT = 60.0
# ... and publishes new bytes at most this many at a time, so its readers
# need not wait for it to hash everything a writer far ahead has written.
TAIL_VERIFY_STEP = CHUNK_SIZE
# Tries at taking incomplete/<id> while other processes take and let go of it.
ACQUIRE_ATTEMPTS = 5

Fallback = Callable[[], Iterator[bytes]]


class State(enum.Enum):
    PENDING = "pending"        # claimed; taking the file, asking the store
    STREAMING = "streaming"    # data flowing into incomplete/<id>
    DONE = "done"              # verified and complete
    FAILED = "failed"          # bad data, store error, abandoned: readers are cut off
    DISCARDED = "discarded"    # the file is unusable: readers go on from their fallback
    RELEASED = "released"      # the claimant got no data; nothing was written


class Role(enum.Enum):
    """What ``Fill.acquire`` made of a claim."""

    WRITER = "writer"          # this process holds the lock of a fresh incomplete/<id>
    TAILER = "tailer"          # another process does: follow its file
    CACHED = "cached"          # complete already (claim released)
    NONE = "none"              # cannot cache now, reason logged (claim released)


class CacheFillError(exception.StoreError):
    message = "The image data could not be verified."


class Fill:
    """One image being written into the cache, by this process or another."""

    def __init__(self, cache: ImageCache, image_id: str) -> None:
        self.cache = cache
        self.image_id = image_id
        self.cond = threading.Condition()
        self.state = State.PENDING
        self.fd = -1
        self.tailing = False
        self.upstream: Iterator[bytes] | None = None
        self._upstream_close: Callable[[], None] | None = None
        self.expected_size = 0
        self.expected_checksum: str | None = None
        self.expected_multihash: Multihash | None = None
        self._digests = Digests()
        self.written = 0          # bytes readers may use (a tailer's: verified)
        self.readers = 0
        self.pumping = False      # the writer's pump thread is running
        self.polling = False      # one of a tailer's readers is watching the file
        self.ending = False       # the outcome is decided; no second one
        self.doomed = False
        self.failure = ""

    # -- claimant -----------------------------------------------------------------
    def acquire(self, follow: bool = True) -> Role:
        """Take ``incomplete/<id>`` for this claim, before asking the store.

        WRITER: then ``start`` (or ``release``). TAILER, only with
        ``follow``: then ``tail`` (or ``release``). CACHED and NONE have
        released the claim.
        """
        try:
            role = self._take_file(follow)
        except OSError as err:
            LOG.warning("Cannot cache image %s: %s", self.image_id, err)
            role = Role.NONE
        if role is Role.CACHED or role is Role.NONE:
            self.release()
        return role

    def _take_file(self, follow: bool) -> Role:
        paths = self.cache.layout
        complete = paths.complete(self.image_id)
        incomplete = paths.incomplete(self.image_id)
        for _attempt in range(ACQUIRE_ATTEMPTS):
            if os.path.exists(complete):
                return Role.CACHED
            fd = _lock_fresh(incomplete)
            if fd is not None:
                self.fd = fd
                if os.path.exists(complete):    # admitted just before we locked
                    return Role.CACHED
                return Role.WRITER
            if not follow:
                LOG.info("Not caching image %s: another process is caching it",
                         self.image_id)
                return Role.NONE
            fd = _open_if_written_elsewhere(incomplete)
            if fd is not None:
                LOG.info("Image %s is being cached by another process; following its file",
                         self.image_id)
                self.fd = fd
                self.tailing = True
                return Role.TAILER
        LOG.info("Not caching image %s: its cache file keeps changing hands", self.image_id)
        return Role.NONE

    def start(self, chunks: Any, size: int, checksum: str | None,
              fallback: Fallback | None = None,
              multihash: Multihash | None = None) -> FillReader | None:
        """Fill the file from ``chunks`` (after ``acquire`` said WRITER).

        ``size``, ``checksum`` and ``multihash`` are the image's: the file
        is admitted only if its bytes match them.

        A pump thread copies ``chunks`` into the file; the claimant gets a
        reader like any other. None, and the claim released, when the disk
        lacks room: the caller then streams ``chunks`` uncached.
        """
        reason = self._lack_of_room(size)
        if reason:
            LOG.info("Not caching image %s: %s", self.image_id, reason)
            self.release()
            return None
        with self.cond:
            self.upstream = iter(chunks)
            self._upstream_close = getattr(chunks, "close", None)
            self.pumping = True
            self._begin_streaming(size, checksum, multihash)
        threading.Thread(target=self._pump, name="cache-fill-" + self.image_id,
                         daemon=True).start()
        return FillReader(self, fallback)

    def tail(self, size: int, checksum: str | None,
             fallback: Fallback | None = None,
             multihash: Multihash | None = None) -> FillReader:
        """Follow the other process's file (after ``acquire`` said TAILER).

        ``size``, ``checksum`` and ``multihash`` are the image's, from the
        registry.
        """
        with self.cond:
            self._begin_streaming(size, checksum, multihash)
        return FillReader(self, fallback)

    def _begin_streaming(self, size: int, checksum: str | None,
                         multihash: Multihash | None) -> None:
        """Under ``cond``: PENDING -> STREAMING, with the claimant as first reader."""
        self.expected_size = size
        self.expected_checksum = checksum or None
        self.expected_multihash = multihash
        if multihash is not None:
            self._digests = Digests(multihash[0])
        self.state = State.STREAMING
        self.readers += 1
        self.cond.notify_all()

    def _lack_of_room(self, size: int) -> str:
        try:
            stats = os.statvfs(self.cache.layout.subdir("incomplete"))
        except OSError as err:
            return "cannot write in the cache: %s" % err.strerror
        free = stats.f_bavail * stats.f_frsize
        if free < size:
            return "only %d bytes free in the cache, %d needed" % (free, size)
        return ""

    def release(self) -> None:
        """Give up a claim that produced no data; waiting requests retry."""
        with self.cond:
            if self.state is not State.PENDING:
                return
            self.state = State.RELEASED
            fd, self.fd = self.fd, -1
            self.cond.notify_all()
        if fd >= 0:
            if not self.tailing:
                self.cache.drop_incomplete(self.image_id, fd)
            os.close(fd)
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
        """Bytes readers may hand out: while the writer streams, all it
        wrote; otherwise all but the last until verified."""
        if self.state is State.DONE:
            return self.written
        if self.state is State.DISCARDED:
            return 0        # every reader goes on from its offset through its fallback
        if self.state is State.STREAMING and not self.tailing:
            return self.written
        return min(self.written, self.expected_size - 1)

    def copied(self) -> bool:
        """Whether the writer has every byte of the image in the file."""
        return not self.tailing and self.written >= self.expected_size

    def settled(self, timeout: float | None = None) -> State:
        """The outcome, once there is one (or the state after ``timeout``)."""
        with self.cond:
            self.cond.wait_for(lambda: self.state not in (State.PENDING, State.STREAMING),
                               timeout)
            return self.state

    # -- the writer's pump thread ---------------------------------------------------
    def _pump(self) -> None:
        """Copy the store stream into the file at store speed."""
        try:
            self._copy_upstream()
        except Exception:
            LOG.exception("Caching image %s failed", self.image_id)
        finally:
            # Whatever stopped the copy (a greenlet killed at shutdown too),
            # no reader may wait for it forever.
            self._end(State.FAILED, "the cache writer stopped")
            self.close_upstream()
            with self.cond:
                self.pumping = False
            self._close_fd_if_idle()

    def _copy_upstream(self) -> None:
        assert self.upstream is not None
        while True:
            try:
                chunk = next(self.upstream)
            except StopIteration:
                break
            except Exception as err:
                self._end(State.FAILED, "the store stream failed: %s" % err)
                return
            with self.cond:
                if self.ending:
                    return              # every reader went away
            if self.written + len(chunk) > self.expected_size:
                self._end(State.FAILED,
                          "the store returned more than %d bytes" % self.expected_size)
                return
            try:
                _pwrite_all(self.fd, chunk, self.written)
            except OSError as err:
                self._end(State.DISCARDED, str(err))
                return
            with self.cond:
                self.written += len(chunk)
                self.cond.notify_all()
            # Under the api's eventlet a store stream that never blocks (a
            # local file) would otherwise starve every other green thread:
            # its readers would see nothing, nor notice a client gone.
            time.sleep(0)
        self.close_upstream()
        if self.written == self.expected_size:
            self._hash_written()
        self._end_verified()

    def _hash_written(self) -> None:
        """Hash the file the writer filled: it is in the page cache still,
        and its readers did not wait for this."""
        digests = Digests(self.expected_multihash[0] if self.expected_multihash else None,
                          background=True)
        offset = 0
        while offset < self.written:
            data = os.pread(self.fd, min(CHUNK_SIZE, self.written - offset), offset)
            if not data:
                break
            digests.update(data)
            offset += len(data)
        self._digests = digests

    def close_upstream(self) -> None:
        if self._upstream_close is not None:
            close, self._upstream_close = self._upstream_close, None
            with contextlib.suppress(Exception):
                close()

    # -- a tailer's poller: one reader at a time, without ``cond`` held ------------
    def poll(self) -> None:
        """Wait for the followed file to grow; verify and publish what it adds."""
        try:
            self._follow_growth()
        except OSError as err:
            self._end(State.DISCARDED, "cannot read the file being written: %s" % err)
        finally:
            with self.cond:
                self.polling = False
                self.cond.notify_all()

    def _follow_growth(self) -> None:
        size, stopped = self._wait_for_growth()
        if size < self.written:
            self._end(State.DISCARDED, "the file being written shrank")
        elif size == self.written:
            self._end(State.DISCARDED, stopped)
        elif size > self.expected_size:
            self._end(State.FAILED, "the file being written has %d bytes, the image %d"
                      % (size, self.expected_size))
        else:
            self._verify_up_to(min(size, self.written + TAIL_VERIFY_STEP))

    def _wait_for_growth(self) -> tuple[int, str]:
        """The file's size once it differs from ``written``; else why it never will."""
        deadline = time.monotonic() + TAIL_STALL_TIMEOUT
        while True:
            st = os.fstat(self.fd)
            size = st.st_size
            if size != self.written:
                return size, ""
            if st.st_nlink == 0:
                # Its writer discarded it (a write error, no data after all)
                # and may keep the lock while its own clients finish.
                return size, "the process writing it removed it"
            if not layout.is_locked(self.fd):
                # Its writer may have appended the rest just before letting go.
                size = os.fstat(self.fd).st_size
                return size, "the process writing it stopped after %d of %d bytes" % (
                    size, self.expected_size)
            if time.monotonic() > deadline:
                return size, "it did not grow for %g seconds" % TAIL_STALL_TIMEOUT
            time.sleep(TAIL_POLL_INTERVAL)

    def _verify_up_to(self, end: int) -> None:
        """Hash the file from ``written`` to ``end``, in order, then publish it."""
        offset = self.written
        while offset < end:
            data = os.pread(self.fd, min(CHUNK_SIZE, end - offset), offset)
            if not data:
                self._end(State.DISCARDED, "the file being written shrank")
                return
            self._digests.update(data)
            offset += len(data)
        with self.cond:
            self.written = end
            self.cond.notify_all()
        if end == self.expected_size:
            self._end_verified()

    # -- the outcome ------------------------------------------------------------------
    def _end_verified(self) -> None:
        """Every byte is in: DONE if they are the image's, else FAILED."""
        if self.written != self.expected_size:
            reason = "got %d bytes, expected %d" % (self.written, self.expected_size)
        else:
            reason = self._digests.mismatch(self.expected_checksum,
                                            self.expected_multihash)
        self._end(State.FAILED if reason else State.DONE, reason)

    def _end(self, outcome: State, reason: str = "") -> None:
        """Settle the fill once: the file first, then readers see ``outcome``."""
        with self.cond:
            if self.ending:
                return
            self.ending = True
        try:
            self.close_upstream()
            self._settle_file(outcome, reason)
        finally:
            self.cache.fills.remove(self)
            with self.cond:
                self.state = outcome
                self.failure = reason
                self.polling = False
                self.cond.notify_all()

    def _settle_file(self, outcome: State, reason: str) -> None:
        """Admit, reject or remove our file; a followed file is never ours."""
        if self.tailing:
            if outcome is State.FAILED:
                LOG.warning("Image %s, cached by another process: %s", self.image_id, reason)
            elif outcome is State.DISCARDED:
                LOG.info("Image %s is no longer followed (%s); its readers here go on "
                         "from the store", self.image_id, reason)
        elif outcome is State.DONE:
            self._admit()
        elif outcome is State.FAILED:
            LOG.warning("Not caching image %s: %s", self.image_id, reason)
            self.cache.reject_incomplete(self.image_id, self.fd, reason)
        else:
            LOG.warning("Cannot write image %s into the cache (%s); its readers go on "
                        "from the store", self.image_id, reason)
            self.cache.drop_incomplete(self.image_id, self.fd)

    def _admit(self) -> None:
        if self.doomed:
            LOG.info("Image %s was deleted while being cached; not keeping it",
                     self.image_id)
            self.cache.drop_incomplete(self.image_id, self.fd)
        elif self.cache.admit(self.image_id, self.fd, self.written, self._digests.md5,
                              self.expected_multihash):
            LOG.info("Cached image %s (%d bytes)", self.image_id, self.written)

    def reader_left(self) -> None:
        with self.cond:
            # Decided under the same lock as the count, so no request can
            # join a fill that is about to be abandoned.
            abandoned = (self.readers == 1 and self.state is State.STREAMING
                         and not self.ending and not self.copied())
            if abandoned:
                self.ending = True
                self.state = State.FAILED
                self.failure = "every client went away before the end"
                self.cond.notify_all()
            else:
                self.readers -= 1
        if abandoned:
            self._abandon()
        self._close_fd_if_idle()

    def _abandon(self) -> None:
        """Set the file aside; the last reader still counts, so ``fd`` stays open."""
        try:
            if not self.tailing:
                # The pump stops, and closes the store stream, when the store
                # next answers; the file is set aside now.
                LOG.warning("Not caching image %s: %s", self.image_id, self.failure)
                self.cache.reject_incomplete(self.image_id, self.fd, self.failure)
            self.cache.fills.remove(self)
        finally:
            with self.cond:
                self.readers -= 1

    def _close_fd_if_idle(self) -> None:
        with self.cond:
            if self.readers or self.pumping or self.fd < 0 \
                    or self.state in (State.PENDING, State.STREAMING):
                return
            fd, self.fd = self.fd, -1
        os.close(fd)


class FillReader:
    """One client's stream of a ``Fill``; a WSGI app_iter (has ``close``)."""

    def __init__(self, fill: Fill, fallback: Fallback | None) -> None:
        self.fill = fill
        self.fallback = fallback
        self.offset = 0
        self._own: Any = None       # this reader's fallback stream
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
                if self.offset >= fill.expected_size and fill.copied():
                    return "end", 0         # the store's bytes, all sent
                state = fill.state
                if state is State.DONE:
                    return "end", 0
                if state is State.DISCARDED:
                    return "fallback", 0
                if state is State.FAILED:
                    raise CacheFillError("Image %s: %s" % (fill.image_id, fill.failure))
                if fill.tailing and not fill.polling:
                    fill.polling = True
                    return "poll", 0
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
            elif step == "poll":
                fill.poll()
            elif step == "fallback":
                yield from self._fallback()
                return
            else:
                return

    def _fallback(self) -> Iterator[bytes]:
        fill = self.fill
        if self.fallback is None:
            raise CacheFillError("Image %s: %s" % (fill.image_id, fill.failure))
        LOG.info("Re-reading image %s from the store (%s; %d bytes already sent)",
                 fill.image_id, fill.failure, self.offset)
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
        close = getattr(own, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        fill = self.fill
        fill.reader_left()
        if self.offset >= fill.expected_size and fill.copied():
            # The client has every byte already; the request ends once the
            # file is judged, so whoever made it (a prefetcher run, the
            # next request on this connection) finds the image cached.
            fill.settled()

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



def _lock_fresh(path: str) -> int | None:
    """``path`` locked and empty; None while another process holds it.

    A non-empty file that we can lock was left by a dead writer. It is
    replaced, never rewritten: a tailer may still be reading it, and must
    only ever see bytes appended in order by one holder of the lock.
    """
    for _attempt in range(ACQUIRE_ATTEMPTS):
        fd = layout.open_locked(path)
        if fd is None:
            return None
        try:
            if os.fstat(fd).st_size == 0:
                return fd
            LOG.info("Replacing %s, left by a cache writer that stopped", path)
            os.unlink(path)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(errno.EAGAIN, "%s keeps being refilled by other processes" % path)


def _open_if_written_elsewhere(path: str) -> int | None:
    """``path`` open read-only while another process holds its lock, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        if layout.is_locked(fd) and layout.same_file(fd, path):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None
