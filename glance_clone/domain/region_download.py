"""The ``glance-download`` import method: a queued image filled from an
image of another region (see ``regions``), metadata and bytes.
A failed import puts the image's own formats and properties back.

``{"method": {"name": "glance-download", "glance_region": <name>,
"glance_image_id": <id>}}``: the region must be configured and the id a
UUID (else 400), and the remote image, read at once as the caller, must
be there (else 404) and active (else 409). The local image then takes its
disk and container formats and the properties whose names start with one
of ``[glance_download_properties] extra_properties`` (``os_glance_*``
never), as the owner could set them on a queued image.

The task streams the remote data into our store (through the import
runner's upload path: size cap, quotas, inspection), checked against the
remote image's size, MD5 and multihash (``os_hash_algo`` and
``os_hash_value``, when the remote has one in an algorithm hashlib
offers) as it passes, before any import plugin changes it: data that
does not match fails the import and nothing is kept. ``glance_service_interface`` is accepted
and ignored: the region's api URL is the operator's, not a catalog's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from oslo_config import cfg

from glance_clone.common import config, exception, hashing
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, reserved
from glance_clone.domain.regions import Regions
from glance_clone.domain.remote_glance import RemoteGlance

LOG = logging.getLogger(__name__)

GLANCE_DOWNLOAD = "glance-download"
VIEW_ONLY = ("self", "file", "schema", "stores", "locations", "direct_url")
UUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

OPTS = [
    cfg.ListOpt("extra_properties",
                default=["hw_", "trait:", "os_distro", "os_secure_boot", "os_type"],
                help="Prefixes of the remote image's properties a "
                     "glance-download import copies."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS, group="glance_download_properties")


def _verified(chunks: Iterable[bytes], checksum: str | None,
              multihash: hashing.Multihash | None) -> Iterator[bytes]:
    """``chunks``; raises BadGateway at the end when their MD5 is not
    ``checksum`` or their multihash not ``multihash`` (the store, or the
    staging area, then drops what it wrote)."""
    digests = hashing.Digests(multihash[0] if multihash else None)
    for chunk in chunks:
        digests.update(chunk)
        yield chunk
    reason = digests.mismatch(checksum, multihash)
    if reason:
        raise exception.BadGateway("The data from the region does not match its "
                                   "image (%s)" % reason)


def _multihash(found: dict, remote_id: str) -> hashing.Multihash | None:
    """The remote image's multihash, when we can compute its algorithm."""
    multihash = hashing.recorded_multihash(found)
    if multihash is None:
        return None
    try:
        hashing.check_algorithm(multihash[0])
    except ValueError:
        LOG.warning("Remote image %s: its multihash algorithm %r is not ours to "
                    "compute; only its MD5 is checked", remote_id, multihash[0])
        return None
    return multihash


def restored(restore: dict | None) -> tuple[dict, dict, list[str]]:
    """What puts back the image metadata a glance-download request changed
    (``restore``, as ``RegionDownload.check`` recorded it; None for other
    imports): the values to write, the properties to set and those to
    remove (the ones the remote image added)."""
    if not restore:
        return {}, {}, []
    values = {"disk_format": restore.get("disk_format"),
              "container_format": restore.get("container_format")}
    properties = restore.get("properties") or {}
    return (values, {k: v for k, v in properties.items() if v is not None},
            [k for k, v in properties.items() if v is None])


class RegionDownload:
    def __init__(self, conf: cfg.ConfigOpts, regions: Regions,
                 remote_factory: Any = RemoteGlance) -> None:
        register_opts(conf)
        self.conf = conf
        self.regions = regions
        self.remote_factory = remote_factory

    def named(self, method: dict) -> tuple[Any, str]:
        """The region and remote image id the request's ``method`` names;
        raises Invalid (no or unknown region, an id that is no UUID)."""
        region = self.regions.get(method.get("glance_region"))
        image_id = method.get("glance_image_id")
        if not isinstance(image_id, str) or not UUID.fullmatch(image_id):
            raise exception.Invalid("A glance-download import needs 'glance_image_id', "
                                    "the id of an image of the region")
        return region, image_id

    def _remote(self, context: RequestContext, method: dict) -> tuple[RemoteGlance, str]:
        region, image_id = self.named(method)
        return self.remote_factory(region, context), image_id

    def check(self, importer: Any, context: RequestContext, image: Any,
              method: dict) -> dict:
        """Read the remote image and give the local one its formats and
        properties; what the task needs: the remote size, checksum and
        multihash."""
        remote, remote_id = self._remote(context, method)
        try:
            found = remote.get_image(remote_id)
        finally:
            remote.close()
        if found is None:
            raise exception.NotFound("Region %s has no image %s (that you can read)"
                                     % (remote.region.name, remote_id))
        if found.get("status") != image_status.ACTIVE:
            raise exception.Conflict("Image %s of region %s is %s, not active"
                                     % (remote_id, remote.region.name, found.get("status")))
        prefixes = tuple(self.conf.glance_download_properties.extra_properties)
        # The remote view mixes attributes and properties: names our record
        # has as attributes, and the view's links, are not properties.
        properties = {
            name: value for name, value in found.items()
            if name.startswith(prefixes) and name not in image.record
            and name not in VIEW_ONLY and not reserved.is_reserved(name)
            and isinstance(value, str)}
        # What a failed import puts back (the properties it added are
        # removed: None), from the record the request just read.
        kept = image.properties
        restore = {"disk_format": image.record.get("disk_format"),
                   "container_format": image.record.get("container_format"),
                   "properties": {name: kept.get(name) for name in properties}}
        importer.catalog.images.writes.change(
            context, image.id, {"disk_format": found.get("disk_format"),
                                "container_format": found.get("container_format"),
                                "properties": properties},
            from_state=image_status.QUEUED,
            applied=lambda rec: rec.get("disk_format") == found.get("disk_format"))
        multihash = _multihash(found, remote_id)
        return {"remote": {"size": found.get("size"), "checksum": found.get("checksum"),
                           "multihash": list(multihash) if multihash else None},
                "restore": restore}

    def source(self, runner: Any, context: RequestContext, task_input: dict,
               record: dict) -> tuple[Iterable[bytes], int | None]:
        remote, remote_id = self._remote(context, task_input["import_req"]["method"])
        expected = task_input["remote"]
        chunks = remote.download(remote_id, expected["size"])
        multihash = expected.get("multihash")
        verified = _verified(chunks, expected["checksum"],
                             (multihash[0], multihash[1]) if multihash else None)
        return _Stream(verified, chunks, remote), expected["size"]


class _Stream:
    """The verified chunks; ``close`` lets go of the response and session."""

    def __init__(self, chunks: Iterator[bytes], response: Any, remote: RemoteGlance) -> None:
        self._chunks = chunks
        self._response = response
        self._remote = remote

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._response.close()
        self._remote.close()
