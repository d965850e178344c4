"""The staging area of interoperable import: one file per image in the
directory of ``node_staging_uri`` (a ``file://`` URI, as in Glance).

Staged bytes wait there between ``PUT /v2/images/{id}/stage`` and the
import that moves them into a store; the import removes them. A stage
writes ``<image id>.part`` and renames it ``<image id>`` once all the bytes
are there, so that an import never takes the data of a stage cut short
(its node died): only complete staged data counts as staged.

With several api nodes, ``node_staging_uri`` is best a directory they all
share: any node can then import what another staged and clean up after
a node that died. Each node cleans what it sees (``leftovers``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.data_in import Incoming, Inspector, Limit

LOG = logging.getLogger(__name__)

# The suffix of staged data still being written.
PART = ".part"

OPTS = [
    cfg.StrOpt("node_staging_uri", default="file:///tmp/staging/",
               help="file:// URI of the directory where image data staged "
                    "for an import waits (PUT /v2/images/{id}/stage)."),
    cfg.IntOpt("staging_abandon_timeout", default=86400, min=0,
               help="Seconds after which staged data nobody added to or "
                    "imported (a resumable stage never finished, data "
                    "staged and never imported) is removed and its image "
                    "queued again; 0 keeps it for ever."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)


class StagingArea:
    """Staged data of images, by image id."""

    def __init__(self, conf: cfg.ConfigOpts, directory: str | None = None) -> None:
        """The area in ``node_staging_uri``, or in ``directory`` (an import
        task's work files, keyed by image id the same way)."""
        register_opts(conf)
        self.conf = conf
        if directory is not None:
            self.directory = directory
            return
        uri = urlsplit(conf.node_staging_uri)
        if uri.scheme != "file" or not uri.path.startswith("/"):
            raise exception.ConfigError(
                "node_staging_uri must be a file:/// URI of a directory, e.g. "
                "file:///var/lib/glance/staging/ (got %r)" % conf.node_staging_uri)
        self.directory = uri.path

    def path(self, image_id: str) -> str:
        return os.path.join(self.directory, image_id)

    def _part(self, image_id: str) -> str:
        return self.path(image_id) + PART

    def scratch(self, image_id: str) -> str:
        """Where work on complete staged data (import plugins) writes its
        output, removed with the staged data."""
        return self._part(image_id)

    def write(self, image_id: str, chunks: Iterator[bytes], start: int = 0,
              total: int | None = None, resumable: bool = False,
              inspector: Inspector | None = None,
              declared: int | None = None) -> tuple[int, bool]:
        """As ``_write``; a filesystem that refuses the data (full, over
        quota, not writable) raises StorageFull or StorageWriteDenied, as
        a store would, never an OSError."""
        try:
            return self._write(image_id, chunks, start, total, resumable, inspector,
                               declared)
        except OSError as err:
            refused = exception.write_refusal(err)
            if refused is None:
                raise       # not the filesystem saying no (the source failing, say)
            raise refused from err

    def _write(self, image_id: str, chunks: Iterator[bytes], start: int,
               total: int | None, resumable: bool, inspector: Inspector | None,
               declared: int | None) -> tuple[int, bool]:
        """Stage ``chunks`` as the image's data from byte ``start``;
        (bytes staged now, whether the data is complete).

        Without ``total`` the data ends with ``chunks``; with it, the data is
        complete once ``total`` bytes are staged. A ``resumable`` piece cut
        short keeps what arrived, for the client to continue from; anything
        else that fails removes the staged data. ``inspector`` sees all the
        data, the bytes staged before first, and judges it once complete
        (ImageFormatRefused).

        ``declared``: the size the client declared for the whole data
        (x-openstack-image-size); data past it is refused at once, data
        short of it at its end (ImageDataMismatch, a 400).

        Raises Conflict (complete data already staged, another request
        staging it), StagedLengthMismatch (``start`` is not where the
        staged data ends), ImageSizeLimitExceeded, Invalid (more bytes than
        ``total``), ImageDataMismatch (not ``declared`` bytes) and what the
        stream raises.
        """
        cap = self.conf.image_size_cap
        if total is not None and total > cap:
            raise exception.ImageSizeLimitExceeded(limit=cap)
        os.makedirs(self.directory, exist_ok=True)
        if self.holds(image_id):
            raise exception.Conflict("Image %s already has staged data" % image_id)
        limit: Limit = (cap - start, lambda: exception.ImageSizeLimitExceeded(limit=cap))
        if total is not None:
            limit = (total - start, lambda: exception.Invalid(
                "The data goes past the %d bytes its Content-Range announced" % total))
        limits = [limit]
        if declared is not None:
            limits.append((declared - start, lambda: exception.ImageDataMismatch(
                "The data goes past the %d bytes x-openstack-image-size declared"
                % declared)))
        data = Incoming(chunks, limits=limits)
        with self._open_part(image_id) as staged:
            length = os.fstat(staged.fileno()).st_size
            if length != start:
                raise exception.StagedLengthMismatch(length)
            try:
                if inspector is not None:
                    staged.seek(0)
                    for chunk in iter(lambda: staged.read(CHUNK_SIZE), b""):
                        inspector.feed(chunk)
                staged.seek(start)
                for chunk in data:
                    if inspector is not None:
                        inspector.feed(chunk)
                    staged.write(chunk)
                staged.flush()
                if declared is not None and start + data.bytes_read != declared:
                    raise exception.ImageDataMismatch(
                        "The data ended after %d of the %d bytes x-openstack-image-size "
                        "declared" % (start + data.bytes_read, declared))
                if inspector is not None and (total is None
                                              or start + data.bytes_read == total):
                    inspector.finish()
            except exception.ClientDisconnected:
                if not resumable:
                    self.remove(image_id)
                raise
            except BaseException:
                self.remove(image_id)
                raise
        length = start + data.bytes_read
        complete = total is None or length == total
        if complete:
            os.rename(self._part(image_id), self.path(image_id))
        return length, complete

    @contextlib.contextmanager
    def _open_part(self, image_id: str) -> Iterator[Any]:
        """The image's unfinished staged data, opened for writing by this
        request alone (a lock on the file: two requests never append to
        one stage, also from two nodes sharing the directory)."""
        fd = os.open(self._part(image_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        staged = os.fdopen(fd, "r+b")
        with staged:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise exception.Conflict("Image %s is being staged by another request"
                                         % image_id) from None
            yield staged

    def staged_length(self, image_id: str) -> int | None:
        """How many bytes are staged (complete or not); None when nothing is."""
        for path in (self.path(image_id), self._part(image_id)):
            try:
                return os.stat(path).st_size
            except FileNotFoundError:
                continue
        return None

    def read(self, image_id: str) -> Iterator[bytes]:
        """The staged bytes; raises NotFound when nothing is staged."""
        try:
            staged = open(self.path(image_id), "rb")
        except FileNotFoundError:
            raise exception.NotFound("No staged data for image %s" % image_id) from None

        def chunks() -> Iterator[bytes]:
            with staged:
                while True:
                    chunk = staged.read(CHUNK_SIZE)
                    if not chunk:
                        return
                    yield chunk
        return chunks()

    def remove(self, image_id: str) -> None:
        """Remove the image's staged data, complete or not."""
        for path in (self.path(image_id), self._part(image_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                LOG.error("Could not remove the staged data of image %s: %s",
                          image_id, err)

    def holds(self, image_id: str) -> bool:
        """Whether the image's staged data is complete."""
        return os.path.exists(self.path(image_id))

    def idle(self, min_age: float) -> dict[str, float]:
        """Image id -> seconds since its staged data (complete or not) last
        changed, for the data unchanged for at least ``min_age`` seconds."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return {}
        now = time.time()
        found: dict[str, float] = {}
        for entry in entries:
            image_id = entry.name.removesuffix(PART)
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            if age >= min_age and entry.is_file(follow_symlinks=False):
                found[image_id] = min(age, found.get(image_id, age))
        return found
