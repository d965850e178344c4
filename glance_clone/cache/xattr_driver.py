"""Cache records as extended attributes of the cached files themselves.

Attributes (all ``user.``): ``hits``, ``last_accessed``, ``mtime`` and
``inode`` (the file's identity at admission), ``size``, ``checksum``,
``hash_algo`` and ``hash_value`` (the multihash, when the image has one)
and, on rejected files, ``error``. The record lives and dies with its file, so there is nothing to
clean up. Hit counts from several processes at once may lose an increment
(read-modify-write on an attribute); they are statistics, not data.

The filesystem must support user xattrs (ext4, xfs: yes; tmpfs only on
recent kernels; some network filesystems: no). ``check`` tries one and
refuses to start otherwise.
"""

from __future__ import annotations

import contextlib
import os

from glance_clone.cache.driver import CacheDriver, CacheEntry
from glance_clone.cache.layout import CacheDirUnusable
from glance_clone.common import exception
from glance_clone.common.hashing import Multihash

PREFIX = "user."
_FdOrPath = int | str


def _get(target: _FdOrPath, name: str) -> str | None:
    try:
        return os.getxattr(target, PREFIX + name).decode("utf-8")
    except OSError:
        return None


def _set(target: _FdOrPath, name: str, value: object) -> None:
    os.setxattr(target, PREFIX + name, str(value).encode("utf-8"))


def _float(value: str | None) -> float:
    try:
        return float(value) if value is not None else 0.0
    except ValueError:
        return 0.0


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


class XattrDriver(CacheDriver):
    name = "xattr"

    def check(self) -> None:
        probe = os.path.join(self.layout.base, ".xattr-check-%d" % os.getpid())
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise CacheDirUnusable("cannot write in %s: %s" % (self.layout.base, err.strerror))
        try:
            _set(fd, "glance-check", 1)
        except (OSError, AttributeError) as err:
            detail = getattr(err, "strerror", None) or str(err)
            raise exception.ConfigError(
                "image_cache_driver = xattr needs user extended attributes, but the "
                "filesystem of image_cache_dir %s does not support them (%s). Mount it "
                "with user xattrs enabled (e.g. the user_xattr option) or set "
                "image_cache_driver = sqlite." % (self.layout.base, detail))
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)

    def record_cached(self, image_id: str, fd: int, size: int, checksum: str,
                      mtime: float, now: float, multihash: Multihash | None = None) -> None:
        _set(fd, "size", size)
        _set(fd, "checksum", checksum)
        if multihash is not None:
            _set(fd, "hash_algo", multihash[0])
            _set(fd, "hash_value", multihash[1])
        _set(fd, "mtime", repr(mtime))
        _set(fd, "inode", os.fstat(fd).st_ino)
        _set(fd, "last_accessed", repr(now))
        _set(fd, "hits", 0)

    def get_entry(self, image_id: str, fd: int | None = None) -> CacheEntry | None:
        target: _FdOrPath = fd if fd is not None else self.layout.complete(image_id)
        size = _get(target, "size")
        mtime = _get(target, "mtime")
        inode = _get(target, "inode")
        if size is None or mtime is None:
            return None
        algorithm, value = _get(target, "hash_algo"), _get(target, "hash_value")
        return CacheEntry(image_id=image_id, size=_int(size),
                          checksum=_get(target, "checksum") or None,
                          last_accessed=_float(_get(target, "last_accessed")),
                          last_modified=_float(mtime), hits=_int(_get(target, "hits")),
                          inode=_int(inode) if inode is not None else None,
                          multihash=(algorithm, value) if algorithm and value else None)

    def record_hit(self, image_id: str, fd: int, now: float) -> None:
        with contextlib.suppress(OSError):
            _set(fd, "hits", _int(_get(fd, "hits")) + 1)
            _set(fd, "last_accessed", repr(now))

    def forget(self, image_id: str, last_modified: float | None = None) -> None:
        """Nothing to do: the record goes with its file."""

    def mark_invalid(self, fd: int, reason: str) -> None:
        with contextlib.suppress(OSError):
            _set(fd, "error", reason)
