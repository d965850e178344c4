"""Filesystem store: each image is one plain file in one directory.

Options (section ``[glance_store]``):

``filesystem_store_datadir``
    Directory holding the image files, ``<datadir>/<image_id>``; created at
    startup if missing. Required when ``file`` is in ``stores``. Locations
    are recorded as ``file://<absolute datadir>/<image_id>``.
``filesystem_store_file_perm``
    Mode for new image files, written in octal digits (``640`` means
    ``0o640``), as in Glance. ``0`` (default) leaves the process umask in
    charge.
``filesystem_store_metadata_file``
    Optional path to a JSON object returned as the location metadata of
    every image this store writes (e.g. ``{"id": "nfs1", "mountpoint":
    "/var/lib/glance/images"}``); ``{}`` when unset.

An upload is written to a hidden partial file (``.<image_id>.<random>.partial``)
in the same directory and only appears under its final name once complete,
so readers never see half an image. A failed or abandoned upload removes its
partial file; a crash can leave one behind, and these are safe to delete
when no upload is running. The store only reads files directly inside the
data directory: locations pointing anywhere else are refused.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from oslo_config import cfg

from glance_clone.common import exception, offload
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.data_in import Incoming
from glance_clone.common.data_out import FileRegion
from glance_clone.store.base import AddResult, ChunkIterator, Driver

LOG = logging.getLogger(__name__)

GROUP = "glance_store"

OPTS = [
    cfg.StrOpt("filesystem_store_datadir",
               help="Directory where the file store keeps image data."),
    cfg.IntOpt("filesystem_store_file_perm", default=0,
               help="Mode of new image files in octal digits (e.g. 640); "
                    "0 leaves the umask in charge."),
    cfg.StrOpt("filesystem_store_metadata_file",
               help="JSON file whose object is returned as location metadata "
                    "for images written by the file store."),
]

PARTIAL_SUFFIX = ".partial"

# Writes are gathered into large blocks: upload chunks are often small
# (chunked request bodies), and one syscall per chunk costs more than a copy.
WRITE_BUFFER = 1024 * 1024

class _BlockWriter:
    """Writes the blocks of an upload to ``out`` in order, on a native thread
    (an ``offload.Lane``) while the request thread reads the next ones: the
    kernel's copy into the page cache is an upload's largest cost after
    hashing, and the write releases the GIL. ``write`` and ``wait`` raise
    what an earlier write raised.
    """

    def __init__(self, out: Any) -> None:
        self._lane = offload.Lane(out.write)

    def write(self, chunk: bytes) -> None:
        self._lane.put(chunk)

    def wait(self) -> None:
        self._lane.join()


# os.link can fail this way on filesystems without hard links.
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP,
                             errno.ENOSYS, errno.EMLINK})


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the file store options in ``[glance_store]``."""
    conf.register_opts(OPTS, group=GROUP)


def partial_files(datadir: str, image_id: str) -> list[str]:
    """Paths of the partial files of ``image_id`` in ``datadir``."""
    if not image_id or "/" in image_id:
        return []
    prefix = "." + image_id + "."
    try:
        with os.scandir(datadir) as entries:
            return [entry.path for entry in entries
                    if entry.name.startswith(prefix)
                    and entry.name.endswith(PARTIAL_SUFFIX)
                    and entry.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def storage_error(err: OSError) -> exception.GlanceError:
    """A failed write of the store: the filesystem's refusal (413, 503),
    else StoreError."""
    return (exception.write_refusal(err)
            or exception.StoreError(f"File store write failed: {err.strerror}"))


class FileChunks(ChunkIterator):
    """An image file from ``offset`` to ``end`` (None: to its end), open as
    ``fd`` (closed with the iterator), in chunks read with pread.

    Allowed to (``allow_regions``), it passes what is left as one
    ``FileRegion`` instead, for the WSGI server to send without reading it
    into Python; then it reads on from the region's end, so that a file
    longer than ``size`` (its size when opened) still shows.
    """

    def __init__(self, fd: int, offset: int, end: int | None, size: int) -> None:
        super().__init__(self._next_piece, lambda: os.close(fd), CHUNK_SIZE, _read_error)
        self.fd = fd
        self.position = offset
        self.end = end
        self.size = size
        self._region_wanted = False

    def allow_regions(self) -> bool:
        self._region_wanted = True
        return True

    def _next_piece(self, amount: int) -> bytes | FileRegion:
        stop = self.size if self.end is None else self.end
        if self._region_wanted and stop > self.position:
            self._region_wanted = False
            region = FileRegion(self.fd, self.position, stop - self.position, self._short)
            self.position = stop
            return region
        if self.end is not None:
            amount = min(amount, self.end - self.position)
            if amount <= 0:
                return b""
        data = os.pread(self.fd, amount, self.position)
        self.position += len(data)
        return data

    def _short(self, sent: int) -> exception.GlanceError:
        return _read_error(EOFError("the image file ended after %d bytes of a region"
                                    % sent))


def _read_error(err: Exception) -> exception.GlanceError:
    LOG.error("File store read failed: %s", err)
    return exception.StoreError("File store read failed.")


def _file_mode(perm: int) -> int:
    """Turn the option's octal digits into a mode; raises ConfigError."""
    try:
        mode = int(str(perm), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise exception.ConfigError(
            f"filesystem_store_file_perm {perm} is not an octal file mode")
    return mode


def _load_metadata(path: str | None) -> dict[str, Any]:
    """Read the metadata JSON object; raises ConfigError if unusable."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as err:
        raise exception.ConfigError(
            f"Cannot read filesystem_store_metadata_file {path}: {err}") from err
    if not isinstance(data, dict):
        raise exception.ConfigError(
            f"filesystem_store_metadata_file {path} must hold a JSON object")
    return data


class FileDriver(Driver):
    """Stores images as files in ``filesystem_store_datadir``."""

    schemes = ("file", "filesystem")

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        opts = conf[GROUP]
        if not opts.filesystem_store_datadir:
            raise exception.ConfigError(
                "filesystem_store_datadir must be set when the file store is enabled")
        self.datadir = os.path.abspath(opts.filesystem_store_datadir)
        self.file_mode = _file_mode(opts.filesystem_store_file_perm)
        self.metadata = _load_metadata(opts.filesystem_store_metadata_file)
        try:
            os.makedirs(self.datadir, exist_ok=True)
        except OSError as err:
            raise exception.ConfigError(
                f"Cannot create filesystem_store_datadir {self.datadir}: {err}") from err
        if not os.access(self.datadir, os.W_OK | os.X_OK):
            raise exception.ConfigError(
                f"filesystem_store_datadir {self.datadir} is not writable")
        # Locations may name the directory through a symlink or not.
        self._datadirs = {self.datadir, os.path.realpath(self.datadir)}

    # --- paths -------------------------------------------------------------
    def _path_for(self, image_id: str) -> str:
        # The id becomes a file name: anything that could climb out of the
        # directory or collide with a partial file is refused.
        if (not image_id or image_id.startswith(".") or "/" in image_id
                or "\0" in image_id or len(image_id) > 200):
            raise exception.Invalid(f"Image id {image_id!r} cannot name an image file")
        return os.path.join(self.datadir, image_id)

    def _path_from_url(self, url: str) -> str:
        """Map a location to a file directly inside the data directory.

        Raises BadStoreUri for anything else, so a forged location cannot
        read or delete arbitrary local files.
        """
        try:
            parts = urlsplit(url)
        except ValueError as err:
            raise exception.BadStoreUri(f"Invalid file location: {err}") from err
        path = parts.path
        directory, name = os.path.split(path)
        if (parts.scheme.lower() not in self.schemes
                or parts.netloc not in ("", "localhost")
                or parts.query or parts.fragment or "\0" in path
                or not os.path.isabs(path) or os.path.normpath(path) != path
                or not name or name.startswith(".")
                or directory not in self._datadirs):
            raise exception.BadStoreUri(
                "File location is not inside the store's data directory.")
        return path

    # --- contract ----------------------------------------------------------
    def owns(self, url: str) -> bool:
        try:
            self._path_from_url(url)
        except exception.BadStoreUri:
            return False
        return True

    def add(self, image_id: str, chunks: Iterable[bytes], size: int) -> AddResult:
        """Write ``chunks`` to ``<datadir>/<image_id>``.

        Raises Invalid (unusable id), Duplicate, StorageFull,
        StorageWriteDenied, StoreError, and re-raises whatever ``chunks``
        raises; in every failure case no file is left behind.
        """
        final = self._path_for(image_id)
        if os.path.lexists(final):
            raise exception.Duplicate(f"Image file for {image_id} already exists")
        partial = os.path.join(self.datadir, f".{image_id}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
        except OSError as err:
            raise storage_error(err) from err
        data = Incoming.wrap(chunks)
        out = None
        writer = None
        try:
            out = open(fd, "wb", buffering=WRITE_BUFFER)  # closed below, also on error
            writer = _BlockWriter(out)
            try:
                if self.file_mode:
                    os.fchmod(fd, self.file_mode)
            except OSError as err:
                raise storage_error(err) from err
            # Errors raised by ``chunks`` (client gone, size cap) propagate
            # untouched; only our own I/O errors are translated.
            for chunk in data:
                try:
                    writer.write(chunk)
                except OSError as err:
                    raise storage_error(err) from err
            try:
                writer.wait()
                out.close()  # the last flush is where a full disk shows
            except OSError as err:
                raise storage_error(err) from err
            self._publish(partial, final, image_id)
        except BaseException:
            # Also on GeneratorExit/KeyboardInterrupt: never leave a partial.
            # A failing flush here must not mask the original error.
            with contextlib.suppress(Exception):
                if writer is not None:
                    writer.wait()       # no write may still use the file
            with contextlib.suppress(Exception):
                if out is None:
                    os.close(fd)
                else:
                    out.close()
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        url = f"file://{final}"
        LOG.debug("Wrote %d bytes of image %s to %s", data.bytes_read, image_id, url)
        return url, data.bytes_read, data.checksum, copy.deepcopy(self.metadata)

    def _publish(self, partial: str, final: str, image_id: str) -> None:
        """Give the finished partial file its final name, never replacing one.

        A hard link fails atomically if the name exists, so two uploads of
        the same id cannot silently overwrite each other.
        """
        try:
            os.link(partial, final)
        except FileExistsError as err:
            raise exception.Duplicate(f"Image file for {image_id} already exists") from err
        except OSError as err:
            if err.errno not in _NO_LINK_ERRNOS:
                raise storage_error(err) from err
            # No hard links here: a small check-then-rename window remains.
            if os.path.lexists(final):
                raise exception.Duplicate(
                    f"Image file for {image_id} already exists") from err
            try:
                os.rename(partial, final)
            except OSError as err2:
                raise storage_error(err2) from err2
            return
        try:
            os.unlink(partial)
        except OSError as err:
            LOG.warning("Could not remove partial file %s: %s", partial, err)

    def remove_leftovers(self, image_id: str, keep: Iterable[str] = ()) -> None:
        """Remove the image's partial files, and its file unless a location
        in ``keep`` names it."""
        final = self._path_for(image_id)
        paths = partial_files(self.datadir, image_id)
        if os.path.lexists(final) and not any(
                self._names(url, final) for url in keep):
            paths.append(final)
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as err:
                LOG.error("Could not remove %s left by a write of image %s: %s",
                          os.path.basename(path), image_id, err)
                continue
            LOG.info("Removed %s, left by a write of image %s that did not finish",
                     os.path.basename(path), image_id)

    def _names(self, url: str, path: str) -> bool:
        try:
            return self._path_from_url(url) == path
        except exception.BadStoreUri:
            return False

    def get(self, url: str) -> tuple[ChunkIterator, int | None]:
        """Open the image file; raises BadStoreUri, NotFound, Forbidden."""
        fd, size = self._open(url)
        return FileChunks(fd, 0, None, size), size

    def get_range(self, url: str, offset: int, length: int) -> ChunkIterator:
        """``length`` bytes from ``offset``: nothing before it is read."""
        fd, size = self._open(url)
        return FileChunks(fd, offset, offset + length, size)

    def _open(self, url: str) -> tuple[int, int]:
        """The image file open (a descriptor), and its size."""
        path = self._path_from_url(url)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError as err:
            raise self._not_found(path) from err
        except OSError as err:
            raise self._access_error(err, path) from err
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self._not_found(path)
            if hasattr(os, "posix_fadvise"):
                # Downloads read front to back: ask for more read-ahead.
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except BaseException:
            os.close(fd)
            raise
        return fd, info.st_size

    def get_size(self, url: str) -> int:
        """Return the file size; raises BadStoreUri, NotFound."""
        path = self._path_from_url(url)
        try:
            info = os.stat(path, follow_symlinks=False)
        except FileNotFoundError as err:
            raise self._not_found(path) from err
        except OSError as err:
            raise self._access_error(err, path) from err
        if not stat.S_ISREG(info.st_mode):
            raise self._not_found(path)
        return info.st_size

    def delete(self, url: str) -> None:
        """Remove the image file; raises BadStoreUri, NotFound, Forbidden."""
        path = self._path_from_url(url)
        try:
            os.unlink(path)
        except FileNotFoundError as err:
            raise self._not_found(path) from err
        except OSError as err:
            raise self._access_error(err, path) from err
        LOG.debug("Deleted image file %s", path)

    @staticmethod
    def _not_found(path: str) -> exception.NotFound:
        return exception.NotFound(f"Image file {os.path.basename(path)} not found")

    @staticmethod
    def _access_error(err: OSError, path: str) -> exception.GlanceError:
        name = os.path.basename(path)
        if err.errno in exception.DENIED_ERRNOS:
            return exception.Forbidden(f"Not allowed to access image file {name}")
        if err.errno == errno.ELOOP:
            return exception.BadStoreUri(f"Image file {name} is a symbolic link")
        LOG.error("File store cannot access %s: %s", path, err)
        return exception.StoreError(f"File store cannot access image file {name}")
