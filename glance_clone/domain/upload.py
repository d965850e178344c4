"""Putting bytes behind a queued image: upload, copy-from and location.

Every step that changes the status is a compare-and-swap in the registry
(``from_state``), so an upload racing a delete or another upload loses
cleanly: whoever loses removes the bytes it wrote and the image is never
left in ``saving``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from glance_clone.common import exception
from glance_clone.common.chunking import limited_chunks
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, quota

LOG = logging.getLogger(__name__)


class Uploader:
    """Streams data into a store and activates the image."""

    def __init__(self, conf: Any, registry: Any, stores: Any) -> None:
        self.conf = conf
        self.registry = registry
        self.stores = stores

    def upload(self, context: RequestContext, image: dict, chunks: Iterator[bytes],
               size_hint: int, scheme: str | None = None,
               declared_size: int | None = None) -> dict:
        """queued -> saving -> active; on any failure the image is killed.

        ``declared_size`` (else the record's non-zero size) and the record's
        checksum must match the data. Raises Duplicate when the image is no
        longer queued (another upload got it first), ImageDeletedDuringUpload,
        and whatever the stream, the store, the limits or the checks raise.
        """
        image_id = image["id"]
        try:
            self.registry.update_image(context, image_id,
                                       {"status": image_status.SAVING},
                                       from_state=image_status.QUEUED)
        except exception.StatusConflict:
            raise exception.Duplicate("Attempt to upload duplicate image")
        if declared_size is None:
            declared_size = image.get("size") or None
        try:
            return self._store_and_activate(context, image, chunks, size_hint, scheme,
                                            declared_size)
        except exception.ImageDeletedDuringUpload:
            raise
        except exception.Duplicate as err:
            # The store already holds data under this id, which is not ours
            # to remove; the image must still not stay in saving forever.
            self.kill(context, image_id, image_status.SAVING)
            raise exception.Duplicate("Attempt to upload duplicate image") from err
        except BaseException:
            self.kill(context, image_id, image_status.SAVING)
            raise

    def _store_and_activate(self, context: RequestContext, image: dict,
                            chunks: Iterator[bytes], size_hint: int,
                            scheme: str | None, declared_size: int | None) -> dict:
        image_id = image["id"]
        cap = self.conf.image_size_cap
        chunks = limited_chunks(chunks, cap,
                                lambda: exception.ImageSizeLimitExceeded(limit=cap))
        remaining = quota.remaining_storage(self.conf, self.registry, context, image_id)
        if remaining is not None:
            if size_hint > remaining:
                raise exception.StorageQuotaFull(
                    reason="%d bytes left, %d declared" % (remaining, size_hint))
            chunks = limited_chunks(chunks, remaining, lambda: exception.StorageQuotaFull(
                reason="%d bytes left" % remaining))
        try:
            location, size, checksum, loc_meta = self.stores.add(
                image_id, chunks, size_hint, scheme)
        except exception.StoreError as err:
            # The store's own words may name paths; the caller gets Glance's.
            LOG.error("Upload of image %s failed in the store: %s", image_id, err)
            raise exception.StoreError("Failed to upload image %s" % image_id) from err
        try:
            self._check_declared(declared_size, image.get("checksum"), size, checksum)
            return self._activate(context, image_id, location, loc_meta,
                                  image_status.SAVING, size=size, checksum=checksum)
        except BaseException:
            self._delete_quietly(location)
            raise

    @staticmethod
    def _check_declared(declared_size: int | None, declared_checksum: str | None,
                        size: int, checksum: str) -> None:
        if declared_size is not None and declared_size != size:
            raise exception.ImageDataMismatch(
                "Supplied size (%d) and size generated from uploaded image (%d) "
                "did not match. Setting image status to 'killed'."
                % (declared_size, size))
        if declared_checksum and declared_checksum != checksum:
            raise exception.ImageDataMismatch(
                "Supplied checksum (%s) and checksum generated from uploaded "
                "image (%s) did not match. Setting image status to 'killed'."
                % (declared_checksum, checksum))

    def _activate(self, context: RequestContext, image_id: str, location: str,
                  loc_meta: dict, from_state: str, **values: Any) -> dict:
        values.update({
            "status": image_status.ACTIVE,
            "location_data": [{"url": location, "metadata": loc_meta or {},
                               "status": "active"}],
        })
        try:
            return self.registry.update_image(context, image_id, values,
                                              from_state=from_state)
        except (exception.StatusConflict, exception.NotFound):
            # A delete won the race: the caller removes the bytes.
            raise exception.ImageDeletedDuringUpload(image_id=image_id)

    def activate_location(self, context: RequestContext, image: dict, location: str,
                          size: int) -> dict:
        """Attach an external location to a queued image: queued -> active."""
        return self._activate(context, image["id"], location, {},
                              image_status.QUEUED, size=size)

    def kill(self, context: RequestContext, image_id: str, from_state: str) -> None:
        try:
            self.registry.update_image(context, image_id,
                                       {"status": image_status.KILLED},
                                       from_state=from_state)
        except exception.GlanceError as err:
            LOG.info("Image %s not marked killed: %s", image_id, err)

    def _delete_quietly(self, location: str) -> None:
        try:
            self.stores.delete(location)
        except exception.NotFound:
            pass
        except Exception:
            LOG.exception("Could not remove the data at a failed upload's location")

    def copy_from(self, context: RequestContext, image: dict, source: str,
                  scheme: str | None, declared_size: int | None = None) -> None:
        """Background copy of an external URL into a store; failures kill the image."""
        try:
            chunks, size = self.stores.get(source)
        except Exception as err:
            LOG.warning("copy_from for image %s failed: %s", image["id"], err)
            self.kill(context, image["id"], image_status.QUEUED)
            return
        try:
            self.upload(context, image, iter(chunks), size or 0, scheme, declared_size)
        except Exception as err:
            LOG.warning("copy_from for image %s failed: %s", image["id"], err)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
