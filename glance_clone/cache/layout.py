"""Paths of the cache directory and the file locks that keep it consistent.

::

    <dir>/<image_id>             complete, verified image
    <dir>/incomplete/<image_id>  being written; its writer holds an flock on it
    <dir>/invalid/<image_id>     failed or altered file, kept for the cleaner
    <dir>/queue/<image_id>       empty marker: prefetch requested (mtime order)
    <dir>/<image_cache_sqlite_db> the sqlite driver's records
    <dir>/.pruner.lock           held by a running glance-cache-pruner

Every writer (api worker, prefetcher) takes an exclusive ``flock`` on its
``incomplete/<id>`` file, so two processes never fill the same image at
once and the cleaner never removes a file that is still being written.
A locked file only holds bytes its lock holder appended, in order, so
other processes may stream it read-only while it grows.
Files only reach ``<dir>/<id>`` by ``rename``, so readers never see half an
image; removing a file someone is reading is safe (POSIX keeps the open
file alive until it is closed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator

from glance_clone.common import exception

SUBDIRS = ("incomplete", "invalid", "queue")
PRUNER_LOCK = ".pruner.lock"
# Image ids become file names: nothing that could climb out of a directory,
# hide as a dot file or collide with the lock files.
_IMAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_SQLITE_SUFFIXES = ("", "-journal", "-wal", "-shm")


class CacheDirUnusable(exception.ConfigError):
    """The cache directory cannot be used; glance-api then serves uncached."""

    message = "The image cache directory is unusable."


def valid_image_id(image_id: str) -> bool:
    return bool(_IMAGE_ID.match(image_id))


def check_image_id(image_id: str) -> None:
    """Raises Invalid for an id that cannot name a cache file."""
    if not valid_image_id(image_id):
        raise exception.Invalid("Invalid image id %r for the image cache." % image_id)


class CacheLayout:
    """The paths of one cache directory."""

    def __init__(self, base: str, sqlite_db: str = "cache.db") -> None:
        self.base = os.path.abspath(base)
        self.db_path = os.path.join(self.base, sqlite_db)
        self._not_images = set()
        if os.path.dirname(self.db_path) == self.base:
            name = os.path.basename(self.db_path)
            self._not_images = {name + suffix for suffix in _SQLITE_SUFFIXES}

    def prepare(self) -> None:
        """Check the directory and create the subdirectories.

        Raises CacheDirUnusable saying why. The directory itself is never
        created: a missing directory usually means a cache disk that is not
        mounted, and filling the root filesystem instead would be worse
        than not caching.
        """
        if not os.path.isdir(self.base):
            raise CacheDirUnusable("image_cache_dir %s does not exist or is not "
                                   "a directory" % self.base)
        if not os.access(self.base, os.W_OK | os.X_OK):
            raise CacheDirUnusable("image_cache_dir %s is not writable" % self.base)
        for name in SUBDIRS:
            path = os.path.join(self.base, name)
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as err:
                raise CacheDirUnusable("cannot create %s: %s" % (path, err.strerror))
            if not os.access(path, os.W_OK | os.X_OK):
                raise CacheDirUnusable("%s is not writable" % path)

    # -- paths ----------------------------------------------------------------
    def complete(self, image_id: str) -> str:
        check_image_id(image_id)
        return os.path.join(self.base, image_id)

    def incomplete(self, image_id: str) -> str:
        check_image_id(image_id)
        return os.path.join(self.base, "incomplete", image_id)

    def invalid(self, image_id: str) -> str:
        check_image_id(image_id)
        return os.path.join(self.base, "invalid", image_id)

    def queued(self, image_id: str) -> str:
        check_image_id(image_id)
        return os.path.join(self.base, "queue", image_id)

    def subdir(self, name: str) -> str:
        return os.path.join(self.base, name)

    # -- listings -------------------------------------------------------------
    def _regular_files(self, directory: str) -> Iterator[os.DirEntry[str]]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    yield entry
            except OSError:
                continue

    def complete_files(self) -> list[tuple[str, os.stat_result]]:
        """(image id, stat) of every complete image file."""
        found = []
        for entry in self._regular_files(self.base):
            if entry.name in self._not_images or not valid_image_id(entry.name):
                continue
            try:
                found.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
        return found

    def cache_size(self) -> int:
        """Bytes of the regular files directly in the directory, database excluded."""
        total = 0
        for entry in self._regular_files(self.base):
            if entry.name in self._not_images:
                continue
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat(follow_symlinks=False).st_size
        return total

    def files_in(self, name: str) -> list[tuple[str, os.stat_result]]:
        """(name, stat) of the files in subdirectory ``name``."""
        found = []
        for entry in self._regular_files(self.subdir(name)):
            with contextlib.suppress(FileNotFoundError):
                found.append((entry.name, entry.stat(follow_symlinks=False)))
        return found

    def queued_ids(self) -> list[str]:
        """Queued image ids, oldest request first."""
        files = [(st.st_mtime_ns, name, st) for name, st in self.files_in("queue")
                 if valid_image_id(name)]
        return [name for _mtime, name, _st in sorted(files)]


# -- locks ----------------------------------------------------------------------
def try_lock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` without waiting."""
    return _flock_now(fd, fcntl.LOCK_EX)


def is_locked(fd: int) -> bool:
    """Whether another open file holds an exclusive flock on ``fd``'s file."""
    if not _flock_now(fd, fcntl.LOCK_SH):
        return True
    # Held for no longer than this check: a shared lock would keep the
    # next writer of the file out.
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _flock_now(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def open_locked(path: str, create: bool = True) -> int | None:
    """Open ``path`` read-write holding an exclusive flock on it.

    None when another process holds the lock. Retries when the file was
    renamed or removed between open and lock, so the lock always belongs
    to the file the path names.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    for _attempt in range(5):
        try:
            fd = os.open(path, flags, 0o640)
        except FileNotFoundError:
            return None
        try:
            if not try_lock(fd):
                os.close(fd)
                return None
            if same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if not create:
            return None
    return None


@contextlib.contextmanager
def held_lock(path: str) -> Iterator[bool]:
    """Hold the lock file ``path`` for the block; yields False if busy."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        yield try_lock(fd)
    finally:
        os.close(fd)
