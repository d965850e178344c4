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

import logging
import os
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.data_in import Incoming

LOG = logging.getLogger(__name__)

# The suffix of staged data still being written.
PART = ".part"

OPTS = [
    cfg.StrOpt("node_staging_uri", default="file:///tmp/staging/",
               help="file:// URI of the directory where image data staged "
                    "for an import waits (PUT /v2/images/{id}/stage)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)


class StagingArea:
    """Staged data of images, by image id."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)
        self.conf = conf
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

    def write(self, image_id: str, chunks: Iterator[bytes]) -> int:
        """Stage ``chunks`` (at most ``image_size_cap`` bytes); the byte count.

        Raises Conflict (data already staged), ImageSizeLimitExceeded and
        what the stream raises; nothing stays staged when this raises.
        """
        cap = self.conf.image_size_cap
        data = Incoming(chunks, limits=[
            (cap, lambda: exception.ImageSizeLimitExceeded(limit=cap))])
        os.makedirs(self.directory, exist_ok=True)
        if self.holds(image_id):
            raise exception.Conflict("Image %s already has staged data" % image_id)
        try:
            staged = open(self._part(image_id), "xb")
        except FileExistsError:
            raise exception.Conflict("Image %s is being staged" % image_id) from None
        try:
            with staged:
                for chunk in data:
                    staged.write(chunk)
            os.rename(self._part(image_id), self.path(image_id))
        except BaseException:
            self.remove(image_id)
            raise
        return data.bytes_read

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
