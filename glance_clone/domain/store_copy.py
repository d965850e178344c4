"""Copying an active image's data from one named store to others (the
``copy-image`` import method).

``targets`` checks a request at once: named stores must be configured,
the stores are chosen as for any import (``import_targets``), and none
may hold the image already (with ``all_stores`` those are just left out).
``StoreCopier.copy_to`` streams the bytes from a store holding them straight into the target
(no temporary file: the source's read stream is the target's write
stream), checked against the image's size and checksum as they pass and
inspected as an upload's (a target never receives what an upload would
refuse: the image may predate the inspection, or have had its formats
changed since), then adds the new location to the record. A copy that
fails leaves nothing in the target; bytes whose location could not be recorded are removed.
``remove`` takes a copy back (location first, then bytes), for a request
whose stores must all succeed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.common.data_in import Incoming
from glance_clone.common.hashing import recorded_multihash
from glance_clone.domain import image_status, import_targets, inspection
from glance_clone.domain.entity import Image
from glance_clone.domain.registry_writes import RegistryWrites, holds

LOG = logging.getLogger(__name__)

COPY_IMAGE = "copy-image"


def store_of(stores: Any, location: dict) -> str | None:
    """Id of the enabled store holding ``location``, None if none does."""
    store_id = (location.get("metadata") or {}).get("store")
    if store_id in stores.stores:
        return str(store_id)
    try:
        return stores.store_for_uri(location["url"]).id or None
    except exception.GlanceError:
        return None


def holding(stores: Any, record: dict) -> dict[str, str]:
    """The enabled stores holding the image's data: id -> location URL."""
    found: dict[str, str] = {}
    for loc in Image(record).live_locations():
        store_id = store_of(stores, loc)
        if store_id:
            found.setdefault(store_id, loc["url"])
    return found


def targets(stores: Any, record: dict, request: dict,
            header: str | None = None) -> list[str]:
    """The stores a copy-image ``request`` (the import body; ``header``
    the X-Image-Meta-Store header) copies to, chosen as for every import
    (``import_targets``). With ``all_stores`` the stores holding the image
    already are left out; an empty list: every store holds it already.

    Raises Invalid (no named stores, the request's errors, a named store
    that holds the image already), Conflict (unknown or read-only store).
    """
    if not stores.multi:
        raise exception.Invalid("copy-image copies between named stores: none are "
                                "configured (enabled_backends)")
    chosen = [str(s) for s in import_targets.chosen(stores, request, header)]
    held = holding(stores, record)
    if import_targets.flags(request).all_stores:
        return [s for s in chosen if s not in held]
    for store_id in chosen:
        if store_id in held:
            raise exception.Invalid("Image %s is already in store '%s'"
                                    % (record["id"], store_id))
    return chosen


def settle(stores: Any, lock: Any, context: RequestContext, record: dict,
           task_id: str, targets: list[str]) -> None:
    """After a dead node: what the task left half written in its target
    stores is removed, the targets that do not hold the image are listed
    as failed, and the task's lock is released (the image keeps its
    status). Raises as ``ImportLock.release``."""
    held = holding(stores, record)
    unfinished = [s for s in targets if s not in held]
    for store_id in unfinished:
        stores.remove_leftovers(record["id"], list(held.values()), store_id)
    lock.release(context, record["id"], task_id, record["status"],
                 failed_stores=unfinished)


class StoreCopier:
    def __init__(self, stores: Any, writes: RegistryWrites, conf: cfg.ConfigOpts) -> None:
        self.stores = stores
        self.writes = writes
        self.conf = conf
        inspection.register_opts(conf)

    def _source(self, record: dict) -> str:
        """The location to read: the default store's first, then any other
        enabled store's (by weight); raises NotFound."""
        candidates = [(store_id != self.stores.default_id,
                       -self.stores.stores[store_id].weight, url)
                      for store_id, url in holding(self.stores, record).items()]
        if not candidates:
            raise exception.NotFound("Image %s not found in any configured store"
                                     % record["id"])
        return min(candidates)[2]

    def copy_to(self, context: RequestContext, image_id: str, target: str,
                count: Callable[[Iterable[bytes], int | None], Iterator[bytes]]
                = lambda chunks, _size: iter(chunks)) -> str:
        """Copy the active image's data into ``target`` and record the new
        location; its URL. ``count`` wraps the stream (progress). Raises
        Conflict (no longer active), NotFound, ImageFormatRefused (the
        data fails the upload inspection), and the stores' errors."""
        record = self._active(context, image_id)
        held = holding(self.stores, record)
        if target in held:
            return held[target]
        chunks, _size = self.stores.get(self._source(record))
        try:
            multihash = recorded_multihash(record)
            data = Incoming(count(chunks, record.get("size")),
                            expected_size=record.get("size"),
                            expected_checksum=record.get("checksum"),
                            expected_multihash=multihash,
                            multihash=multihash[0] if multihash else None,
                            inspector=inspection.for_image(
                                self.conf, record.get("disk_format"),
                                record.get("container_format")))
            url, _written, _md5, metadata = self.stores.add(
                image_id, data, record.get("size") or 0, target)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        try:
            self._add_location(context, image_id, url, metadata)
        except BaseException:
            self._release(context, image_id, url)
            raise
        LOG.info("Image %s copied to store %s", image_id, target)
        return url

    def _active(self, context: RequestContext, image_id: str) -> dict:
        record = self.writes.read(context, image_id)
        if record is None or record.get("deleted"):
            raise exception.ImageNotFound("No image found with ID %s" % image_id)
        if record["status"] != image_status.ACTIVE:
            raise exception.Conflict("Image %s is %s: only an active image is copied"
                                     % (image_id, record["status"]))
        return record

    def _add_location(self, context: RequestContext, image_id: str, url: str,
                      metadata: dict) -> None:
        record = self._active(context, image_id)
        locations = [dict(loc) for loc in record.get("location_data") or []]
        locations.append({"url": url, "metadata": metadata, "status": "active"})
        self.writes.change(context, image_id, {"location_data": locations},
                           from_state=image_status.ACTIVE,
                           applied=lambda found: holds(found, url))

    def remove(self, context: RequestContext, image_id: str, url: str) -> None:
        """Take back a copy: forget its location, then delete its bytes."""
        record = self.writes.read(context, image_id)
        if record is not None and holds(record, url):
            locations = [dict(loc) for loc in record.get("location_data") or []
                         if loc.get("url") != url]
            self.writes.change(context, image_id, {"location_data": locations},
                               from_state=record["status"],
                               applied=lambda found: not holds(found, url))
        self._release(context, image_id, url)

    def _release(self, context: RequestContext, image_id: str, url: str) -> None:
        """Delete the bytes at ``url`` unless the record holds them."""
        try:
            if holds(self.writes.read(context, image_id), url):
                return
            self.stores.delete(url)
        except exception.NotFound:
            pass
        except exception.GlanceError as err:
            LOG.error("Image %s: the copy at a failed store was not removed: %s",
                      image_id, err)
