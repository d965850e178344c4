"""The record each cached image keeps, behind one small driver interface.

A driver stores, per complete image: size, MD5 checksum and multihash
(when the image has one), the file's mtime
and inode when it was admitted, last access time and hit count, and where
the driver can (sqlite), the file's ctime once it is in place. The file on
disk is the truth for *whether* an image is cached; the record is what a
hit is validated against (a file whose size, mtime, inode or ctime no longer
match its record was altered or replaced and is not served). The ctime is
what makes that check complete: no one can set it back, and any write, even
one followed by restoring the mtime, changes it. Without it (xattr: writing
the hit count changes the ctime) hits are verified by hashing.

``load_driver`` picks ``image_cache_driver``: ``sqlite`` (default) or
``xattr``; an unknown name logs a warning and falls back to sqlite.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Any

from glance_clone.cache.layout import CacheLayout
from glance_clone.common.hashing import Multihash

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    image_id: str
    size: int
    checksum: str | None
    last_accessed: float
    last_modified: float
    hits: int
    inode: int | None = None      # None: recorded before inodes were kept
    ctime: float | None = None    # None: not tracked, hits are hashed
    multihash: Multihash | None = None   # None: the image had none when cached

    def as_dict(self) -> dict[str, Any]:
        """The shape of GET /v1/cached_images entries."""
        return {"image_id": self.image_id, "hits": self.hits,
                "last_accessed": self.last_accessed,
                "last_modified": self.last_modified, "size": self.size}


class CacheDriver(abc.ABC):
    """Per-image records; every method is safe to call from many processes."""

    name = ""

    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout

    @abc.abstractmethod
    def check(self) -> None:
        """Verify the driver can work here; raises ConfigError saying why."""

    @abc.abstractmethod
    def record_cached(self, image_id: str, fd: int, size: int, checksum: str,
                      mtime: float, now: float, multihash: Multihash | None = None) -> None:
        """Record a verified file (still at its incomplete path, open as ``fd``)."""

    def record_identity(self, image_id: str, fd: int) -> None:  # noqa: B027 - optional
        """Note the ctime of the file, now at its complete path (sqlite only)."""

    @abc.abstractmethod
    def get_entry(self, image_id: str, fd: int | None = None) -> CacheEntry | None:
        """The record of a complete image (``fd``: the file, when open)."""

    @abc.abstractmethod
    def record_hit(self, image_id: str, fd: int, now: float) -> None:
        """Count one complete read (of the file or a part) of the file open as ``fd``."""

    @abc.abstractmethod
    def forget(self, image_id: str, last_modified: float | None = None) -> None:
        """Drop the record (only the one with ``last_modified`` when given)."""

    def mark_invalid(self, fd: int, reason: str) -> None:  # noqa: B027 - optional hook
        """Note why a file was rejected (xattr only)."""

    def entries(self) -> dict[str, CacheEntry]:
        """Records of the complete files, by image id."""
        found = {}
        for image_id, _st in self.layout.complete_files():
            entry = self.get_entry(image_id)
            if entry is not None:
                found[image_id] = entry
        return found

    def known_ids(self) -> list[str]:
        """Ids that have records, whether or not their file still exists."""
        return []


def load_driver(name: str, layout: CacheLayout) -> CacheDriver:
    """The checked driver called ``name``; raises ConfigError from ``check``."""
    from glance_clone.cache.sqlite_driver import SqliteDriver
    from glance_clone.cache.xattr_driver import XattrDriver

    drivers: dict[str, type[CacheDriver]] = {"sqlite": SqliteDriver, "xattr": XattrDriver}
    cls = drivers.get((name or "").strip().lower())
    if cls is None:
        LOG.warning("Unknown image_cache_driver %r; using sqlite", name)
        cls = SqliteDriver
    driver = cls(layout)
    driver.check()
    return driver
