"""``ImageCache``: the cache directory as the middleware and tools use it.

Every byte of a cached file was verified (size, MD5 against the image's
checksum and the multihash against its ``os_hash_value`` when it has one)
when the file was admitted. A hit then checks the file's identity
instead of hashing it again: the same inode, size, mtime and ctime as at
admission, before the first byte and again before the last one (held back
until then), so a file altered, truncated or replaced on disk never
produces a complete download. Where the driver cannot keep the ctime
(xattr), a hit hashes the file as it streams and holds the last chunk back
until the MD5 and multihash match. A file failing a check is moved to ``invalid/`` and
the request is treated as a miss. glance-cache-cleaner hashes every cached
file again (``verify_cached``), for disks that rot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from glance_clone.cache import fill as fill_mod
from glance_clone.cache import layout as layout_mod
from glance_clone.cache import options
from glance_clone.cache.driver import CacheEntry, load_driver
from glance_clone.cache.layout import CacheDirUnusable, CacheLayout
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.data_out import FileRegion, Outgoing
from glance_clone.common.hashing import Digests, Multihash, recorded_multihash

LOG = logging.getLogger(__name__)

_RECORD_ERRORS = (OSError, sqlite3.Error)


class ImageCache:
    """One cache directory; raises CacheDirUnusable or ConfigError when built."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        options.register_opts(conf)
        if not conf.image_cache_dir:
            raise CacheDirUnusable("image_cache_dir is not set")
        self.conf = conf
        self.layout = CacheLayout(conf.image_cache_dir, conf.image_cache_sqlite_db)
        self.layout.prepare()
        self.driver = load_driver(conf.image_cache_driver, self.layout)
        self.fills = fill_mod.registry_for(self.layout.base)

    # -- hits -------------------------------------------------------------------------
    def open_cached(self, image_id: str) -> CachedFile | None:
        """The complete file of ``image_id`` if present and intact, open."""
        if not layout_mod.valid_image_id(image_id):
            return None
        path = self.layout.complete(image_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as err:
            LOG.warning("Cannot open cached image %s: %s", image_id, err)
            return None
        try:
            st = os.fstat(fd)
            entry = self.driver.get_entry(image_id, fd)
            reason = _mismatch(entry, st)
            if reason:
                self.invalidate(image_id, fd, reason)
                os.close(fd)
                return None
        except _RECORD_ERRORS as err:
            LOG.warning("Cannot read the cache record of image %s: %s", image_id, err)
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        assert entry is not None
        return CachedFile(self, image_id, fd, entry)

    def invalidate(self, image_id: str, fd: int, reason: str) -> None:
        """Move the complete file open as ``fd`` to invalid/ and forget it."""
        LOG.warning("Cached image %s is not usable (%s); moving it to invalid/",
                    image_id, reason)
        self.driver.mark_invalid(fd, reason)
        path = self.layout.complete(image_id)
        if not layout_mod.same_file(fd, path):
            return
        try:
            os.rename(path, self.layout.invalid(image_id))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
        with contextlib.suppress(*_RECORD_ERRORS):
            self.driver.forget(image_id)

    def record_hit(self, image_id: str, fd: int) -> None:
        try:
            self.driver.record_hit(image_id, fd, time.time())
        except _RECORD_ERRORS as err:
            LOG.warning("Cannot count a hit of cached image %s: %s", image_id, err)

    # -- fills --------------------------------------------------------------------------
    def claim(self, image_id: str) -> tuple[fill_mod.Fill, bool]:
        """The running fill of ``image_id`` or a new claim (True: ours)."""
        return self.fills.claim(self, image_id)

    def admit(self, image_id: str, fd: int, size: int, checksum: str,
              multihash: Multihash | None = None) -> bool:
        """Record a verified incomplete file and move it into place."""
        incomplete = self.layout.incomplete(image_id)
        if not layout_mod.same_file(fd, incomplete):
            LOG.warning("Incomplete file of image %s was removed while being "
                        "written; not caching it", image_id)
            return False
        st = os.fstat(fd)
        try:
            self.driver.record_cached(image_id, fd, size, checksum, st.st_mtime, time.time(),
                                      multihash)
            os.rename(incomplete, self.layout.complete(image_id))
            # Renaming changed the ctime: hits compare with this one.
            self.driver.record_identity(image_id, fd)
        except _RECORD_ERRORS as err:
            LOG.warning("Cannot admit image %s into the cache: %s", image_id, err)
            self.drop_incomplete(image_id, fd)
            return False
        with contextlib.suppress(OSError):
            os.unlink(self.layout.queued(image_id))
        return True

    def reject_incomplete(self, image_id: str, fd: int, reason: str) -> None:
        """Keep a bad incomplete file in invalid/ for the cleaner."""
        self.driver.mark_invalid(fd, reason)
        incomplete = self.layout.incomplete(image_id)
        if layout_mod.same_file(fd, incomplete):
            try:
                os.rename(incomplete, self.layout.invalid(image_id))
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(incomplete)

    def drop_incomplete(self, image_id: str, fd: int) -> None:
        incomplete = self.layout.incomplete(image_id)
        if layout_mod.same_file(fd, incomplete):
            with contextlib.suppress(OSError):
                os.unlink(incomplete)

    # -- queries ----------------------------------------------------------------------
    def is_cached(self, image_id: str) -> bool:
        return (layout_mod.valid_image_id(image_id)
                and os.path.isfile(self.layout.complete(image_id)))

    def list_cached(self) -> list[CacheEntry]:
        """Every complete image with its record, ordered by id."""
        files = self.layout.complete_files()
        try:
            records = self.driver.entries()
        except _RECORD_ERRORS as err:
            LOG.warning("Cannot read the cache records: %s", err)
            records = {}
        found = []
        for image_id, st in files:
            entry = records.get(image_id)
            if entry is None:
                entry = CacheEntry(image_id=image_id, size=st.st_size, checksum=None,
                                   last_accessed=0.0, last_modified=st.st_mtime, hits=0)
            found.append(entry)
        return sorted(found, key=lambda e: e.image_id)

    def verify_cached(self) -> tuple[int, int]:
        """Hash every complete file again; returns (checked, invalidated).

        Finds what the identity check of a hit cannot: bytes rewritten in
        place with the mtime set back, or rotting on disk.
        """
        checked = invalidated = 0
        for image_id, _st in self.layout.complete_files():
            cached = self.open_cached(image_id)
            if cached is None:
                continue
            checked += 1
            reason = cached.verify()
            if reason:
                invalidated += 1
                cached.invalidate(reason)
            else:
                cached.close()
        return checked, invalidated

    def cache_size(self) -> int:
        return self.layout.cache_size()

    # -- removal ------------------------------------------------------------------------
    def delete_cached(self, image_id: str, expected: os.stat_result | None = None) -> bool:
        """Remove a complete image; with ``expected``, only that very file."""
        path = self.layout.complete(image_id)
        try:
            if expected is not None:
                st = os.stat(path, follow_symlinks=False)
                if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
                    return False
            os.unlink(path)
            removed = True
        except FileNotFoundError:
            removed = False
        with contextlib.suppress(*_RECORD_ERRORS):
            self.driver.forget(image_id)
        return removed

    def delete_all_cached(self) -> int:
        return sum(1 for image_id, _st in self.layout.complete_files()
                   if self.delete_cached(image_id))

    def purge(self, image_id: str) -> None:
        """Forget everything about a deleted image."""
        if not layout_mod.valid_image_id(image_id):
            return
        fill = self.fills.get(image_id)
        if fill is not None:
            fill.doom()
        if self.delete_cached(image_id):
            LOG.info("Removed deleted image %s from the cache", image_id)
        self.delete_queued(image_id)

    def forget_orphan_records(self) -> int:
        """Drop records whose file is gone; returns how many."""
        present = {image_id for image_id, _st in self.layout.complete_files()}
        orphans = [i for i in self.driver.known_ids() if i not in present]
        for image_id in orphans:
            self.driver.forget(image_id)
        return len(orphans)

    # -- queue --------------------------------------------------------------------------
    def queue(self, image_id: str) -> bool:
        """Ask the prefetcher for ``image_id``; False if cached or queued already."""
        layout_mod.check_image_id(image_id)
        if self.is_cached(image_id):
            return False
        try:
            fd = os.open(self.layout.queued(image_id),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def list_queued(self) -> list[str]:
        return self.layout.queued_ids()

    def delete_queued(self, image_id: str) -> bool:
        if not layout_mod.valid_image_id(image_id):
            return False
        try:
            os.unlink(self.layout.queued(image_id))
        except FileNotFoundError:
            return False
        return True

    def delete_all_queued(self) -> int:
        return sum(1 for image_id in self.layout.queued_ids() if self.delete_queued(image_id))


def _mismatch(entry: CacheEntry | None, st: os.stat_result) -> str:
    """Why the file ``st`` describes is not the one ``entry`` recorded, or ''."""
    if entry is None:
        return "no cache record"
    if entry.size != st.st_size:
        return "%d bytes on disk, %d recorded" % (st.st_size, entry.size)
    if entry.last_modified != st.st_mtime:
        return "modified on disk after it was cached"
    if entry.inode is not None and entry.inode != st.st_ino:
        return "replaced on disk after it was cached"
    # Unlinking (the pruner, a delete) changes the ctime too; a file with
    # no name left can no longer be opened to be altered.
    if entry.ctime is not None and st.st_nlink and entry.ctime != st.st_ctime:
        return "changed on disk after it was cached"
    return ""


class CachedFile:
    """An intact complete file, open; serve it with ``reader()`` or ``close()``."""

    def __init__(self, cache: ImageCache, image_id: str, fd: int, entry: CacheEntry) -> None:
        self.cache = cache
        self.image_id = image_id
        self.fd = fd
        self.entry = entry

    @property
    def size(self) -> int:
        return self.entry.size

    def mismatch(self, image: dict[str, Any]) -> str:
        """Why the file does not belong to ``image`` (registry metadata), or ''."""
        size = image.get("size") or 0
        if size and size != self.entry.size:
            return "the image has %d bytes, the cached file %d" % (size, self.entry.size)
        checksum = image.get("checksum")
        if checksum and self.entry.checksum and checksum != self.entry.checksum:
            return "the image checksum is %s, the cached file's %s" % (
                checksum, self.entry.checksum)
        recorded, cached = recorded_multihash(image), self.entry.multihash
        if recorded and cached and recorded[0] == cached[0] and recorded != cached:
            return "the image %s is %s, the cached file's %s" % (
                recorded[0], recorded[1], cached[1])
        return ""

    def invalidate(self, reason: str) -> None:
        self.cache.invalidate(self.image_id, self.fd, reason)
        self.close()

    @property
    def serves_parts(self) -> bool:
        """Whether a part of the file can be served: only where its identity
        proves it intact (a recorded ctime); without, only a whole read,
        hashed as it goes, can."""
        return self.entry.ctime is not None

    def reader(self, part: tuple[int, int] | None = None) -> HitReader:
        """The whole file, or the (offset, length) ``part`` (``serves_parts``)."""
        return HitReader(self, part)

    def verify(self) -> str:
        """Hash the whole file; why it does not match its record, or ''."""
        multihash = self.entry.multihash
        digests = Digests(multihash[0] if multihash else None)
        offset = 0
        while data := os.pread(self.fd, CHUNK_SIZE, offset):
            digests.update(data)
            offset += len(data)
        reason = _mismatch(self.entry, os.fstat(self.fd))
        if not reason and offset != self.entry.size:
            reason = "read %d bytes, %d recorded" % (offset, self.entry.size)
        if not reason:
            reason = digests.mismatch(self.entry.checksum, multihash)
        return reason

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class HitReader:
    """A cached file, or the (offset, length) ``part`` of it, as a WSGI app_iter.

    Its identity is checked again before the last chunk goes out; without a
    recorded ctime, the whole file is hashed as it streams instead. Where
    the server can (``allow_regions``), all but the last chunk go out as a
    file region, sent by the kernel from the page cache.
    """

    def __init__(self, cached: CachedFile, part: tuple[int, int] | None = None) -> None:
        self.cached = cached
        entry = cached.entry
        offset, length = part or (0, entry.size)
        hashed = entry.ctime is None
        assert part is None or not hashed, "a part cannot be verified by hashing"
        self._region_wanted = False
        self._out = Outgoing(self._chunks(offset, offset + length), length, self._altered,
                             expected_checksum=entry.checksum if hashed else None,
                             expected_multihash=entry.multihash if hashed else None)

    def __iter__(self) -> HitReader:
        return self

    def __next__(self) -> bytes:
        return next(self._out)

    def allow_regions(self) -> bool:
        """Regions, unless the file is hashed as it streams."""
        self._region_wanted = not self._out.hashing
        return self._region_wanted

    def _chunks(self, offset: int, end: int) -> Iterator[bytes | FileRegion]:
        cached = self.cached
        fd = cached.fd
        while offset < end:
            last = max(offset, end - CHUNK_SIZE)
            if self._region_wanted and offset < last:
                # Up to the last chunk: its identity check still comes
                # before the end, as below.
                yield FileRegion(fd, offset, last - offset, self._truncated)
                offset = last
                continue
            data = os.pread(fd, min(CHUNK_SIZE, end - offset), offset)
            if not data:
                return              # truncated: Outgoing raises
            offset += len(data)
            if offset >= end:
                reason = _mismatch(cached.entry, os.fstat(fd))
                if reason:
                    raise self._altered(reason)
                if not self._out.verifying:
                    # Before the last chunk goes out: once a client has all
                    # it asked for, the hit is on record (a part counts:
                    # the pruner must see the file in use).
                    cached.cache.record_hit(cached.image_id, fd)
            yield data
        if self._out.verifying:
            # Hashed: the last chunk is held until the md5 matched, after this.
            cached.cache.record_hit(cached.image_id, fd)

    def _truncated(self, sent: int) -> Exception:
        return self._altered("the file ended within a region, after %d of its bytes" % sent)

    def _altered(self, reason: str) -> Exception:
        cached = self.cached
        cached.cache.invalidate(cached.image_id, cached.fd, reason)
        return fill_mod.CacheFillError(
            "Image %s: the cached copy was altered (%s)" % (cached.image_id, reason))

    def close(self) -> None:
        self._out.close()
        self.cached.close()
