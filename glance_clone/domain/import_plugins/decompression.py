"""``image_decompression``: an image uploaded compressed is stored
uncompressed. The first bytes tell the format: ZIP (``PK\\x03\\x04``) or
GZIP (``\\x1f\\x8b\\x08``); a ZIP archive must hold exactly one file. LHA
(``-lh`` at offset 2), which Glance decompresses with the optional lhafile
library, fails the task with a message saying so. An image whose
``container_format`` is ``compressed`` is left as it is, and so is data in
no such format.

The output is counted as it is written: past ``image_size_cap`` (a
decompression bomb) the task fails and the partial output is removed.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.domain.import_plugins import Work

LOG = logging.getLogger(__name__)

ZIP = b"PK\x03\x04"
GZIP = b"\x1f\x8b\x08"
LHA = b"-lh"


class Decompression:
    def __init__(self, import_conf: cfg.ConfigOpts, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    def run(self, work: Work) -> dict:
        if work.record.get("container_format") == "compressed":
            return {}
        with open(work.path, "rb") as data:
            head = data.read(8)
        opener = _opener(head)
        if opener is None:
            return {}
        cap = self.conf.image_size_cap
        written = 0
        try:
            with opener(work.path) as source, open(work.scratch, "wb") as out:
                for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
                    written += len(chunk)
                    if written > cap:
                        raise exception.Invalid(
                            "The decompressed data goes past image_size_cap (%d "
                            "bytes): refused" % cap)
                    out.write(chunk)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as err:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(work.scratch)
            raise exception.Invalid("The image data could not be decompressed: %s"
                                    % err) from err
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(work.scratch)
            raise
        work.replace()
        LOG.info("Image %s decompressed: %d bytes", work.record["id"], written)
        return {"size": written}


def _opener(head: bytes) -> Callable[[str], Any] | None:
    if head.startswith(ZIP):
        return _zip_member
    if head.startswith(GZIP):
        return lambda path: gzip.open(path, "rb")
    if head[2:5] == LHA:
        return _lha_member
    return None


@contextlib.contextmanager
def _zip_member(path: str) -> Iterator[IO[bytes]]:
    with zipfile.ZipFile(path) as archive:
        files = [i for i in archive.infolist() if not i.is_dir()]
        if len(files) != 1:
            raise exception.Invalid("A zip image must hold exactly one file; this "
                                    "one holds %d" % len(files))
        with archive.open(files[0]) as member:
            yield member


def _lha_member(path: str) -> Any:
    raise exception.Invalid("LHA-compressed images are not decompressed here: "
                            "upload the image uncompressed, or as gzip or zip")
