"""The staging area of interoperable import: one file per image in the
directory of ``node_staging_uri`` (a ``file://`` URI, as in Glance).

Staged bytes wait there between ``PUT /v2/images/{id}/stage`` and the
import that moves them into a store; the import removes them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.data_in import Incoming

LOG = logging.getLogger(__name__)

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

    def write(self, image_id: str, chunks: Iterator[bytes]) -> int:
        """Stage ``chunks`` (at most ``image_size_cap`` bytes); the byte count.

        Raises Conflict (data already staged), ImageSizeLimitExceeded and
        what the stream raises; nothing stays staged when this raises.
        """
        cap = self.conf.image_size_cap
        data = Incoming(chunks, limits=[
            (cap, lambda: exception.ImageSizeLimitExceeded(limit=cap))])
        os.makedirs(self.directory, exist_ok=True)
        try:
            staged = open(self.path(image_id), "xb")
        except FileExistsError:
            raise exception.Conflict("Image %s already has staged data" % image_id) \
                from None
        try:
            with staged:
                for chunk in data:
                    staged.write(chunk)
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
        try:
            os.unlink(self.path(image_id))
        except FileNotFoundError:
            pass
        except OSError as err:
            LOG.error("Could not remove the staged data of image %s: %s", image_id, err)

    def holds(self, image_id: str) -> bool:
        return os.path.exists(self.path(image_id))
